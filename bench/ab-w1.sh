#!/usr/bin/env bash
# Alternating A/B rounds of W1 on tale builds or settings, one line per run:
#   bench/ab-w1.sh ROUNDS "NAME:ENV=VALUE ENV=VALUE" "NAME:…" …
# e.g. bench/ab-w1.sh 5 "before:TALE_BIN=/tmp/old-target/release/tale" "after:X=1"
# Each run is ../shared/bench/run-w1.sh on bench/engines/tale/adapter.sh
# (4 s warm-up, 12 s measured, 32 connections); read the per-round ratios,
# not single figures: the machine's speed drifts by ±15 % between runs.
# Env: PEERS_DIR (/opt/peers), BENCH_OUT (target/bench-ab), W1_ARGS.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
E="$ROOT/bench/engines"
OUT="${BENCH_OUT:-$ROOT/target/bench-ab}"
ROUNDS="$1"; shift
for _ in $(seq 1 "$ROUNDS"); do
  for v in "$@"; do
    name="${v%%:*}"; read -r -a envs <<< "${v#*:}"
    line=$(env "${envs[@]}" BENCH_OUT="$OUT" PEERS_DIR="${PEERS_DIR:-/opt/peers}" \
      "$ROOT/../shared/bench/run-w1.sh" "$E/tale/adapter.sh" ${W1_ARGS:---warmup 4 --duration 12} --reps 1 2>&1 \
      | grep '"type": "summary"' | tail -1)
    # Each run leaves its database (~200 MB) under runs/: keep only results.
    rm -rf "$OUT/runs"
    echo "$name $(python3 -c '
import json, sys
d = json.loads(sys.argv[1].split(" summary: ")[-1])
rate, p99, cpu, rss = d["delivered_per_s"], d["e2e_p99_us"] / 1000, d["engine_cpu_pct"], d["engine_peak_rss_mb"]
print(f"{rate} events/s  p99 {p99:.1f} ms  cpu {cpu} %  {cpu * 10000 / rate:.0f} us/event  rss {rss} MB")
' "$line")"
  done
done
