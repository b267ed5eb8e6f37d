#!/usr/bin/env bash
# The relay on one tokio thread (TOKIO_WORKER_THREADS=1), reported as
# `relay-t1`: measured beside the relay's default (one thread per core) so
# that the W1 ceiling tale is read against is the better of the two.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export TOKIO_WORKER_THREADS=1
if [ "${1:-}" = info ]; then
  "$HERE/../relay/adapter.sh" info | sed 's/^ENGINE_NAME=relay/ENGINE_NAME=relay-t1/'
  exit 0
fi
exec "$HERE/../relay/adapter.sh" "$@"
