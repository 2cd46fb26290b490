#!/usr/bin/env bash
# What counting costs: 1 KiB GET at 64 connections against `tig serve` with
# metrics on (the default) and with --no-metrics, interleaved runs, medians.
# A third server has metrics on and the access log on (one stderr line per
# request, to /dev/null) to show what the log costs; the first two filter the
# access log out (TIG_LOG=warn) so only counting differs between them.
# Besides req/s (which a shared machine makes noisy), each round records the
# server's CPU time per request (summed over its threads from
# /proc/PID/task/*/schedstat, divided by the requests wrk counted): other load on
# the machine slows a server down far more than it changes the CPU one request costs.
#
#   bench/metrics-cost.sh                         # 5 rounds of 3 s
#   RUNS=3 DUR=2 TIG_BIN=target/release/tig bench/metrics-cost.sh
set -euo pipefail
RUNS=${RUNS:-5}
DUR=${DUR:-3}
here=$(cd "$(dirname "$0")/.." && pwd)
TIG_BIN=${TIG_BIN:-$here/target/release/tig}
[ -x "$TIG_BIN" ] || (cd "$here" && cargo build --release --locked -p tig --bin tig)
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
work=$(mktemp -d /tmp/tig-metrics-cost.XXXXXX)
# The servers start inside $(…), so their pids come back through files.
cleanup() { for f in "$work"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
export NO_PROXY='*' no_proxy='*'

declare -A pid_of
start() { # name log-filter extra-args...
    local name=$1 filter=$2; shift 2
    mkdir -p "$work/$name"
    TIG_LOG=$filter "$TIG_BIN" serve --listen 127.0.0.1:0 --root "$work/$name" --retention 0 "$@" \
        >"$work/$name.out" 2>/dev/null &
    echo $! >"$work/$name.pid"
    for _ in $(seq 100); do grep -q 'listening on' "$work/$name.out" 2>/dev/null && break; sleep 0.05; done
    sed -n 's/^tig: listening on //p' "$work/$name.out"
}
on=$(start on warn)
off=$(start off warn --no-metrics)
logged=$(start logged info)
head -c 1024 /dev/urandom >"$work/body"
for u in "$on" "$off" "$logged"; do
    path=$(curl -fsS -T "$work/body" "$u/")
done
for k in on off logged; do pid_of[$k]=$(cat "$work/$k.pid"); done
cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{s+=$1} END {printf "%.0f", s}'; }  # %d saturates at 2^31 in mawk
declare -A all cpu
for r in $(seq "$RUNS"); do
    for k in on off logged; do
        u=${!k}
        before=$(cpu_ns "${pid_of[$k]}")
        out=$(wrk -t2 -c64 -d"${DUR}s" "$u$path")
        after=$(cpu_ns "${pid_of[$k]}")
        n=$(echo "$out" | awk '/requests in/ {print $1}')
        all[$k]+="$(echo "$out" | awk '/Requests\/sec/ {print $2}') "
        cpu[$k]+="$(echo "($after - $before) / 1000 / $n" | bc -l | xargs printf '%.2f') "
    done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
m_on=$(echo "${all[on]}" | median)
m_off=$(echo "${all[off]}" | median)
m_log=$(echo "${all[logged]}" | median)
c_on=$(echo "${cpu[on]}" | median)
c_off=$(echo "${cpu[off]}" | median)
c_log=$(echo "${cpu[logged]}" | median)
echo "| server | runs (req/s) | median req/s | vs --no-metrics | server CPU µs/request, runs | median | vs --no-metrics |"
echo "|---|---|---|---|---|---|---|"
row() { # label runs median ratio cpu-runs cpu-median cpu-ratio
    printf '| %s | %s | %s | %.3f | %s | %s | %.3f |\n' "$@"
}
row "metrics on, access log off" "${all[on]% }" "$m_on" "$(echo "$m_on / $m_off" | bc -l)" \
    "${cpu[on]% }" "$c_on" "$(echo "$c_on / $c_off" | bc -l)"
row "--no-metrics, access log off" "${all[off]% }" "$m_off" 1 "${cpu[off]% }" "$c_off" 1
row "metrics on, access log on (stderr → /dev/null)" "${all[logged]% }" "$m_log" \
    "$(echo "$m_log / $m_off" | bc -l)" "${cpu[logged]% }" "$c_log" "$(echo "$c_log / $c_off" | bc -l)"
