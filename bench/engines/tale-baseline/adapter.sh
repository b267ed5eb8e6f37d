#!/usr/bin/env bash
# The tale adapter on another build, for A/B runs in one suite:
# TALE_BASELINE_BIN names the binary (for example a release build of the
# commit before a change, made in a git worktree); the engine is reported as
# `tale-baseline` so that both sit side by side in the report.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
: "${TALE_BASELINE_BIN:?set TALE_BASELINE_BIN to the baseline tale binary}"
export TALE_BIN="$TALE_BASELINE_BIN"
if [ "${1:-}" = info ]; then
  "$HERE/../tale/adapter.sh" info | sed 's/^ENGINE_NAME=tale/ENGINE_NAME=tale-baseline/'
  exit 0
fi
exec "$HERE/../tale/adapter.sh" "$@"
