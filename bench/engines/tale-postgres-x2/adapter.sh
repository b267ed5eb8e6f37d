#!/usr/bin/env bash
# tale on PostgreSQL with 2 nodes sharing the database (and one port, through
# SO_REUSEPORT): the tale-postgres adapter with TALE_PG_NODES=2.
set -euo pipefail
export TALE_PG_NODES=2
exec "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../tale-postgres/adapter.sh" "$@"
