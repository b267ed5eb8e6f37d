#!/usr/bin/env bash
# tale on PostgreSQL in the peer benchmark harness: the tale adapter with
# TALE_PG_SERVER set from TALE_BENCH_POSTGRES (a postgres:// URL of a server
# where each prepare makes a fresh database; `.ci/postgres.sh start DIR`
# prints one, or point it at a tuned server).
set -euo pipefail
: "${TALE_BENCH_POSTGRES:?set TALE_BENCH_POSTGRES=postgres://USER@HOST:PORT/DB}"
export TALE_PG_SERVER="$TALE_BENCH_POSTGRES"
exec "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../tale/adapter.sh" "$@"
