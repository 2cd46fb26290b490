#!/usr/bin/env bash
# Load test of `tig serve` on loopback, with nginx on the same machine for scale.
#
#   bench/serve-load.sh            # 10 s per wrk run
#   DUR=5 bench/serve-load.sh      # shorter runs
#   NGINX=0 bench/serve-load.sh    # skip the nginx comparison
#   TIG_BIN=path/to/release/tig bench/serve-load.sh   # skip the build
#
# Needs: cargo, curl, wrk (`apt-get install -y wrk`); nginx is optional
# (`apt-get install -y nginx-light`). Builds `tig` in release, starts it with a
# temp root, measures 1 KiB GET req/s at concurrency 1/16/64, 1 KiB PUT req/s
# (every body distinct), large streamed PUT MB/s, latency percentiles and the
# server's peak RSS (VmHWM). Everything runs on 127.0.0.1 and is cleaned up.
set -euo pipefail

DUR=${DUR:-10}
LARGE_MIB=${LARGE_MIB:-1024}
NGINX=${NGINX:-1}
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/tig-bench.XXXXXX)
tig_pid=""
nginx_pid=""

cleanup() {
    [ -n "$tig_pid" ] && kill "$tig_pid" 2>/dev/null || true
    [ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

command -v wrk >/dev/null || { echo "wrk missing: apt-get install -y wrk" >&2; exit 1; }

if [ -n "${TIG_BIN:-}" ]; then
    bin=$TIG_BIN # a release binary built already
else
    echo "building tig (release)..." >&2
    (cd "$here" && cargo build --release -p tig --quiet)
    bin="${CARGO_TARGET_DIR:-$here/target}/release/tig"
fi

mkdir -p "$work/root" "$work/www"
"$bin" serve --listen 127.0.0.1:0 --root "$work/root" --retention 0 \
    --max-size "$((LARGE_MIB + 1))MiB" >"$work/tig.out" 2>"$work/tig.err" &
tig_pid=$!
for _ in $(seq 1 300); do
    grep -q '^tig: listening on ' "$work/tig.out" 2>/dev/null && break
    sleep 0.1
done
url=$(sed -n 's/^tig: listening on //p' "$work/tig.out")
[ -n "$url" ] || { echo "tig did not start:" >&2; cat "$work/tig.err" >&2; exit 1; }
export NO_PROXY='*' no_proxy='*'

head -c 1024 /dev/urandom >"$work/www/1k"
path=$(curl -s --data-binary @"$work/www/1k" "$url/")

# wrk script: PUT of 1 KiB bodies, each distinct (a counter in the first bytes).
cat >"$work/put.lua" <<'EOF'
local pad = string.rep("x", 1024 - 16)
local n = 0
math.randomseed(os.time())
local id = math.random(1, 1e9)
request = function()
    n = n + 1
    return wrk.format("PUT", "/", nil, string.format("%08x%08x", id, n) .. pad)
end
EOF
# wrk script: PUT of the same 1 KiB body (idempotent re-upload) for nginx WebDAV.
cat >"$work/put-same.lua" <<EOF
wrk.method = "PUT"
wrk.body = string.rep("x", 1024)
EOF

# wrk output → "req/s p50 p90 p99"
run_wrk() { # threads conns url [script]
    local t=$1 c=$2 u=$3 s=${4:-}
    local out
    if [ -n "$s" ]; then
        out=$(wrk -t"$t" -c"$c" -d"${DUR}s" --latency -s "$s" "$u")
    else
        out=$(wrk -t"$t" -c"$c" -d"${DUR}s" --latency "$u")
    fi
    echo "$out" >>"$work/wrk.log"
    local errs
    errs=$(echo "$out" | awk '/Non-2xx|Socket errors/ {print}' | tr '\n' ' ')
    [ -n "$errs" ] && echo "  ($u c=$c: $errs)" >&2
    echo "$out" | awk '
        /Requests\/sec/ {rps=$2}
        $1=="50%" {p50=$2} $1=="90%" {p90=$2} $1=="99%" {p99=$2}
        END {printf "%s %s %s %s\n", rps, p50, p90, p99}'
}

row() { # label threads conns url [script]
    local label=$1
    shift
    read -r rps p50 p90 p99 < <(run_wrk "$@")
    printf '| %s | %s | %.0f | %s | %s | %s |\n' "$label" "$2" "$rps" "$p50" "$p90" "$p99"
}

echo "| server | workload | concurrency | req/s | p50 | p90 | p99 |"
echo "|---|---|---|---|---|---|---|"
for c in 1 16 64; do
    t=$([ "$c" = 1 ] && echo 1 || echo 2)
    row "tig | GET 1 KiB" "$t" "$c" "$url$path"
done
for c in 1 16 64; do
    t=$([ "$c" = 1 ] && echo 1 || echo 2)
    row "tig | PUT 1 KiB (distinct)" "$t" "$c" "$url/" "$work/put.lua"
done

if [ "$NGINX" = 1 ] && command -v nginx >/dev/null; then
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    mkdir -p "$work/nginx" "$work/www/dav"
    # nginx workers run unprivileged: let them read the files and write the DAV dir.
    chmod 755 "$work" "$work/www"
    chmod 644 "$work/www/1k"
    chmod 777 "$work/www/dav" "$work/nginx"
    cat >"$work/nginx/nginx.conf" <<EOF
worker_processes auto;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
daemon off;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $work/nginx/body;
    proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fastcgi;
    uwsgi_temp_path $work/nginx/uwsgi;
    scgi_temp_path $work/nginx/scgi;
    server {
        listen 127.0.0.1:$port;
        root $work/www;
        location /dav/ { dav_methods PUT; create_full_put_path on; client_max_body_size 2g; }
    }
}
EOF
    nginx -c "$work/nginx/nginx.conf" &
    nginx_pid=$!
    for _ in $(seq 1 100); do
        curl -s -o /dev/null "http://127.0.0.1:$port/1k" && break
        sleep 0.1
    done
    for c in 1 16 64; do
        t=$([ "$c" = 1 ] && echo 1 || echo 2)
        row "nginx | GET 1 KiB static" "$t" "$c" "http://127.0.0.1:$port/1k"
    done
    for c in 1 16 64; do
        t=$([ "$c" = 1 ] && echo 1 || echo 2)
        row "nginx | WebDAV PUT 1 KiB" "$t" "$c" "http://127.0.0.1:$port/dav/x" "$work/put-same.lua"
    done
fi

# Large streamed PUT (chunked, from a pipe: neither side knows the size).
large=$(head -c "$((LARGE_MIB * 1024 * 1024))" /dev/zero | tr '\0' 'z' |
    curl -s -T - -o /dev/null -w '%{speed_upload} %{time_total} %{http_code}' "$url/")
read -r speed secs code <<<"$large"
echo
printf 'tig large PUT: %d MiB streamed in %.2f s = %.0f MB/s (HTTP %s)\n' \
    "$LARGE_MIB" "$secs" "$(awk "BEGIN {print $speed / 1000000}")" "$code"
# Large GET of the same object.
h=$(head -c "$((LARGE_MIB * 1024 * 1024))" /dev/zero | tr '\0' 'z' | sha256sum | head -c 64)
get=$(curl -s -o /dev/null -w '%{speed_download} %{time_total} %{http_code}' "$url/$h.tig")
read -r speed secs code <<<"$get"
printf 'tig large GET: %d MiB in %.2f s = %.0f MB/s (HTTP %s)\n' \
    "$LARGE_MIB" "$secs" "$(awk "BEGIN {print $speed / 1000000}")" "$code"
printf 'tig peak RSS (VmHWM) after all runs: %s\n' "$(awk '/VmHWM/ {print $2, $3}' /proc/$tig_pid/status)"
printf 'objects stored: %s\n' "$(find "$work/root" -name '*.tig' | wc -l)"
