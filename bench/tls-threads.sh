#!/usr/bin/env bash
# Where a closed-loop TLS tail comes from: every thread's CPU time, time spent
# waiting for a core, sleeps and preemptions, for the server and for wrk, during a
# keep-alive TLS GET of 1 KiB, tig vs nginx (issue 15; BENCHMARKS.md, "Alternating
# rounds, and the TLS tail measured thread by thread").
#
#   bench/tls-threads.sh                          # 3 rounds at 64 connections
#   ROUNDS=5 CONNS=16 TIG_BIN=target/release/tig bench/tls-threads.sh
#   WRK_SLICE_NS=100000 bench/tls-threads.sh      # wrk's threads get a 0.1 ms EEVDF slice
#   PLAIN=1 bench/tls-threads.sh                  # the same over plain HTTP
#
# Each round runs `wrk -t2 -c$CONNS -d4s` against tig and then against nginx (same
# self-signed P-256 certificate, every process on every core) and reads
# /proc/<pid>/task/*/{schedstat,status} about 1 s and 3 s into the run, so start-up
# and wind-down are left out; the interval measured between the two readings is
# printed. Per thread that used more than 20 ms of CPU in it: CPU ms, ms runnable but
# waiting for a core, voluntary switches (sleeps) and involuntary ones (preemptions).
# WRK_SLICE_NS needs x86_64 and Linux 6.12 or newer.
# Needs wrk, nginx and openssl (installed with apt-get when missing, as root).
set -euo pipefail

ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-64}
WRK_SLICE_NS=${WRK_SLICE_NS:-}
PLAIN=${PLAIN:-0}
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/tig-tls-threads.XXXXXX)
pids=()
cleanup() {
    for p in ${pids[@]+"${pids[@]}"}; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
export NO_PROXY='*' no_proxy='*'

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx-light)
command -v openssl >/dev/null || need+=(openssl)
if ((${#need[@]})); then
    apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi
bin=${TIG_BIN:-}
if [ -z "$bin" ]; then
    (cd "$here" && cargo build --release -p tig --quiet)
    bin="${CARGO_TARGET_DIR:-$here/target}/release/tig"
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_url() { for _ in $(seq 1 300); do curl -sfk -o /dev/null "$1" && return 0; sleep 0.05; done; echo "no answer from $1" >&2; exit 1; }

mkdir -p "$work/tig" "$work/www" "$work/nginx"
chmod 755 "$work" "$work/www"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=127.0.0.1 -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
head -c 1024 /dev/urandom >"$work/www/1k"
chmod 644 "$work/www/1k" "$work/key.pem"

if [ "$PLAIN" = 1 ]; then
    scheme=http tls_args=() ssl=""
else
    scheme=https tls_args=(--tls-cert "$work/cert.pem" --tls-key "$work/key.pem") ssl=" ssl"
fi
tig_port=$(free_port)
TIG_LOG=info,tig::access=off "$bin" serve --listen "127.0.0.1:$tig_port" --root "$work/tig" \
    --retention 0 ${tls_args[@]+"${tls_args[@]}"} >"$work/tig.log" 2>&1 &
tig_pid=$!
pids+=("$tig_pid")
ng_port=$(free_port)
cat >"$work/nginx/nginx.conf" <<EOF
worker_processes auto;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
daemon off;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $work/nginx/body;
    proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fastcgi;
    uwsgi_temp_path $work/nginx/uwsgi;
    scgi_temp_path $work/nginx/scgi;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$ng_port$ssl;
        ssl_certificate $work/cert.pem;
        ssl_certificate_key $work/key.pem;
        root $work/www;
    }
}
EOF
nginx -c "$work/nginx/nginx.conf" &
ng_pid=$!
pids+=("$ng_pid")
tig="$scheme://127.0.0.1:$tig_port"
wait_url "$tig/"
ng_url="$scheme://127.0.0.1:$ng_port/1k"
wait_url "$ng_url"
tig_url="$tig$(curl -sk --data-binary @"$work/www/1k" "$tig/")"
wait_url "$tig_url"

# Sets the EEVDF slice (sched_attr.sched_runtime of SCHED_OTHER) of threads: the
# syscall number is x86_64's, and the kernel must be 6.12 or newer to honour it.
set_slice() { # ns tid...
    python3 - "$@" <<'EOF'
import ctypes, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
ns = int(sys.argv[1])
for tid in map(int, sys.argv[2:]):
    attr = ctypes.create_string_buffer(struct.pack("IIQiIQQQII", 56, 0, 0, 0, 0, ns, 0, 0, 0, 0), 56)
    if libc.syscall(314, tid, attr, 0) != 0:  # sched_setattr on x86_64
        sys.exit(f"sched_setattr({tid}) failed: errno {ctypes.get_errno()}")
EOF
}
# Reads every thread of the given pids twice, 2 s apart, each time in one pass of one
# process with a clock reading beside it, and prints the measured interval and, per
# thread that used more than 20 ms of CPU in it: name, CPU ms, ms runnable but waiting
# for a core, voluntary switches (sleeps) and involuntary ones (preemptions).
sample() { # pid...
    python3 - "$@" <<'EOF'
import os, sys, time
def snap(pids):
    t0 = time.monotonic_ns()
    out = {}
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            d = f"/proc/{pid}/task/{tid}"
            try:
                cpu, wait = map(int, open(f"{d}/schedstat").read().split()[:2])
                name = open(f"{d}/comm").read().strip().replace(" ", "_")
                st = dict(l.split(":", 1) for l in open(f"{d}/status").read().splitlines() if ":" in l)
            except OSError:
                continue  # the thread ended while being read
            out[tid] = (name, cpu, wait, int(st["voluntary_ctxt_switches"]), int(st["nonvoluntary_ctxt_switches"]))
    return (t0 + time.monotonic_ns()) / 2, out
t0, a = snap(sys.argv[1:])
time.sleep(2)
t1, b = snap(sys.argv[1:])
print(f"  measured over {(t1 - t0) / 1e9:.3f} s")
for tid in sorted(b, key=int):
    if tid not in a:
        continue
    name, cpu, wait, vol, inv = b[tid]
    _, cpu0, wait0, vol0, inv0 = a[tid]
    if cpu - cpu0 > 20e6:
        print(f"  {name:<16} {(cpu - cpu0) / 1e6:7.0f} {(wait - wait0) / 1e6:7.0f} {vol - vol0:7d} {inv - inv0:7d}")
EOF
}
round() { # label url server-pids...
    local label=$1 url=$2 wrk_pid table
    shift 2
    wrk -t2 -c"$CONNS" -d4s --latency "$url" >"$work/wrk.out" &
    wrk_pid=$!
    sleep 1
    # shellcheck disable=SC2046 # one argument per thread id
    [ -n "$WRK_SLICE_NS" ] && set_slice "$WRK_SLICE_NS" $(ls /proc/$wrk_pid/task)
    table=$(sample "$wrk_pid" "$@")
    wait "$wrk_pid"
    echo "$label: $(awk '/Requests\/sec/ {printf "%.0f req/s", $2}' "$work/wrk.out")," \
        "p99 $(awk '$1=="99%" {print $2}' "$work/wrk.out")"
    echo "$table"
}

if [ -n "$WRK_SLICE_NS" ] && [ "$(uname -m)" != x86_64 ]; then
    echo "WRK_SLICE_NS needs x86_64 (the sched_setattr syscall number is x86_64's)" >&2
    exit 1
fi
echo "$(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), $(uname -r);" \
    "wrk -t2 -c$CONNS, $([ "$PLAIN" = 1 ] && echo plain || echo TLS) keep-alive GET 1 KiB${WRK_SLICE_NS:+, wrk slice $WRK_SLICE_NS ns}"
echo "per thread over ~2 s (threads under 20 ms of CPU left out): name, CPU ms, waiting-for-a-core ms, sleeps, preemptions"
for _ in $(seq 1 "$ROUNDS"); do
    round tig "$tig_url" "$tig_pid"
    # shellcheck disable=SC2046 # one argument per worker pid
    round nginx "$ng_url" $(pgrep -P "$ng_pid")
done
