#!/usr/bin/env bash
# Load test of `banhammer monitor` on loopback (run as root: it captures packets).
#
# 1. Live: wrk sends about RATE requests/s for SECONDS to a real HTTP server (`banhammer
#    serve`, whose unknown paths answer 404) over keep-alive connections, to five sections;
#    `banhammer monitor --interface lo` counts them while tcpdump writes the same traffic to a
#    pcap file. Prints requests sent (wrk) against requests counted (monitor), the kernel's
#    drops, and the monitor's CPU time.
# 2. Offline: the pcap file through `banhammer monitor --pcap` and, as the baseline, through
#    `tshark -q -z http,tree` (Wireshark's HTTP statistics): packets/s of each and the ratio.
#
#   bench/monitor.sh [seconds=20] [rate=20000] [connections=20]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}; rate=${2:-20000}; conns=${3:-20}
for tool in wrk tcpdump tshark; do
  command -v "$tool" >/dev/null || { echo "bench/monitor.sh needs $tool (apt-get install $tool)" >&2; exit 2; }
done
cargo build --release -q -p banhammer --features capture
bin=target/release/banhammer
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT

# The server on CPU 0, wrk on CPU 1; monitor and tcpdump go where the scheduler puts them.
pin_server=(); pin_wrk=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then pin_server=(taskset -c 0); pin_wrk=(taskset -c 1); fi
"${pin_server[@]}" "$bin" serve --listen 127.0.0.1:0 --db "$work/db.sqlite" > "$work/serve.out" 2> /dev/null &
pids+=($!)
for _ in $(seq 50); do grep -q listening "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
url=$(awk '{print $NF}' "$work/serve.out")
port=${url##*:}
filter="tcp port $port"

/usr/bin/time -f "%e %U %S" -o "$work/monitor.time" \
  "$bin" monitor --interface lo --filter "$filter" --json --interval 1 --duration $((secs + 3)) \
  > "$work/monitor.jsonl" 2> "$work/monitor.err" &
pids+=($!); monitor=$!
tcpdump -i lo -U -w "$work/lo.pcap" "$filter" 2> "$work/tcpdump.err" &
pids+=($!); tcpdump=$!
for _ in $(seq 50); do
  grep -q "capturing on" "$work/monitor.err" && grep -q "listening on" "$work/tcpdump.err" && break
  sleep 0.1
done

# Each connection waits about conns/rate seconds between requests (wrk's timer counts whole
# milliseconds), so about `rate` requests/s in all; the figure printed is what wrk did.
delay_ms=$(awk -v c="$conns" -v r="$rate" 'BEGIN{d = int(c * 1000 / r); print (d < 1 ? 1 : d)}')
cat > "$work/sections.lua" <<LUA
local paths = {"/api/user", "/api/help", "/report", "/pages/create", "/healthz"}
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", paths[n % #paths + 1] .. "?n=" .. n)
end
delay = function() return $delay_ms end
LUA
"${pin_wrk[@]}" wrk -t1 -c"$conns" -d"${secs}s" -s "$work/sections.lua" "$url" > "$work/wrk.txt"
sent=$(awk '/requests in/ {print $1}' "$work/wrk.txt")
wait "$monitor" || true
kill -TERM "$tcpdump"; wait "$tcpdump" 2>/dev/null || true

counted=$(python3 -c '
import json, sys
n = 0
for line in open(sys.argv[1]):
    v = json.loads(line)
    if v["type"] == "report":
        n += v["interval"]["requests"]
        last = v
print(n, last["packets"], last["drops"])' "$work/monitor.jsonl")
read -r counted packets drops <<< "$counted"
read -r wall user sys < "$work/monitor.time"
echo "== live capture on lo, $secs s"
echo "requests sent (wrk)        $sent  ($(awk -v n="$sent" -v s="$secs" 'BEGIN{printf "%.0f", n / s}') req/s)"
echo "requests counted (monitor) $counted  (ratio $(awk -v a="$counted" -v b="$sent" 'BEGIN{printf "%.4f", a / b}'))"
echo "packets captured           $packets, dropped by the kernel: $drops"
echo "tcpdump                    $(grep -E 'captured|dropped by kernel' "$work/tcpdump.err" | tr '\n' ' ')"
echo "monitor CPU                ${user}s user + ${sys}s system over ${wall}s ($(awk -v u="$user" -v s="$sys" -v w="$wall" 'BEGIN{printf "%.0f", 100 * (u + s) / w}')% of one core)"

echo "== the same traffic from the pcap file ($(du -h "$work/lo.pcap" | cut -f1))"
t0=$(date +%s.%N)
"$bin" monitor --pcap "$work/lo.pcap" --json --interval 10 > "$work/replay.jsonl"
t1=$(date +%s.%N)
tshark -r "$work/lo.pcap" -d "tcp.port==$port,http" -q -z http,tree > "$work/tshark.txt" 2> /dev/null
t2=$(date +%s.%N)
read -r replayed file_packets _ <<< "$(python3 -c '
import json, sys
n = 0
for line in open(sys.argv[1]):
    v = json.loads(line)
    if v["type"] == "report":
        n += v["interval"]["requests"]
        last = v
print(n, last["packets"], last["drops"])' "$work/replay.jsonl")"
tshark_requests=$(awk '/HTTP Request Packets/ {print $4}' "$work/tshark.txt")
mine=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b - a}')
theirs=$(awk -v a="$t1" -v b="$t2" 'BEGIN{printf "%.2f", b - a}')
echo "tool                        seconds  packets/s  requests"
printf "banhammer monitor --pcap    %7s  %9.0f  %s\n" "$mine" "$(awk -v p="$file_packets" -v t="$mine" 'BEGIN{print p / t}')" "$replayed"
printf "tshark -z http,tree         %7s  %9.0f  %s\n" "$theirs" "$(awk -v p="$file_packets" -v t="$theirs" 'BEGIN{print p / t}')" "${tshark_requests:-?}"
echo "ratio (banhammer / tshark packets/s): $(awk -v a="$mine" -v b="$theirs" 'BEGIN{printf "%.1f", b / a}')x"
