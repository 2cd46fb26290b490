#!/usr/bin/env bash
# Stripe benchmark (BENCHMARKS.md, "Client: stripes over servers"): `tig put --stripe`
# and `tig get` of the printed list, with one server vs two local servers (each its
# own process and data directory on 127.0.0.1), plus a plain `tig put`/`get` to one
# server as the peer. Every run starts from empty servers (fresh directories).
# Usage: [TIG=path/to/tig] bench/stripe.sh [MIB=256] [RUNS=2]
set -euo pipefail
cd "$(dirname "$0")/.."
MIB=${1:-256}
RUNS=${2:-2}
if [ -z "${TIG:-}" ]; then   # TIG=/path/to/tig skips the build
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
  cargo build --release -q -p tig
  TIG=$CARGO_TARGET_DIR/release/tig
fi
work=$(mktemp -d /tmp/tig-stripe-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
head -c $((MIB << 20)) /dev/urandom >"$work/file"
start() { # start NAME -> prints URL
  mkdir -p "$work/$1"
  "$TIG" serve --listen 127.0.0.1:0 --root "$work/$1" --retention 0 >"$work/$1.out" 2>/dev/null &
  pids+=($!)
  for _ in $(seq 100); do grep -q 'listening on' "$work/$1.out" 2>/dev/null && break; sleep 0.1; done
  sed -n 's/^tig: listening on //p' "$work/$1.out"
}
secs() { local t0 t1; t0=$(date +%s.%N); "$@" >"$work/last.out" 2>/dev/null; t1=$(date +%s.%N); echo "$t1 - $t0" | bc; }
echo "file: $MIB MiB random; tig: $TIG; $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg)"
for run in $(seq "$RUNS"); do
  for mode in plain one two; do
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; pids=()
    rm -rf "$work/a" "$work/b" "$work/a.out" "$work/b.out" "$work/out"
    a=$(start a); b=$(start b)
    case $mode in
      plain) put=$(secs "$TIG" put "$work/file" --server "$a") ;;
      one) put=$(secs "$TIG" put --stripe "$a" "$work/file") ;;
      two) put=$(secs "$TIG" put --stripe "$a,$b" "$work/file") ;;
    esac
    name=$(cat "$work/last.out")
    get=$(secs "$TIG" get "$name" --server "$a" -o "$work/out")
    cmp -s "$work/file" "$work/out" || { echo "mismatch in $mode"; exit 1; }
    printf 'run %s %-5s put %6.2f s (%4.0f MB/s)  get %6.2f s (%4.0f MB/s)\n' "$run" "$mode" \
      "$put" "$(echo "$MIB * 1.048576 / $put" | bc -l)" "$get" "$(echo "$MIB * 1.048576 / $get" | bc -l)"
  done
done
