#!/usr/bin/env bash
# What forward-auth costs a reverse proxy: wrk through nginx on loopback to one static file,
# on two server blocks whose `location /` differ only in `auth_request` to banhammer's
# `GET /v1/check` (keep-alive upstream, as docs/enforcement-proxies.md shows). Prints req/s,
# p50 and p99 of each and the ratio checked/open. nginx and banhammer share CPU 0 and wrk
# has CPU 1 (when there are two), so the ratio is the proxy host's throughput with the
# check against without it on the same core. The two run alternated, twice each, and the
# better run of each counts.
#
# Each request comes from one of 65,536 client addresses, so banhammer tracks many tokens as
# it would in front of real traffic: wrk sends the address in X-Client and this bench's nginx
# (only here) forwards it as X-Forwarded-For. The limit is far above what a run reaches, so
# nothing is refused.
#
#   bench/forward-auth.sh [seconds=10] [connections=64] [wrk threads=1]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}; conns=${2:-64}; threads=${3:-1}
for tool in wrk nginx curl; do
  command -v "$tool" >/dev/null || { echo "bench/forward-auth.sh needs $tool (apt-get install $tool)" >&2; exit 2; }
done
cargo build --release -q -p banhammer
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
cat > "$work/bench.toml" <<'TOML'
[metrics.request]
[[metrics.request.thresholds]]
limit = 1000000000
window = 60
actions = ["block_local"]
action_duration = 60

[serve]
trusted_proxies = ["127.0.0.1"]

[serve.check]
TOML
pin_proxy=(); pin_wrk=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then pin_proxy=(taskset -c 0); pin_wrk=(taskset -c 1); fi
"${pin_proxy[@]}" target/release/banhammer serve --config "$work/bench.toml" --listen 127.0.0.1:0 \
  --db "$work/db.sqlite" > "$work/out" 2> "$work/log" &
pids+=($!)
for _ in $(seq 100); do grep -q listening "$work/out" 2>/dev/null && break; sleep 0.1; done
bh=$(awk '{print $NF}' "$work/out" | sed 's|http://||')
[ -n "$bh" ] || { echo "banhammer did not start:" >&2; cat "$work/log" >&2; exit 1; }
free_port() { # a port nothing answers on (good enough for a bench)
  local p
  while :; do
    p=$((20000 + RANDOM % 40000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}
open_port=$(free_port); checked_port=$(free_port)
mkdir -p "$work/www"
echo "upstream" > "$work/www/index.html"
# One nginx process (master_process off: no worker switching to another user under root).
cat > "$work/nginx.conf" <<NGINX
daemon off;
master_process off;
pid $work/nginx.pid;
error_log $work/error.log;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $work/client_body;
    proxy_temp_path $work/proxy;
    fastcgi_temp_path $work/fastcgi;
    uwsgi_temp_path $work/uwsgi;
    scgi_temp_path $work/scgi;
    upstream banhammer {
        server $bh;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$open_port;
        root $work/www;
        location / { }
    }
    server {
        listen 127.0.0.1:$checked_port;
        root $work/www;
        location / {
            auth_request /_banhammer;
        }
        location = /_banhammer {
            internal;
            proxy_pass http://banhammer/v1/check;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            # Only in this bench: the client address comes from wrk (see above).
            proxy_set_header X-Forwarded-For \$http_x_client;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
NGINX
"${pin_proxy[@]}" nginx -c "$work/nginx.conf" -p "$work" -e "$work/error.log" &
pids+=($!)
for _ in $(seq 100); do
  curl -s -o /dev/null "http://127.0.0.1:$checked_port/index.html" 2>/dev/null && break; sleep 0.1
done
status=$(curl -s -o /dev/null -w '%{http_code}' -H 'X-Client: 10.0.0.1' "http://127.0.0.1:$checked_port/index.html")
[ "$status" = 200 ] || { echo "the checked server answers $status:" >&2; cat "$work/error.log" >&2; exit 1; }
cat > "$work/clients.lua" <<'LUA'
local n = 0
request = function()
  n = n + 1
  local ip = "10." .. (n % 256) .. "." .. (math.floor(n / 256) % 256) .. ".1"
  return wrk.format("GET", "/index.html", {["X-Client"] = ip})
end
LUA
run() { # name, port
  "${pin_wrk[@]}" wrk -t"$threads" -c"$conns" -d"${secs}s" --latency -s "$work/clients.lua" \
    "http://127.0.0.1:$2" > "$work/$1.$3.txt"
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' "$work/$1.$3.txt")
  p50=$(awk '$1=="50%" {print $2}' "$work/$1.$3.txt")
  p99=$(awk '$1=="99%" {print $2}' "$work/$1.$3.txt")
  echo "$1 $rps $p50 $p99"
}
better() { # two result lines: the one with more req/s
  if awk -v x="$(echo "$1" | awk '{print $2}')" -v y="$(echo "$2" | awk '{print $2}')" 'BEGIN{exit !(x>=y)}'; then
    echo "$1"; else echo "$2"; fi
}
o1=$(run open "$open_port" 1); c1=$(run checked "$checked_port" 1)
o2=$(run open "$open_port" 2); c2=$(run checked "$checked_port" 2)
open=$(better "$o1" "$o2"); checked=$(better "$c1" "$c2")
echo "server req/s p50 p99 ratio_to_open"
echo "$open 1.00"
echo "$checked $(echo "$checked $open" | awk '{printf "%.2f", $2 / $6}')"
errors=$(grep -h "Non-2xx" "$work"/*.txt || true)
[ -z "$errors" ] || echo "non-2xx answers: $errors"
