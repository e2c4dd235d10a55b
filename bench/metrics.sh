#!/usr/bin/env bash
# /metrics must cost the same whatever the number of bans: with 100,000 active bans, POST
# /v1/incr throughput while 8 connections scrape /metrics 10 times a second each (80 scrapes/s,
# far more than any Prometheus), as a ratio to the throughput without them (goal: >= 0.9).
# Then, for the cost of a scrape itself, the same 8 connections scraping as fast as they can.
# Runs alternate (alone, scraped, three times) so that machine noise hits both alike; each
# figure is the best of its three runs. Server on CPU 0, load and scrapers on CPU 1.
#
#   bench/metrics.sh [seconds=10] [bans=100000]
#   BANHAMMER=path/to/banhammer bench/metrics.sh   # another build, e.g. an older commit's
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}; bans=${2:-100000}
command -v wrk >/dev/null || { echo "bench/metrics.sh needs wrk (apt-get install wrk)" >&2; exit 2; }
bin=${BANHAMMER:-target/release/banhammer}
[ -n "${BANHAMMER:-}" ] || cargo build --release -q -p banhammer
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
cat > "$work/bench.toml" <<'TOML'
[engine]
max_tokens = 1000000

[metrics.request]
[[metrics.request.thresholds]]
limit = 1000000
window = 60
actions = ["block_local"]
action_duration = 60

# The first event of a token bans it for an hour: the bans the scrapes must not walk.
[metrics.ban]
[[metrics.ban.thresholds]]
limit = 1
window = 60
actions = ["block_local"]
action_duration = 3600
TOML
pin_server=(); pin_load=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then pin_server=(taskset -c 0); pin_load=(taskset -c 1); fi
"${pin_server[@]}" "$bin" serve --config "$work/bench.toml" --listen 127.0.0.1:0 --db "$work/db.sqlite" \
  > "$work/out" 2> "$work/log" &
pid=$!
for _ in $(seq 100); do grep -q listening "$work/out" 2>/dev/null && break; sleep 0.1; done
url=$(awk '{print $NF}' "$work/out")
cat > "$work/ban.lua" <<LUA
local n = 0
request = function()
  n = n + 1
  local i = n % $bans
  local body = '{"token":"10.' .. (i % 256) .. '.' .. (math.floor(i / 256) % 256) .. '.' .. math.floor(i / 65536) .. '","metric":"ban"}'
  return wrk.format("POST", "/v1/incr", {["Content-Type"] = "application/json"}, body)
end
LUA
cat > "$work/incr.lua" <<'LUA'
local n = 0
request = function()
  n = n + 1
  local body = '{"token":"172.16.' .. (n % 256) .. '.' .. (math.floor(n / 256) % 256) .. '","metric":"request"}'
  return wrk.format("POST", "/v1/incr", {["Content-Type"] = "application/json"}, body)
end
LUA
cat > "$work/scrape.lua" <<'LUA'
-- Each connection waits 100 ms between scrapes.
function delay()
  return 100
end
LUA
active() { curl -s "$url/metrics" | awk '$1=="banhammer_active_bans" {print $2}'; }
# Ban every token of the range (bounded: at most 20 rounds).
for _ in $(seq 20); do
  [ "$(active)" -ge "$bans" ] && break
  "${pin_load[@]}" wrk -t1 -c32 -d5s -s "$work/ban.lua" "$url" > /dev/null
done
echo "active bans: $(active)"
run() { # name, scrape (0, 1: 10/s a connection, 2: flat out): req/s of /v1/incr
  local name=$1 scrape=$2 spid=
  if [ "$scrape" != 0 ]; then
    local paced=(); [ "$scrape" = 1 ] && paced=(-s "$work/scrape.lua")
    "${pin_load[@]}" wrk -t1 -c8 -d"$((secs + 2))s" "${paced[@]}" "$url/metrics" > "$work/scrape-$name.txt" &
    spid=$!
  fi
  "${pin_load[@]}" wrk -t1 -c64 -d"${secs}s" -s "$work/incr.lua" "$url" > "$work/$name.txt"
  [ -z "$spid" ] || wait "$spid"
  awk '/Requests\/sec/ {print $2}' "$work/$name.txt"
}
alones=(); scrapeds=()
for round in 1 2 3; do
  alones+=("$(run "alone$round" 0)"); scrapeds+=("$(run "scraped$round" 1)")
done
f1=$(run flat1 2)
alone=$(printf '%s\n' "${alones[@]}" | sort -g | tail -1)
scraped=$(printf '%s\n' "${scrapeds[@]}" | sort -g | tail -1)
scrapes=$(awk '/Requests\/sec/ {print $2}' "$work"/scrape-scraped*.txt | sort -g | tail -1)
flat=$(awk '/Requests\/sec/ {print $2}' "$work"/scrape-flat1.txt)
latency=$(awk '$1=="Latency" {print $2}' "$work"/scrape-flat1.txt)
echo "incr alone: ${alones[*]} req/s; scraped 80/s: ${scrapeds[*]} req/s (scrapes: $scrapes /s)"
echo "ratio scraped/alone: $(awk -v s="$scraped" -v a="$alone" 'BEGIN{printf "%.2f", s / a}')"
echo "scraped flat out: incr $f1 req/s while $flat scrapes/s answered (mean scrape latency $latency)"
errors=$(grep -h "Non-2xx" "$work"/*.txt || true)
[ -z "$errors" ] || echo "non-2xx answers: $errors"
