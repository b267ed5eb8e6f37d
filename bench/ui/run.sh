#!/usr/bin/env bash
# Times every page of the web UI on a database of RUNS runs (default
# 100,000: about 1.1 million events and 650,000 traces), against /healthz
# (the HTTP stack's floor) measured in the same run. Each page is fetched
# REPEAT times (default 20) after one warm-up; the median and the slowest
# are reported. Needs `cargo build --release` and python3.
#
#   bench/ui/run.sh [RUNS]        # prints a Markdown table
set -euo pipefail
cd "$(dirname "$0")/../.."
runs="${1:-100000}"
repeat="${REPEAT:-20}"
tale="${TALE_BIN:-$PWD/target/release/tale}"
work="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export TALE_CREDENTIAL_UI_BENCH=ui-bench-secret

serve() {
  "$tale" serve --stories bench/ui/stories --db "sqlite:$work/tale.db" --listen "127.0.0.1:$port" \
    --log-format json > "$work/serve.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$port/readyz" > /dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "tale serve did not start: $(cat "$work/serve.log")" >&2
  exit 1
}

# The schema, made by tale itself; then the rows, written directly.
serve
kill "$pid"; wait "$pid" 2>/dev/null || true
python3 bench/ui/fill.py "$work/tale.db" "$runs"
serve

api() { curl -fs "http://127.0.0.1:$port$1"; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
newest=$(api "/api/runs?limit=1" | json 'd["runs"][0]["id"]')
failed=$(api "/api/runs?status=failed&limit=1" | json 'd["runs"][0]["id"]')
middle=$(api "/api/runs?limit=1&until=$(( $(date +%s%3N) - 24*3600*1000 ))" | json 'd["runs"][0]["id"]')
oldest=$(api "/api/runs?limit=1&until=$(( $(date +%s%3N) - 47*3600*1000 ))" | json 'd["runs"][0]["id"]')
event=$(api "/api/runs/$failed/events" | json 'd["events"][3]["id"]')

# One fetch's total time, in ms.
fetch() { curl -fs -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$port$1" | awk '{printf "%.2f\n", $1 * 1000}'; }
measure() {
  fetch "$1" > /dev/null
  for _ in $(seq "$repeat"); do fetch "$1"; done | sort -n | awk '{a[NR]=$1} END {printf "%s %s\n", a[int((NR+1)/2)], a[NR]}'
}

floor=$(measure /healthz)
floor_median=${floor% *}
echo "| page | median ms | slowest ms | median ÷ /healthz |"
echo "|---|---:|---:|---:|"
echo "| \`/healthz\` (floor) | ${floor_median} | ${floor#* } | 1.0 |"
for page in \
  "/ui/" \
  "/ui/stories/ui-bench" \
  "/ui/stories/ui-bench?action=check" \
  "/ui/runs" \
  "/ui/runs?story=ui-bench&status=failed" \
  "/ui/runs?status=failed&window=24h" \
  "/ui/runs?after=$middle" \
  "/ui/runs?story=ui-bench&status=failed&after=$oldest" \
  "/ui/runs/$newest" \
  "/ui/runs/$failed" \
  "/ui/events/$event" \
  "/api/runs?limit=50" \
  "/api/runs/$failed/traces"; do
  m=$(measure "$page")
  label=$(echo "$page" | sed -E 's/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/<id>/g')
  ratio=$(awk -v a="${m% *}" -v b="$floor_median" 'BEGIN {printf "%.1f", a / b}')
  echo "| \`$label\` | ${m% *} | ${m#* } | $ratio |"
done
echo
echo "database: $(du -h "$work/tale.db" | cut -f1) ($runs runs)"
