#!/usr/bin/env bash
# Adapter that plugs tale into the peer benchmark harness (../shared/bench,
# README "Plugging in an engine"):
#   info     KEY=VALUE lines (URLs, version, settings)
#   prepare  a fresh database and the W1/W2 stories in $RUN_DIR
#   start    exec `tale serve` in the foreground
# Env from the harness: BENCH_DIR, PEERS_DIR, SINK_URL, RUN_DIR.
# Optional: TALE_BIN (default: target/release/tale of this project),
# TALE_PORT (8090), TALE_SYNC (normal|full, default normal as `tale serve`), TALE_WORKERS (256),
# TALE_PER_HOST (`--per-host`, default 16 as `tale serve`),
# TALE_MAX_BODY (bytes, default 10 MiB as `tale serve`; W2 with 1,000,000 items needs ~140 MB),
# TALE_PG_SERVER (a postgres:// URL of a server: each prepare makes a fresh
# database there and tale serves on it instead of SQLite; .ci/postgres.sh
# start DIR prints one), TALE_PG_NODES (PostgreSQL: this many `tale serve`
# nodes sharing the database and the port through SO_REUSEPORT, default 1),
# TALE_TRACES (on|off, default on as `tale serve`; off adds --no-traces),
# TALE_THREADS (`tale serve --threads`, read by tale itself; default one per
# core; the engine is then reported as tale-tN).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
BIN="${TALE_BIN:-$ROOT/target/release/tale}"
PORT="${TALE_PORT:-8090}"
SYNC="${TALE_SYNC:-normal}"
WORKERS="${TALE_WORKERS:-256}"
PER_HOST="${TALE_PER_HOST:-16}"
NODES="${TALE_PG_NODES:-1}"
MAX_BODY="${TALE_MAX_BODY:-10485760}"
TRACES="${TALE_TRACES:-on}"
SUFFIX=""; [ "$TRACES" = off ] && SUFFIX="-no-traces"
[ "$SYNC" = full ] && SUFFIX="$SUFFIX-sync-full"
[ -n "${TALE_THREADS:-}" ] && SUFFIX="$SUFFIX-t$TALE_THREADS"
THREADS="${TALE_THREADS:-one per core}"
BASE="http://127.0.0.1:$PORT"
# The webhooks' shared secret (a credential, as in production).
SECRET="bench-secret-0123"

case "${1:-}" in
  info)
    [ -x "$BIN" ] || { echo "tale not built: cargo build --release (or set TALE_BIN)" >&2; exit 1; }
    if [ -n "${TALE_PG_SERVER:-}" ]; then
      if [ "$NODES" = 1 ]; then echo "ENGINE_NAME=tale-postgres$SUFFIX"; else echo "ENGINE_NAME=tale-postgres-x$NODES$SUFFIX"; fi
    else
      echo "ENGINE_NAME=tale$SUFFIX"
    fi
    echo "ENGINE_VERSION=$("$BIN" --version)"
    echo "W1_URL=$BASE/webhook/w1/$SECRET"
    echo "W2_URL=$BASE/webhook/w2/$SECRET"
    echo "W2EACH_URL=$BASE/webhook/w2each/$SECRET"
    echo "READY_URL=$BASE/readyz"
    if [ -n "${TALE_PG_SERVER:-}" ]; then
      echo "NOTES=durable PostgreSQL store ($NODES node(s) on one port, SO_REUSEPORT, --sync $SYNC), $WORKERS workers per node, every step committed before the next"
    else
      echo "NOTES=durable SQLite store (WAL, synchronous=$SYNC), $WORKERS workers, $PER_HOST per host, $THREADS thread(s), every step committed before the next, traces $TRACES"
    fi
    ;;
  prepare)
    rm -rf "$RUN_DIR/tale"; mkdir -p "$RUN_DIR/tale/stories"
    cp "$HERE"/stories/*.yaml "$RUN_DIR/tale/stories/"
    if [ -n "${TALE_PG_SERVER:-}" ]; then
      name="bench_$(date +%s%N)"
      psql -q "$TALE_PG_SERVER" -c "CREATE DATABASE $name"
      echo "${TALE_PG_SERVER%/*}/$name" > "$RUN_DIR/tale/db-url"
    else
      echo "sqlite:$RUN_DIR/tale/tale.db" > "$RUN_DIR/tale/db-url"
    fi
    echo "prepared $RUN_DIR/tale"
    ;;
  start)
    cd "$RUN_DIR/tale"
    export TALE_CREDENTIAL_BENCH="$SECRET" TALE_RESOURCE_SINK_URL="$SINK_URL" TALE_LOG="${TALE_LOG:-warn}"
    serve=("$BIN" serve --stories stories --db "$(cat "$RUN_DIR/tale/db-url")" --listen "127.0.0.1:$PORT"
      --sync "$SYNC" --workers "$WORKERS" --per-host "$PER_HOST" --max-body "$MAX_BODY" --watch 0s)
    if [ "$TRACES" = off ]; then serve+=(--no-traces); fi
    if [ "$NODES" = 1 ]; then exec "${serve[@]}"; fi
    # Several nodes: this shell stays the process the harness samples and
    # stops; it passes SIGTERM on and waits for every node.
    pids=()
    for n in $(seq 1 "$NODES"); do
      # The database's capacity is shared: about 4 transactions in flight
      # in all (measured: 3 nodes with 1 each deliver 41 % more than with 4).
      "${serve[@]}" --reuse-port --node-name "bench-$n" --db-committers $(( (4 + NODES - 1) / NODES )) & pids+=($!)
    done
    trap 'kill -TERM "${pids[@]}" 2>/dev/null' TERM INT
    wait "${pids[@]}" || true
    wait "${pids[@]}" 2>/dev/null || true
    ;;
  *) echo "usage: $0 info|prepare|start" >&2; exit 2 ;;
esac
