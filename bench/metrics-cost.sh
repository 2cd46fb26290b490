#!/usr/bin/env bash
# What counting costs: 1 KiB GET at 64 connections against `tig serve` with
# metrics on (the default) and with --no-metrics, interleaved runs, medians.
# A third server has metrics on and the access log on (one stderr line per
# request, to /dev/null) to show what the log costs; the first two filter the
# access log out (TIG_LOG=warn) so only counting differs between them.
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
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
export NO_PROXY='*' no_proxy='*'

start() { # name log-filter extra-args...
    local name=$1 filter=$2; shift 2
    mkdir -p "$work/$name"
    TIG_LOG=$filter "$TIG_BIN" serve --listen 127.0.0.1:0 --root "$work/$name" --retention 0 "$@" \
        >"$work/$name.out" 2>/dev/null &
    pids+=($!)
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
rps() { wrk -t2 -c64 -d"${DUR}s" "$1$path" | awk '/Requests\/sec/ {print $2}'; }
declare -A all
for r in $(seq "$RUNS"); do
    for k in on off logged; do
        u=${!k}
        all[$k]+="$(rps "$u") "
    done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
m_on=$(echo "${all[on]}" | median)
m_off=$(echo "${all[off]}" | median)
m_log=$(echo "${all[logged]}" | median)
echo "| server | runs (req/s) | median req/s | vs --no-metrics |"
echo "|---|---|---|---|"
printf '| metrics on, access log off | %s | %s | %.3f |\n' "${all[on]% }" "$m_on" "$(echo "$m_on / $m_off" | bc -l)"
printf '| --no-metrics, access log off | %s | %s | 1.000 |\n' "${all[off]% }" "$m_off"
printf '| metrics on, access log on (stderr → /dev/null) | %s | %s | %.3f |\n' "${all[logged]% }" "$m_log" "$(echo "$m_log / $m_off" | bc -l)"
