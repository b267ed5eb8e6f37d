#!/usr/bin/env bash
# tale on PostgreSQL with `--sync full` (commits wait for the server's log
# flush): the tale-postgres adapter with TALE_SYNC=full.
set -euo pipefail
export TALE_SYNC=full
exec "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../tale-postgres/adapter.sh" "$@"
