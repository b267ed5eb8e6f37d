#!/usr/bin/env bash
# `tale test` throughput: 500 cases over the quickstart story (issue 7: under
# 10 s on 2 cores). Baseline in the same run: `tale check` of the same story.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp examples/quickstart/alert-summary.yaml examples/quickstart/alerts.json "$work/"
{
  echo "cases:"
  for i in $(seq 1 500); do
    echo "  - name: case $i"
    echo "    event_file: alerts.json"
    echo "    expect:"
    echo "      report: {jsonpath: {\$.serious: 2}}"
  done
} > "$work/alert-summary.test.yaml"
start=$(date +%s.%N); ./target/release/tale check "$work/alert-summary.yaml" > /dev/null 2>&1 || true; base=$(echo "$(date +%s.%N) - $start" | bc -l)
start=$(date +%s.%N); ./target/release/tale test "$work" > /dev/null; secs=$(echo "$(date +%s.%N) - $start" | bc -l)
printf '500 cases: %.2f s (baseline `tale check` of the story: %.3f s)\n' "$secs" "$base"
