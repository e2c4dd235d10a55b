#!/usr/bin/env bash
# Load test of `banhammer serve` with wrk on loopback: PUT /detect and POST /v1/incr for many
# addresses, and in the same run GET /healthz of the same server as the no-op baseline.
# Prints req/s, p50 and p99 per route and the ratio to the baseline. The server is pinned
# to CPU 0 and wrk to CPU 1 (when there are two), so neither steals the other's time; each
# route runs twice, interleaved, and the better run counts.
#
#   bench/http.sh [seconds=10] [connections=64] [wrk threads=1]
#   BANHAMMER_BIN=path bench/http.sh …   (an already built binary, e.g. an older release to compare)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}; conns=${2:-64}; threads=${3:-1}
command -v wrk >/dev/null || { echo "bench/http.sh needs wrk (apt-get install wrk)" >&2; exit 2; }
bin=${BANHAMMER_BIN:-target/release/banhammer}
[ -n "${BANHAMMER_BIN:-}" ] || cargo build --release -q -p banhammer
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
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
"${pin_server[@]}" "$bin" serve --config "$work/bench.toml" --listen 127.0.0.1:0 --db "$work/db.sqlite" \
  > "$work/out" 2> "$work/log" &
pid=$!
for _ in $(seq 50); do grep -q listening "$work/out" 2>/dev/null && break; sleep 0.1; done
url=$(awk '{print $NF}' "$work/out")
# Each request comes from one of 65,536 addresses, so the engine tracks many tokens.
cat > "$work/detect.lua" <<'LUA'
local n = 0
request = function()
  n = n + 1
  local ip = "10." .. (n % 256) .. "." .. (math.floor(n / 256) % 256) .. ".1"
  local body = "email=user" .. (n % 65536) .. "@example.com&event_name=login&ip=" .. ip
  return wrk.format("PUT", "/detect", {["Content-Type"] = "application/x-www-form-urlencoded"}, body)
end
LUA
# The baseline builds its requests in Lua too, so that wrk spends the same on each route.
cat > "$work/noop.lua" <<'LUA'
local n = 0
request = function()
  n = n + 1
  local ip = "10." .. (n % 256) .. "." .. (math.floor(n / 256) % 256) .. ".3"
  return wrk.format("GET", "/healthz", {["X-Client"] = ip})
end
LUA
cat > "$work/incr.lua" <<'LUA'
local n = 0
request = function()
  n = n + 1
  local body = '{"token":"10.' .. (n % 256) .. '.' .. (math.floor(n / 256) % 256) .. '.2","metric":"request"}'
  return wrk.format("POST", "/v1/incr", {["Content-Type"] = "application/json"}, body)
end
LUA
run() { # name, extra wrk args…
  local name=$1; shift
  "${pin_wrk[@]}" wrk -t"$threads" -c"$conns" -d"${secs}s" --latency "$@" > "$work/$name.txt"
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' "$work/$name.txt")
  p50=$(awk '$1=="50%" {print $2}' "$work/$name.txt")
  p99=$(awk '$1=="99%" {print $2}' "$work/$name.txt")
  echo "$name $rps $p50 $p99"
}
best() { # name, args…: the better of two runs
  local a b
  a=$(run "$@"); b=$(run "$@")
  if awk -v x="$(echo "$a" | awk '{print $2}')" -v y="$(echo "$b" | awk '{print $2}')" 'BEGIN{exit !(x>=y)}'; then echo "$a"; else echo "$b"; fi
}
echo "route req/s p50 p99 ratio_to_noop"
base=$(best noop -s "$work/noop.lua" "$url")
echo "$base 1.00"
base_rps=$(echo "$base" | awk '{print $2}')
for r in "detect -s $work/detect.lua $url" "incr -s $work/incr.lua $url"; do
  # shellcheck disable=SC2086
  line=$(best $r)
  echo "$line $(echo "$line $base_rps" | awk '{printf "%.2f", $2 / $5}')"
done
errors=$(grep -h "Non-2xx" "$work"/*.txt || true)
[ -z "$errors" ] || echo "non-2xx answers: $errors"
