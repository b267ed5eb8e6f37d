#!/usr/bin/env bash
# The tale adapter with `tale serve --threads 1` (one thread for requests
# and actions, the SQLite writer beside it), reported as `tale-t1`: on the
# 2-core benchmark machine the load generator and the sink share the cores.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export TALE_THREADS=1
exec "$HERE/../tale/adapter.sh" "$@"
