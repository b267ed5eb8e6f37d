#!/usr/bin/env bash
# tale on SQLite without stored traces (`tale serve --no-traces`): the tale
# adapter with TALE_TRACES=off, to measure what traces cost.
set -euo pipefail
export TALE_TRACES=off
exec "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../tale/adapter.sh" "$@"
