#!/usr/bin/env bash
# W2-style fan-out on the in-memory engine (SPEC §8): one webhook event with N
# items → explode → transform → implode, run by `tale run`. Reports wall time
# and peak RSS, and the same-run baseline of parsing the event with Python,
# so the figure reads as a ratio on a noisy machine.
# Usage: bench/fanout.sh [N...]   (default: 10000 1000000); TALE_BIN=path runs
# another build (an A/B against an older binary) without building this one.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${TALE_BIN:-}" ] || cargo build --release --quiet
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/fanout.yaml" <<'YAML'
actions:
  receive: {type: webhook, path: fanout, secret: local, max_body_bytes: 268435456}
  each:
    type: transform
    mode: explode
    from: receive
    path: "{{ receive.body.items | as_object }}"
    to: item
    limit: 2000000
  shape:
    type: transform
    mode: message_only
    from: each
    payload: {id: "{{ each.item.id }}", host: "{{ each.item.host | downcase }}"}
  collect:
    type: transform
    mode: implode
    from: shape
    guid_path: "{{ each.guid }}"
    size_path: "{{ each.size }}"
    item_path: "{{ shape.id }}"
YAML
printf '%-10s %12s %12s %14s %12s\n' items seconds peak_MB baseline_s ratio
for n in "${@:-10000 1000000}"; do
  python3 -c "import json,sys; n=int(sys.argv[1]); json.dump({'items':[{'id':i,'host':'HOST-%d.CONTOSO.COM'%i} for i in range(n)]}, open(sys.argv[2],'w'))" "$n" "$work/event.json"
  base_start=$(date +%s.%N)
  python3 -c "import json,sys; json.load(open(sys.argv[1]))" "$work/event.json"
  base=$(echo "$(date +%s.%N) - $base_start" | bc -l)
  /usr/bin/time -f '%e %M' -o "$work/time" "${TALE_BIN:-./target/release/tale}" run "$work/fanout.yaml" --event "$work/event.json" > /dev/null 2> "$work/stderr" || { cat "$work/stderr"; exit 1; }
  read -r secs kb < "$work/time"
  printf '%-10s %12s %12.1f %14.3f %12.1f\n' "$n" "$secs" "$(echo "$kb/1024" | bc -l)" "$base" "$(echo "$secs/$base" | bc -l)"
done
