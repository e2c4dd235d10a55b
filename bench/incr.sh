#!/usr/bin/env bash
# The engine against governor's keyed limiter, fairly: each contender in a fresh process
# (criterion's filter picks one benchmark of `incr_scale_*`), the order alternated every
# round, at 1k, 100k and 1M tokens. Prints each run's mean time per call and, per case, the
# range over the rounds of governor's time / banhammer's (a throughput ratio: ≥ 1 means
# banhammer is faster).
#
#   bench/incr.sh [rounds=3]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
cargo bench -p banhammer-core --bench incr --no-run -q 2>/dev/null
bin=$(ls -t target/release/deps/incr-* | grep -v '\.d$' | head -1)
# The mean of criterion's estimate, in ns ("time:   [low mean high]").
mean_ns() {
  "$bin" --bench "^$1\$" 2>/dev/null | awk '/time:/ {
      v = $(NF-3); u = $(NF-2)
      gsub(/\[/, "", v)
      f = (u == "ps") ? 0.001 : (u == "ns") ? 1 : (u == "µs" || u == "us") ? 1000 : 1000000
      printf "%.1f\n", v * f; exit }'
}
declare -A ratios
for case in 1k 100k 1M; do
  for r in $(seq "$rounds"); do
    if (( r % 2 )); then order="banhammer governor"; else order="governor banhammer"; fi
    declare -A t=()
    for who in $order; do
      name=$([ "$who" = banhammer ] && echo "incr_scale_$case/banhammer/Engine" || echo "incr_scale_$case/governor/keyed")
      t[$who]=$(mean_ns "$name")
      echo "$case round $r $who ${t[$who]} ns"
    done
    ratios[$case]+="$(awk -v g="${t[governor]}" -v b="${t[banhammer]}" 'BEGIN { printf "%.2f ", g / b }')"
  done
done
echo "case  governor/banhammer (throughput ratio), per round"
for case in 1k 100k 1M; do
  echo "$case  ${ratios[$case]}"
done
