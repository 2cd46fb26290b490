#!/usr/bin/env bash
# tig serve vs nginx, side by side, in one run on one machine (issue 15).
#
#   bench/compare.sh                      # 3 rounds of every scenario, medians
#   RUNS=1 DUR=2 bench/compare.sh         # a quick look
#   TIG_BIN=target/release/tig bench/compare.sh   # skip the release build
#   OUT=BENCHMARKS.md bench/compare.sh    # also append the table there
#   ACCESS_LOG=1 bench/compare.sh         # both servers write an access log line per request
#   SPLIT=1 bench/compare.sh              # servers on one CPU, load generator on the others
#
# Both servers keep their data on the same tmpfs (a fresh mount when run as root,
# else /dev/shm), wrk and curl drive them over 127.0.0.1, and the hashing limit is
# `openssl dgst -sha256` of the big file measured in the same run. Like for like, both
# run without an access log by default (nginx `access_log off`, tig
# `TIG_LOG=info,tig::access=off`); with ACCESS_LOG=1 both write one line per request
# to a file in the work directory (nginx's default buffering, tig's log on stderr).
# By default every process shares every core, as the issue measured. With SPLIT=1
# (needs 2+ CPUs) both servers run on the first CPU the script may use, one event
# loop each (tig `--workers 1`, nginx `worker_processes 1`), as do `openssl dgst`
# and `dd`, the limits of the server's side; wrk and curl run on the other CPUs, so
# neither server competes with its load generator for a core.
# Scenarios:
#   - 1 KiB GET and 1 KiB unique PUT (nginx: WebDAV PUT) at 1/16/64/256 connections,
#     plain and over TLS (a self-signed P-256 certificate made here): req/s, p50, p99;
#     and the GET again at one request per ms per connection (the same offered load
#     for both: p99 without the load generator's own queueing);
#   - 256 MiB PUT (a fresh server, and again right after the small-request load) and
#     GET, against `openssl dgst -sha256` of the file, `dd` of it into the same tmpfs
#     (medians of RUNS) and nginx's GET of the same file;
#   - a burst of 1,000 × 64 KiB members vs nginx serving the same bytes as one file
#     (the first read on its own row too);
#   - the seed's loop (random body PUT, then GET, 200 times): ms per iteration;
#   - idle RSS, peak RSS, and peak RSS during 64 concurrent 64 MiB uploads.
# Installs nginx-light and wrk with apt-get when missing (as root). Everything is
# stopped and removed at exit.
set -euo pipefail

RUNS=${RUNS:-3}
DUR=${DUR:-4}
BIG_MIB=${BIG_MIB:-256}
OUT=${OUT:-}
ACCESS_LOG=${ACCESS_LOG:-0}
SPLIT=${SPLIT:-0}
# The CPUs this script may use (they need not start at 0, e.g. in a cpuset).
read -r -a cpus < <(python3 -c 'import os; print(*sorted(os.sched_getaffinity(0)))')
cores=${#cpus[@]}
# Both arrays stay empty unless SPLIT=1; `${a[@]+"${a[@]}"}` expands an empty one
# to nothing, also under `set -u` in bash before 4.4.
srv=() tig_workers=() ng_workers=auto wrk_threads=2
if [ "$SPLIT" = 1 ]; then
    if [ "$cores" -lt 2 ]; then
        echo "SPLIT=1 needs at least 2 CPUs (this script may use $cores)" >&2
        exit 1
    fi
    # The servers on the first CPU; this shell and all it starts (wrk, curl) on the
    # others, once the build below is done.
    server_cpu=${cpus[0]}
    clients=$(IFS=,; echo "${cpus[*]:1}")
    srv=(taskset -c "$server_cpu")
    tig_workers=(--workers 1) ng_workers=1
    wrk_threads=$((cores - 1 < 2 ? cores - 1 : 2))
fi
if [ "$ACCESS_LOG" = 1 ]; then
    tig_log=info
else
    tig_log=info,tig::access=off
fi
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/tig-compare.XXXXXX)
pids=()
mounted=""

cleanup() {
    for p in ${pids[@]+"${pids[@]}"}; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ -n "$mounted" ] && umount "$mounted" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
export NO_PROXY='*' no_proxy='*'

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx-light)
command -v openssl >/dev/null || need+=(openssl)
if ((${#need[@]})); then
    echo "installing ${need[*]}" >&2
    apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ -n "${TIG_BIN:-}" ]; then
    bin=$TIG_BIN
else
    echo "building tig (release)..." >&2
    (cd "$here" && cargo build --release -p tig --quiet)
    bin="${CARGO_TARGET_DIR:-$here/target}/release/tig"
fi
if [ "$SPLIT" = 1 ]; then
    taskset -cp "$clients" $$ >/dev/null
fi

# One tmpfs for both servers' data.
data="$work/data"
mkdir -p "$data"
if [ "$(id -u)" = 0 ] && mount -t tmpfs -o size=8g tmpfs "$data" 2>/dev/null; then
    mounted=$data
else
    data=$(mktemp -d /dev/shm/tig-compare.XXXXXX)
fi
mkdir -p "$data/tig" "$data/www/dav"
chmod 755 "$work" "$data" "$data/www"
chmod 777 "$data/www/dav"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_url() { for _ in $(seq 1 300); do curl -sk -o /dev/null "$1" && return 0; sleep 0.05; done; echo "no answer from $1" >&2; exit 1; }
rss_kib() { awk -v k="$2" '$1==k":" {print $2}' "/proc/$1/status"; }

# Certificate for both TLS servers.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=127.0.0.1 -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null

start_tig() { # port [extra args] → pid on stdout
    local port=$1
    shift
    TIG_LOG=$tig_log ${srv[@]+"${srv[@]}"} "$bin" serve ${tig_workers[@]+"${tig_workers[@]}"} --listen "127.0.0.1:$port" --root "$data/tig" --retention 0 \
        --max-size "$(((BIG_MIB > 64 ? BIG_MIB : 64) + 1))MiB" "$@" >"$work/tig-$port.out" 2>"$work/tig-$port.err" &
    echo $!
}
tig_port=$(free_port)
tig_pid=$(start_tig "$tig_port")
pids+=("$tig_pid")
tig="http://127.0.0.1:$tig_port"
wait_url "$tig/"
idle_rss=$(rss_kib "$tig_pid" VmRSS)

ng_port=$(free_port)
ngs_port=$(free_port)
mkdir -p "$work/nginx"
chmod 777 "$work/nginx"
cat >"$work/nginx/nginx.conf" <<EOF
worker_processes $ng_workers;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
daemon off;
events { worker_connections 4096; }
http {
    $([ "$ACCESS_LOG" = 1 ] && echo "access_log $work/nginx/access.log;" || echo "access_log off;")
    client_body_temp_path $data/www/dav/.tmp;
    proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fastcgi;
    uwsgi_temp_path $work/nginx/uwsgi;
    scgi_temp_path $work/nginx/scgi;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$ng_port;
        listen 127.0.0.1:$ngs_port ssl;
        ssl_certificate $work/cert.pem;
        ssl_certificate_key $work/key.pem;
        root $data/www;
        location /dav/ { dav_methods PUT; create_full_put_path on; client_max_body_size 2g; }
    }
}
EOF
${srv[@]+"${srv[@]}"} nginx -c "$work/nginx/nginx.conf" &
pids+=($!)
ng="http://127.0.0.1:$ng_port"
ngs="https://127.0.0.1:$ngs_port"

# The objects: 1 KiB for the small GETs, the big file for the large transfers.
head -c 1024 /dev/urandom >"$data/www/1k"
chmod 644 "$data/www/1k"
small=$(curl -s --data-binary @"$data/www/1k" "$tig/")
# The big files live on the tmpfs too: on a disk, writing them back would compete
# with the measurements for the first seconds.
src="$data/src"
mkdir -p "$src"
head -c "$((BIG_MIB << 20))" /dev/urandom >"$src/big"
head -c "$((BIG_MIB << 20))" /dev/urandom >"$src/big2"
cp "$src/big" "$data/www/big"
chmod 644 "$data/www/big"
big_h=$(sha256sum "$src/big" | head -c 64)
wait_url "$ng/1k"
wait_url "$ngs/1k"

tig_tls_port=$(free_port)
tls_pid=$(start_tig "$tig_tls_port" --tls-cert "$work/cert.pem" --tls-key "$work/key.pem")
pids+=("$tls_pid")
tigs="https://127.0.0.1:$tig_tls_port"
wait_url "$tigs/"

# wrk scripts: PUT of distinct 1 KiB bodies; for nginx to distinct paths.
cat >"$work/lua-head" <<'EOF'
-- Seeded from /dev/urandom: every wrk run (each cell, each round) sends bodies
-- no earlier run sent, so every PUT stores a new object on both servers.
local f = assert(io.open("/dev/urandom", "rb"))
local b = f:read(4)
f:close()
math.randomseed(((b:byte(1) * 256 + b:byte(2)) * 256 + b:byte(3)) * 128 + b:byte(4) % 128)
local pad = string.rep("x", 1024 - 16)
local n = 0
local id = 0
setup = function(thread) thread:set("tid", math.random(1, 1e9)) end
init = function() id = tid or math.random(1, 1e9) end
EOF
{ cat "$work/lua-head"; cat <<'EOF'
request = function()
    n = n + 1
    return wrk.format("PUT", nil, nil, string.format("%08x%08x", id, n) .. pad)
end
EOF
} >"$work/put.lua"
{ cat "$work/lua-head"; cat <<'EOF'
request = function()
    n = n + 1
    local name = string.format("%08x%08x", id, n)
    return wrk.format("PUT", "/dav/" .. name, nil, name .. pad)
end
EOF
} >"$work/dav.lua"
# The same offered load for both servers: each connection sends its next request
# 1 ms after the last reply (wrk calls `delay` before every request; the wait is
# not part of the latency it records).
cat >"$work/paced.lua" <<'EOF'
delay = function() return 1 end
EOF

median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) print "nan"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
ms() { # wrk latency ("1.23ms", "456.00us", "1.2s") → ms
    awk -v v="$1" 'BEGIN { if (v ~ /us$/) print v/1000; else if (v ~ /ms$/) print v+0; else if (v ~ /s$/) print v*1000; else print v }'
}
# One wrk run → "rps p50ms p99ms"
wrk_once() { # conns url [script]
    local c=$1 u=$2 s=${3:-} t out
    t=$([ "$c" = 1 ] && echo 1 || echo "$wrk_threads")
    if [ -n "$s" ]; then
        out=$(wrk -t"$t" -c"$c" -d"${DUR}s" --latency -s "$s" "$u") || return 1
    else
        out=$(wrk -t"$t" -c"$c" -d"${DUR}s" --latency "$u") || return 1
    fi
    echo "$out" >>"$work/wrk.log"
    if echo "$out" | grep -q 'Non-2xx'; then
        echo "  warning: non-2xx replies from $u (c=$c): $(echo "$out" | grep Non-2xx)" >&2
    fi
    local rps p50 p99
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    [ -n "$rps" ] || { echo "wrk gave no req/s for $u (c=$c)" >&2; return 1; }
    p50=$(ms "$(echo "$out" | awk '$1=="50%" {print $2}')")
    p99=$(ms "$(echo "$out" | awk '$1=="99%" {print $2}')")
    echo "$rps $p50 $p99"
}
# Unique PUTs store a new 1 KiB file per request (a 4 KiB tmpfs page each, hundreds
# of thousands per cell): both servers' are removed after every scripted run, so the
# tmpfs never fills (a full one turns the cells into 5xx counts). The 1 KiB object of
# the GET rows stays; nginx's temp directory too.
prune_puts() {
    find "$data/www/dav" -mindepth 1 -maxdepth 1 ! -name .tmp -exec rm -rf {} + 2>/dev/null || true
    find "$data/tig" -maxdepth 1 -name '*.tig' -size -2k ! -name "${small#/}" -delete 2>/dev/null || true
}
# "rps p50 p99" lines on stdin → the median of each column.
medians() {
    local x y z r=() a=() b=()
    while read -r x y z; do r+=("$x") a+=("$y") b+=("$z"); done
    echo "$(printf '%s\n' "${r[@]}" | median) $(printf '%s\n' "${a[@]}" | median) $(printf '%s\n' "${b[@]}" | median)"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

table="$work/table.md"
{
    echo "### bench/compare.sh — $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Machine: $cores cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), $(free -g | awk '/Mem:/ {print $2}') GiB;" \
        "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)."
    echo "tig: \`$("$bin" --version 2>/dev/null || echo tig)\` (fsync on, retention off, access log $([ "$ACCESS_LOG" = 1 ] && echo on || echo off) on both), $(nginx -v 2>&1 | sed 's/.*: //'), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2);"
    echo "both on one tmpfs, ${RUNS} rounds of ${DUR} s per cell (tig, then nginx, in each round), medians;" \
        "$([ "$SPLIT" = 1 ] && echo "SPLIT: servers on CPU $server_cpu (one event loop each), wrk (-t$wrk_threads) and curl on CPU $clients." || echo "servers and wrk share all cores.")"
    echo
    echo "| scenario | conns | tig req/s | tig p50 ms | tig p99 ms | nginx req/s | nginx p50 ms | nginx p99 ms | tig/nginx req/s |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
} >"$table"

# One row: RUNS rounds, each one wrk run against tig and then one against nginx, so
# a slow or noisy stretch of a shared machine falls on both servers alike; medians.
small_row() { # label conns tig_url ng_url [tig_script ng_script]
    local label=$1 c=$2 tu=$3 nu=$4 ts=${5:-} ns=${6:-} i r runs_t=() runs_n=()
    for i in $(seq 1 "$RUNS"); do
        # A failed wrk run stops the script: `runs+=("$(…)")` alone would hide it.
        r=$(wrk_once "$c" "$tu" "$ts") || exit 1
        runs_t+=("$r")
        [ -n "$ts" ] && prune_puts
        r=$(wrk_once "$c" "$nu" "$ns") || exit 1
        runs_n+=("$r")
        [ -n "$ns" ] && prune_puts
    done
    read -r tr tp50 tp99 < <(printf '%s\n' "${runs_t[@]}" | medians)
    read -r nr np50 np99 < <(printf '%s\n' "${runs_n[@]}" | medians)
    printf '| %s | %s | %.0f | %s | %s | %.0f | %s | %s | %s |\n' "$label" "$c" "$tr" "$tp50" "$tp99" \
        "$nr" "$np50" "$np99" "$(ratio "$tr" "$nr")" | tee -a "$table" >&2
}

# Large PUT on the fresh server first (the state of a server nobody has used yet).
sha_rate=$(openssl speed -bytes 16384 -seconds 1 sha256 2>/dev/null | awk '/^sha256/ {print $NF}' | tr -d k)
TIMEFORMAT=%R
mbs() { awk -v m="$BIG_MIB" -v s="$1" 'BEGIN { printf "%.0f\n", m * 1048576 / s / 1e6 }'; }
# The limits a PUT meets, medians of RUNS: hashing the file (`openssl dgst`) and
# writing it into the tmpfs (`dd`). Writing is not memcpy speed everywhere: a VM
# whose host takes freed memory back (virtio free page reporting) faults every
# page of a new file in again, so `dd` is measured twice: into pages just freed
# (a copy removed after each round) and with every copy kept to the end, so
# each round needs pages nobody freed a moment ago (on such a VM, mostly ones
# the host took back; the kernel decides, so the two rows can also agree).
dgst_mbs=$(for i in $(seq 1 "$RUNS"); do
    mbs "$( { time ${srv[@]+"${srv[@]}"} openssl dgst -sha256 "$src/big" >/dev/null; } 2>&1 | tail -1)"
done | median)
kept_write_mbs=$(for i in $(seq 1 "$RUNS"); do
    mbs "$( { time ${srv[@]+"${srv[@]}"} dd if="$src/big" of="$data/kept-copy-$i" bs=1M 2>/dev/null; } 2>&1 | tail -1)"
done | median)
write_mbs=$(for i in $(seq 1 "$RUNS"); do
    mbs "$( { time ${srv[@]+"${srv[@]}"} dd if="$src/big" of="$data/copy" bs=1M 2>/dev/null; } 2>&1 | tail -1)"
    rm -f "$data/copy"
done | median)
put_mbs() { # url file → MB/s
    curl -s -o /dev/null -T "$2" -w '%{speed_upload}' "$1/" | awk '{printf "%.0f", $1 / 1e6}'
}
fresh_put=$(put_mbs "$tig" "$src/big")
fresh_rss=$(rss_kib "$tig_pid" VmHWM)

for c in 1 16 64 256; do small_row "GET 1 KiB" "$c" "$tig$small" "$ng/1k"; done
for c in 1 16 64 256; do small_row "PUT 1 KiB, unique" "$c" "$tig/" "$ng/" "$work/put.lua" "$work/dav.lua"; done
for c in 1 16 64 256; do small_row "GET 1 KiB, TLS" "$c" "$tigs$small" "$ngs/1k"; done
# Above, every connection sends as fast as replies come: whichever side needs more
# CPU than it gets queues the requests, and with wrk on the servers' cores (unless
# SPLIT=1) a faster server leaves the queue in wrk (runnable, waiting for a core, for a
# scheduler slice at a time). Paced, both servers get the same requests per second,
# below what either can do, and the p99s compare the servers.
for c in 64 128; do
    small_row "GET 1 KiB, paced 1/ms per connection" "$c" "$tig$small" "$ng/1k" "$work/paced.lua" "$work/paced.lua"
done
small_row "GET 1 KiB, TLS, paced 1/ms per connection" 64 "$tigs$small" "$ngs/1k" "$work/paced.lua" "$work/paced.lua"

# The same large PUT right after all that small-request load, same process.
busy_put=$(put_mbs "$tig" "$src/big2")
get_mbs() { curl -sk -o /dev/null -w '%{speed_download}' "$1" | awk '{printf "%.0f\n", $1 / 1e6}'; }
tig_get=$(for i in $(seq 1 "$RUNS"); do get_mbs "$tig/$big_h.tig"; done | median)
ng_get=$(for i in $(seq 1 "$RUNS"); do get_mbs "$ng/big"; done | median)

# A burst of 1,000 × 64 KiB members vs the same bytes as one file from nginx.
mkdir -p "$work/members"
: >"$work/list"
: >"$data/www/burst"
for i in $(seq 1 1000); do
    head -c 65536 /dev/urandom >"$work/members/m"
    curl -s --data-binary @"$work/members/m" "$tig/" >>"$work/list"
    echo >>"$work/list"
    cat "$work/members/m" >>"$data/www/burst"
done
chmod 644 "$data/www/burst"
list=$(curl -s --data-binary @"$work/list" "$tig/")
# The first read of the members is a row of its own: it is the one a client
# fetching fresh objects meets, and a cache would make the later ones differ.
tig_bursts=$(for i in $(seq 1 "$RUNS"); do get_mbs "$tig$list?burst=1"; done)
ng_bursts=$(for i in $(seq 1 "$RUNS"); do get_mbs "$ng/burst"; done)
tig_burst_first=$(head -1 <<<"$tig_bursts")
ng_burst_first=$(head -1 <<<"$ng_bursts")
tig_burst=$(median <<<"$tig_bursts")
ng_burst=$(median <<<"$ng_bursts")

# The seed's own loop: PUT a random body, GET it back; 200 times.
seed_loop() { # tig|nginx → ms per iteration
    local t0 t1 p i
    t0=$(date +%s%N)
    for i in $(seq 1 200); do
        if [ "$1" = tig ]; then
            p=$(head -c 16 /dev/urandom | od -An -tx1 | curl -s -X PUT --data-binary @- "$tig/")
            curl -s -o /dev/null "$tig$p"
        else
            head -c 16 /dev/urandom | od -An -tx1 | curl -s -X PUT --data-binary @- -o /dev/null "$ng/dav/seed$i"
            curl -s -o /dev/null "$ng/dav/seed$i"
        fi
    done
    t1=$(date +%s%N)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", (b - a) / 1e6 / 200 }'
}
tig_loop=$(seed_loop tig)
ng_loop=$(seed_loop nginx)
peak_rss=$(rss_kib "$tig_pid" VmHWM)

# 64 concurrent 64 MiB uploads (the same bytes: stored once, received 64 times).
head -c $((64 << 20)) /dev/urandom >"$work/m64"
base_hwm=$(rss_kib "$tig_pid" VmHWM)
uploads=()
for i in $(seq 1 64); do
    curl -s -o /dev/null -w '%{http_code}\n' -T "$work/m64" "$tig/" >>"$work/upload-codes" &
    uploads+=($!)
done
for j in "${uploads[@]}"; do wait "$j" || true; done
upload_hwm=$(rss_kib "$tig_pid" VmHWM)
uploads_ok=$(grep -c '^200$' "$work/upload-codes" || true)

row() { # label tig peer-name peer → one row of the large-transfer table
    echo "| $1 | $2 | $3: $4 | $(ratio "$2" "$4") |"
}
put_rows() { # peer-name peer → the fresh and the busy PUT against it
    row "${BIG_MIB} MiB PUT, fresh server (MB/s)" "$fresh_put" "$1" "$2"
    row "${BIG_MIB} MiB PUT after the small-request load (MB/s)" "$busy_put" "$1" "$2"
}
{
    echo
    echo "| large transfers | tig | peer | tig/peer |"
    echo "|---|---:|---:|---:|"
    put_rows "openssl dgst -sha256" "$dgst_mbs"
    put_rows "dd into the tmpfs" "$write_mbs"
    put_rows "dd into the tmpfs, copies kept" "$kept_write_mbs"
    row "${BIG_MIB} MiB GET (MB/s)" "$tig_get" nginx "$ng_get"
    row "burst of 1,000 × 64 KiB vs one 64 MB file (MB/s)" "$tig_burst" nginx "$ng_burst"
    row "the same burst, first read (MB/s, one sample)" "$tig_burst_first" nginx "$ng_burst_first"
    row "seed loop, PUT + GET (ms per iteration, lower is better)" "$tig_loop" nginx "$ng_loop"
    echo
    echo "tig RSS: idle ${idle_rss} KiB; peak after the fresh ${BIG_MIB} MiB PUT ${fresh_rss} KiB; peak after" \
        "everything above ${peak_rss} KiB; peak during 64 concurrent 64 MiB uploads ${upload_hwm} KiB (${uploads_ok} of 64 answered 200)" \
        "(${base_hwm} KiB before them). openssl speed sha256 (16 KiB blocks): ${sha_rate} kB/s."
} | tee -a "$table" >&2

if [ -n "$OUT" ]; then
    { echo; cat "$table"; } >>"$OUT"
    echo "appended to $OUT" >&2
else
    cat "$table"
fi
