#!/usr/bin/env bash
# What open live consoles cost `banhammer serve`: POST /v1/incr throughput with wrk, with no
# console open and with N consoles (GET /v1/events streams, as the page holds them) open
# during the run, alternated, each the better of two runs. Prints req/s for both and the
# ratio (the issue's bar: ≥ 0.95 with 10 consoles). Server on CPU 0, wrk on CPU 1 (when
# there are two); the consoles are curl processes reading the streams.
#
#   bench/console.sh [seconds=10] [consoles=10] [connections=64]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}; consoles=${2:-10}; conns=${3:-64}
command -v wrk >/dev/null || { echo "bench/console.sh needs wrk (apt-get install wrk)" >&2; exit 2; }
command -v curl >/dev/null || { echo "bench/console.sh needs curl" >&2; exit 2; }
cargo build --release -q -p banhammer
work=$(mktemp -d)
readers=()
stop_readers() { for r in "${readers[@]}"; do kill "$r" 2>/dev/null || true; done; readers=(); }
trap 'stop_readers; kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
cat > "$work/bench.toml" <<'TOML'
[metrics.request]
[[metrics.request.thresholds]]
limit = 1000
window = 60
actions = ["block_local"]
action_duration = 60
TOML
pin_server=(); pin_wrk=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then pin_server=(taskset -c 0); pin_wrk=(taskset -c 1); fi
BANHAMMER_ADMIN_TOKEN=bench-token "${pin_server[@]}" target/release/banhammer serve --config "$work/bench.toml" \
  --listen 127.0.0.1:0 --db "$work/db.sqlite" > "$work/out" 2> "$work/log" &
pid=$!
for _ in $(seq 50); do grep -q listening "$work/out" 2>/dev/null && break; sleep 0.1; done
url=$(awk '{print $NF}' "$work/out")
cat > "$work/incr.lua" <<'LUA'
local n = 0
request = function()
  n = n + 1
  local body = '{"token":"10.' .. (n % 256) .. '.' .. (math.floor(n / 256) % 256) .. '.2","metric":"request"}'
  return wrk.format("POST", "/v1/incr", {["Content-Type"] = "application/json"}, body)
end
LUA
open_consoles() {
  for i in $(seq "$1"); do
    "${pin_wrk[@]}" curl -sN -H 'Authorization: Bearer bench-token' "$url/v1/events" > "$work/console$i" &
    readers+=($!)
  done
  # Each has had its snapshot before the load starts.
  for i in $(seq "$1"); do
    for _ in $(seq 50); do grep -q '^event: snapshot' "$work/console$i" 2>/dev/null && break; sleep 0.1; done
  done
}
run() { # consoles → req/s
  open_consoles "$1"
  "${pin_wrk[@]}" wrk -t1 -c"$conns" -d"${secs}s" -s "$work/incr.lua" "$url" > "$work/wrk.txt"
  # Still open and fed at the end: the streams carried rates all along.
  for i in $(seq "$1"); do
    grep -q '^event: rates' "$work/console$i" || { echo "console $i got no rates" >&2; exit 1; }
  done
  stop_readers
  awk '/Requests\/sec/ {print $2}' "$work/wrk.txt"
}
max() { awk -v a="$1" -v b="$2" 'BEGIN{print (a>=b)?a:b}'; }
none1=$(run 0); with1=$(run "$consoles"); none2=$(run 0); with2=$(run "$consoles")
none=$(max "$none1" "$none2"); with=$(max "$with1" "$with2")
echo "incr req/s, no console:     $none ($none1, $none2)"
echo "incr req/s, $consoles consoles:  $with ($with1, $with2)"
awk -v a="$with" -v b="$none" 'BEGIN{printf "ratio: %.3f\n", a / b}'
