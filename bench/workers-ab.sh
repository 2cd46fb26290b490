#!/usr/bin/env bash
# Two tig configurations and nginx, interleaved, on 1 KiB GETs (issue 15): e.g. the
# default per-core workers against `--workers 0`, in the same minutes, so a noisy
# machine slows all three alike.
#
#   A="target/release/tig" B="target/release/tig --workers 0" bench/workers-ab.sh
#   ROUNDS=5 DUR=3 CONNS="1 16 64" A=... B=... bench/workers-ab.sh
#
# Prints one line per round and connection count: req/s, p50, p99 of A, B and nginx,
# and the ratios A/nginx, B/nginx. Data on /dev/shm; everything is removed at exit.
set -euo pipefail
ROUNDS=${ROUNDS:-3}; DUR=${DUR:-3}; CONNS=${CONNS:-"16 64"}
work=$(mktemp -d /dev/shm/ab.XXXX); mkdir -p $work/a $work/b $work/www
trap 'kill $(jobs -p) 2>/dev/null; sleep 0.3; rm -rf $work' EXIT
fp() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pa=$(fp); pb=$(fp); pn=$(fp)
read -r abin aargs <<<"$A"; read -r bbin bargs <<<"$B"
TIG_LOG=warn $abin serve --listen 127.0.0.1:$pa --root $work/a --retention 0 $aargs >/dev/null 2>&1 &
TIG_LOG=warn $bbin serve --listen 127.0.0.1:$pb --root $work/b --retention 0 $bargs >/dev/null 2>&1 &
cat > $work/nginx.conf <<EOC
worker_processes auto; pid $work/nginx.pid; error_log $work/err.log; daemon off;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000; server { listen 127.0.0.1:$pn; root $work/www; } }
EOC
nginx -c $work/nginx.conf &
head -c 1024 /dev/urandom > $work/www/1k
for i in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:$pa/ && curl -s -o /dev/null http://127.0.0.1:$pb/ && break; sleep 0.05; done
p=$(curl -s --data-binary @$work/www/1k http://127.0.0.1:$pa/); curl -s --data-binary @$work/www/1k http://127.0.0.1:$pb/ >/dev/null
w() { wrk -t$([ $1 = 1 ] && echo 1 || echo 2) -c$1 -d${DUR}s --latency $2 | awk '/Requests\/sec/{r=$2} $1=="50%"{p=$2} $1=="99%"{q=$2} END{printf "%s %s %s", r, p, q}'; }
for r in $(seq $ROUNDS); do
 for c in $CONNS; do
  a=$(w $c http://127.0.0.1:$pa$p); b=$(w $c http://127.0.0.1:$pb$p); n=$(w $c http://127.0.0.1:$pn/1k)
  echo "c=$c A=[$a] B=[$b] nginx=[$n] A/n=$(awk -v a=${a%% *} -v b=${n%% *} 'BEGIN{printf "%.2f",a/b}') B/n=$(awk -v a=${b%% *} -v b=${n%% *} 'BEGIN{printf "%.2f",a/b}')"
 done
done
