#!/usr/bin/env bash
# Client benchmark (BENCHMARKS.md, "Client: put/get, snapshots"):
#  1. snapshot of this repository's checkout (git archive HEAD: no target/) plus a
#     large generated file; bytes uploaded by the first snapshot and by a second one
#     after a small edit (one line of README.md, one byte of the large file);
#  2. put and get of a 1 GiB file, in MB/s, next to `sha256sum` of the same file.
# Usage: [TIG=path/to/tig] bench/client-bench.sh [BIG_MIB=256] [PUTGET_MIB=1024]
set -euo pipefail
cd "$(dirname "$0")/.."
BIG_MIB=${1:-256}
PUTGET_MIB=${2:-1024}
if [ -z "${TIG:-}" ]; then   # TIG=/path/to/tig skips the build
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
  cargo build --release -q -p tig
  TIG=$CARGO_TARGET_DIR/release/tig
fi

work=$(mktemp -d /tmp/tig-client-bench.XXXXXX)
server_pid=
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

mkdir -p "$work/root" "$work/src"
"$TIG" serve --listen 127.0.0.1:0 --root "$work/root" --retention 0 >"$work/serve.out" 2>"$work/serve.err" &
server_pid=$!
for _ in $(seq 100); do grep -q 'listening on' "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
url=$(sed -n 's/^tig: listening on //p' "$work/serve.out")
[ -n "$url" ] || { cat "$work/serve.err"; exit 1; }
export TIG_SERVER=$url

now() { date +%s.%N; }
mbps() { awk -v b="$1" -v t="$2" 'BEGIN { printf "%.0f", b / 1e6 / t }'; }
field() { sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p"; }

git archive HEAD | tar -x -C "$work/src"
head -c $((BIG_MIB << 20)) /dev/urandom >"$work/src/large.bin"
files=$(find "$work/src" -type f | wc -l)
total=$(du -sb "$work/src" | cut -f1)

t0=$(now); s1=$("$TIG" snapshot "$work/src" --json 2>/dev/null); t1=$(now)
echo "// bench edit" >>"$work/src/README.md"
printf 'X' | dd of="$work/src/large.bin" bs=1 seek=$((BIG_MIB << 19)) conv=notrunc status=none
t2=$(now); s2=$("$TIG" snapshot "$work/src" --json 2>/dev/null); t3=$(now)
up1=$(echo "$s1" | field uploaded_bytes); n1=$(echo "$s1" | field uploaded)
up2=$(echo "$s2" | field uploaded_bytes); n2=$(echo "$s2" | field uploaded)

head -c $((PUTGET_MIB << 20)) /dev/urandom >"$work/big"
bytes=$((PUTGET_MIB << 20))
sync
t4=$(now); sha256sum "$work/big" >/dev/null; t5=$(now)
t6=$(now); name=$("$TIG" put "$work/big" 2>/dev/null); t7=$(now)
t8=$(now); "$TIG" get "$name" -o "$work/big.out" 2>/dev/null; t9=$(now)
cmp -s "$work/big" "$work/big.out" || { echo "get returned different bytes" >&2; exit 1; }

ts() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
cat <<EOT
date: $(date -u +%Y-%m-%d), $(nproc) cores, release build, server on loopback, data on $(df -T "$work" | awk 'NR==2 {print $2}')

snapshot of this checkout (git archive HEAD) + ${BIG_MIB} MiB generated file: $files files, $total bytes
| run | objects uploaded | bytes uploaded | time (s) |
|---|---|---|---|
| first snapshot | $n1 | $up1 | $(ts "$t0" "$t1") |
| after editing README.md + 1 byte of large.bin | $n2 | $up2 | $(ts "$t2" "$t3") |

${PUTGET_MIB} MiB file
| operation | time (s) | MB/s |
|---|---|---|
| sha256sum | $(ts "$t4" "$t5") | $(mbps "$bytes" "$(ts "$t4" "$t5")") |
| tig put (chunked, HEAD + PUT per chunk) | $(ts "$t6" "$t7") | $(mbps "$bytes" "$(ts "$t6" "$t7")") |
| tig get -o (every chunk verified) | $(ts "$t8" "$t9") | $(mbps "$bytes" "$(ts "$t8" "$t9")") |
EOT
