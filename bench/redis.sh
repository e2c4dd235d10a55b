#!/usr/bin/env bash
# Load test of `banhammer serve` on the Redis store, with wrk on loopback, in one run:
#   memory  POST /v1/incr on `banhammer serve` with its state in memory (the baseline);
#   redis   POST /v1/incr on `banhammer serve --store redis://127.0.0.1:PORT`, on a redis-server
#           this script starts on a free port;
#   raw     `redis-benchmark -t incr` on the same redis-server: the ceiling, one plain command
#           per request instead of one HTTP request and one script call.
# Prints req/s, p50 and p99 per case, the ratios to `memory`, and the CPU time per request of
# the banhammer server and of redis-server. Everything under test (banhammer and redis-server)
# is pinned to CPU 0 and the load generators (wrk, redis-benchmark) to CPU 1 when there are two,
# so each case gets the same single core. Each case runs twice, interleaved, and the better
# run counts. Requests carry 65,536 distinct tokens, as in bench/http.sh.
#
#   bench/redis.sh [seconds=10] [connections=64] [wrk threads=1]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}; conns=${2:-64}; threads=${3:-1}
for tool in wrk redis-server redis-cli redis-benchmark; do
  command -v "$tool" >/dev/null || { echo "bench/redis.sh needs $tool (apt-get install wrk redis-server)" >&2; exit 2; }
done
# The machine may be shared: wait for another load test to finish rather than measure both.
for _ in $(seq 120); do pgrep -x wrk >/dev/null || pgrep -x redis-benchmark >/dev/null || break; echo "waiting for another benchmark to end…" >&2; sleep 5; done
cargo build --release -q -p banhammer
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT

pin_server=(); pin_load=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then pin_server=(taskset -c 0); pin_load=(taskset -c 1); fi

# redis-server on a free loopback port (retried if another process takes the port first).
port=
for _ in $(seq 20); do
  p=$((20000 + RANDOM % 30000))
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then continue; fi
  "${pin_server[@]}" redis-server --port "$p" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$work" > "$work/redis.log" 2>&1 &
  rpid=$!
  for _ in $(seq 50); do redis-cli -p "$p" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
  if redis-cli -p "$p" ping 2>/dev/null | grep -q PONG; then port=$p; pids+=("$rpid"); break; fi
  kill "$rpid" 2>/dev/null || true
done
[ -n "$port" ] || { echo "could not start redis-server" >&2; exit 1; }

cat > "$work/bench.toml" <<'TOML'
[metrics.request]
[[metrics.request.thresholds]]
limit = 1000
window = 60
actions = ["block_local"]
action_duration = 60
TOML
start() { # name, extra serve args…: prints the server's URL; its pid is kept for the trap
  local name=$1; shift
  "${pin_server[@]}" target/release/banhammer serve --config "$work/bench.toml" --listen 127.0.0.1:0 \
    --db "$work/$name.sqlite" "$@" > "$work/$name.out" 2> "$work/$name.log" &
  pids+=("$!"); echo "$!" > "$work/$name.pid"
  for _ in $(seq 50); do grep -q listening "$work/$name.out" 2>/dev/null && break; sleep 0.1; done
  grep -q listening "$work/$name.out" || { echo "$name did not start:" >&2; cat "$work/$name.log" >&2; exit 1; }
}
start memory
start redis --store "redis://127.0.0.1:$port"
url_memory=$(awk '{print $NF}' "$work/memory.out")
url_redis=$(awk '{print $NF}' "$work/redis.out")
bh_memory=$(cat "$work/memory.pid"); bh_redis=$(cat "$work/redis.pid")

cat > "$work/incr.lua" <<'LUA'
local n = 0
request = function()
  n = n + 1
  local body = '{"token":"10.' .. (n % 256) .. '.' .. (math.floor(n / 256) % 256) .. '.2","metric":"request"}'
  return wrk.format("POST", "/v1/incr", {["Content-Type"] = "application/json"}, body)
end
LUA

cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; } # user + system, in clock ticks
tck=$(getconf CLK_TCK)
ms() { # a wrk latency (850.00us, 1.23ms, 1.01s) in milliseconds
  awk -v x="$1" 'BEGIN { v = x + 0; if (x ~ /us$/) v /= 1000; else if (x ~ /[0-9]s$/ && x !~ /ms$/) v *= 1000; printf "%.3f", v }'
}
# Each line: case req/s p50_ms p99_ms banhammer_cpu_us/req redis_cpu_us/req
wrk_case() { # name, url, banhammer pid
  local name=$1 url=$2 bh=$3 b0 r0 b1 r1 n
  b0=$(cpu "$bh"); r0=$(cpu "$rpid")
  "${pin_load[@]}" wrk -t"$threads" -c"$conns" -d"${secs}s" --latency -s "$work/incr.lua" "$url" > "$work/$name.txt"
  b1=$(cpu "$bh"); r1=$(cpu "$rpid")
  n=$(awk '/requests in/ {print $1}' "$work/$name.txt")
  grep -h "Non-2xx\|Socket errors" "$work/$name.txt" >&2 || true
  echo "$name $(awk '/Requests\/sec/ {print $2}' "$work/$name.txt") $(ms "$(awk '$1=="50%" {print $2}' "$work/$name.txt")")" \
    "$(ms "$(awk '$1=="99%" {print $2}' "$work/$name.txt")")" \
    "$(awk -v d=$((b1 - b0)) -v n="$n" -v t="$tck" 'BEGIN{printf "%.1f", d / t * 1e6 / n}')" \
    "$(awk -v d=$((r1 - r0)) -v n="$n" -v t="$tck" 'BEGIN{printf "%.1f", d / t * 1e6 / n}')"
}
# redis-benchmark counts requests, not seconds: a short run sizes the real one to last $secs.
calib=$("${pin_load[@]}" timeout 60 redis-benchmark -p "$port" -t incr -c "$conns" -n 100000 -r 65536 --csv | awk -F'"' 'NR==2 {print $4}')
raw_n=$(awk -v r="$calib" -v s="$secs" 'BEGIN{printf "%d", r * s}')
raw_case() {
  local r0 r1 line
  r0=$(cpu "$rpid")
  line=$("${pin_load[@]}" timeout $((secs * 10 + 60)) redis-benchmark -p "$port" -t incr -c "$conns" -n "$raw_n" -r 65536 --csv | awk -F'"' 'NR==2')
  r1=$(cpu "$rpid")
  # "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
  echo "raw $(echo "$line" | awk -F'"' '{printf "%s %s %s", $4, $10, $14}') - $(awk -v d=$((r1 - r0)) -v n="$raw_n" -v t="$tck" 'BEGIN{printf "%.1f", d / t * 1e6 / n}')"
}
better() { # keeps the line with more req/s
  awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " "); print (x[2] + 0 >= y[2] + 0) ? a : b }'
}
redis_runs=""
best_memory=""; best_redis=""; best_raw=""
for round in 1 2; do
  line=$(wrk_case memory "$url_memory" "$bh_memory"); best_memory=$(better "${best_memory:-$line}" "$line")
  redis-cli -p "$port" flushall >/dev/null
  m0=$(redis-cli -p "$port" info memory | awk -F: '/^used_memory:/ {print $2+0}')
  line=$(wrk_case redis "$url_redis" "$bh_redis"); best_redis=$(better "${best_redis:-$line}" "$line")
  m1=$(redis-cli -p "$port" info memory | awk -F: '/^used_memory:/ {print $2+0}')
  events=$(awk '/requests in/ {print $1}' "$work/redis.txt")
  redis_runs="$redis_runs round $round: $events events kept in Redis, $(awk -v d=$((m1 - m0)) -v n="$events" 'BEGIN{printf "%.0f", d / n}') bytes each;"
  line=$(raw_case); best_raw=$(better "${best_raw:-$line}" "$line")
done

echo "case req/s p50_ms p99_ms req/s_vs_memory p99_vs_memory banhammer_cpu_us/req redis_cpu_us/req"
for line in "$best_memory" "$best_redis" "$best_raw"; do
  echo "$line $best_memory" | awk '{ printf "%s %s %s %s %.2f %.2f %s %s\n", $1, $2, $3, $4, $2 / $8, $4 / $10, $5, $6 }'
done
echo "memory:$redis_runs" | sed 's/memory:/redis memory per event:/; s/;$//'
health=$(curl -s "$url_redis/metrics" | grep -E '^banhammer_(store_errors_total|store_short_circuited_total|fail_policy_answers_total) ' | tr '\n' ' ')
echo "redis store health after the runs: $health"
case "$health" in *"fail_policy_answers_total 0 "*) ;; *) echo "WARNING: some answers came from the fail policy, not from Redis; the redis figures are not valid" >&2 ;; esac
