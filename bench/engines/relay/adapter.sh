#!/usr/bin/env bash
# The W1 ceiling on tale's HTTP stack (bench/relay: axum + reqwest, no story,
# no store), measured in the same suite as tale so that tale's W1 figure can
# be read as a ratio of it. W1 only.
#   cargo build --release --manifest-path bench/relay/Cargo.toml
# Env from the harness: SINK_URL. Optional: RELAY_BIN, RELAY_PORT (8091).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
BIN="${RELAY_BIN:-$ROOT/bench/relay/target/release/tale-bench-relay}"
PORT="${RELAY_PORT:-8091}"
case "${1:-}" in
  info)
    [ -x "$BIN" ] || { echo "relay not built: cargo build --release --manifest-path bench/relay/Cargo.toml" >&2; exit 1; }
    echo "ENGINE_NAME=relay (axum + reqwest, no story, no store)"
    echo "ENGINE_VERSION=tale-bench-relay 0.1.0"
    echo "W1_URL=http://127.0.0.1:$PORT/w1"
    echo "READY_URL=http://127.0.0.1:$PORT/ready"
    ;;
  prepare) echo "relay: nothing to prepare" ;;
  start) exec "$BIN" "127.0.0.1:$PORT" "$SINK_URL" ;;
  *) echo "usage: $0 info|prepare|start" >&2; exit 2 ;;
esac
