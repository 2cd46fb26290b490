#!/usr/bin/env bash
# tig snapshot/restore vs restic backup/restore, side by side in one run (issue 14).
#
#   bench/snapshot-vs-restic.sh                   # 3 rounds, medians, table into BENCHMARKS.md
#   RUNS=1 OUT= bench/snapshot-vs-restic.sh       # a quick look, table on stdout only
#   TIG_BIN=target/release/tig bench/snapshot-vs-restic.sh   # skip the release build
#   JOBS=8 bench/snapshot-vs-restic.sh            # tig's -j (default: tig's own default)
#
# Two trees, built once per run under one work directory on disk:
#   - small: this machine's cargo registry sources (~/.cargo/registry/src) when they
#     hold at least 12,000 files (copied), else 12,000 generated source-like files in
#     2,000 directories (1-24 KiB each);
#   - large: LARGE_FILES (4) files of LARGE_MIB (256) MiB of random bytes.
# For each tree and each round, with a fresh tig server (`--retention 0`, data on the
# same disk) and a fresh restic repository (local, RESTIC_PASSWORD set): first
# snapshot, one file changed (a line appended to one small file; 4 KiB overwritten in
# the middle of one large file), nothing changed, restore into an empty directory.
# tig's snapshot cache lives in a fresh XDG_CACHE_HOME per round. Times are wall
# clock (the medians of RUNS rounds); the ratio is tig / restic (< 1 is faster).
# Installs restic with apt-get when missing (as root). Everything it starts is
# stopped and everything it writes is removed at exit.
#
# Nothing with many files is deleted during the run: each round and tree has its own
# server data, repository and restore targets, and the small tree's are removed only
# at exit (about 1 GB per round). On ext4 without a journal (this machine's disk),
# creating inodes shortly after many were deleted scans past the recently deleted
# ones (the kernel's `recently_deleted`, up to 6 minutes): a restore right after an
# `rm -rf` of 30,000 files took 15-40 s instead of 5, for tig or restic, whichever
# came next. Deletions from before the run (another benchmark's clean-up, a build)
# do the same, so before each round `settle` syncs and waits (at most SETTLE_MAX
# seconds, 360) until creating a file costs less than SETTLE_US (300) microseconds,
# probed with 500 empty files; the last probe of each round is in the table's note.
set -euo pipefail

RUNS=${RUNS:-3}
LARGE_FILES=${LARGE_FILES:-4}
LARGE_MIB=${LARGE_MIB:-256}
OUT=${OUT-BENCHMARKS.md}
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/tig-vs-restic.XXXXXX)
server_pid=""

cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
export NO_PROXY='*' no_proxy='*'

if ! command -v restic >/dev/null; then
    echo "installing restic" >&2
    apt-get update -qq && apt-get install -y -qq restic >/dev/null
fi
if [ -n "${TIG_BIN:-}" ]; then
    bin=$TIG_BIN
else
    echo "building tig (release)..." >&2
    (cd "$here" && cargo build --release -p tig --quiet)
    bin="${CARGO_TARGET_DIR:-$here/target}/release/tig"
fi
jobs=()
[ -n "${JOBS:-}" ] && jobs=(-j "$JOBS")

# ---- the trees ----------------------------------------------------------------
small="$work/small"
registry="$HOME/.cargo/registry/src"
if [ -d "$registry" ] && [ "$(find "$registry" -type f | wc -l)" -ge 12000 ]; then
    cp -r "$registry" "$small"
    small_what="this machine's cargo registry sources"
else
    python3 - "$small" <<'EOF'
import os, random, sys
root = sys.argv[1]
rng = random.Random(14)
words = "fn let mut pub struct impl match self return use crate mod where for in if else loop".split()
for i in range(12000):
    d = os.path.join(root, f"d{i % 2000 // 40:02d}", f"m{i % 2000:04d}")
    os.makedirs(d, exist_ok=True)
    n = rng.randint(1024, 24 * 1024)
    text = []
    size = 0
    while size < n:
        line = " ".join(rng.choice(words) for _ in range(rng.randint(3, 12))) + f" {rng.random()}\n"
        text.append(line)
        size += len(line)
    with open(os.path.join(d, f"f{i}.rs"), "w") as f:
        f.write("".join(text))
EOF
    small_what="generated source-like files"
fi
large="$work/large"
mkdir -p "$large"
for i in $(seq 1 "$LARGE_FILES"); do
    head -c "$((LARGE_MIB << 20))" /dev/urandom >"$large/big$i.bin"
done
describe() { # dir → "N files, M dirs, X MiB"
    printf '%s files, %s dirs, %s MiB' \
        "$(find "$1" -type f | wc -l)" "$(find "$1" -mindepth 1 -type d | wc -l)" \
        "$(du -sm "$1" | cut -f1)"
}
small_desc="$(describe "$small") ($small_what)"
large_desc="$(describe "$large") (random bytes)"
# The file each "one file changed" step edits.
small_victim=$(find "$small" -type f -name '*.rs' | sort | sed -n '100p')
[ -n "$small_victim" ] || small_victim=$(find "$small" -type f | sort | sed -n '100p')
large_victim="$large/big1.bin"

change() { # tree round: one edit that differs per round and per call
    if [ "$1" = small ]; then
        echo "// edited $2 $RANDOM" >>"$small_victim"
    else
        head -c 4096 /dev/urandom |
            dd of="$large_victim" bs=4096 seek=$(((LARGE_MIB << 8) / 2)) conv=notrunc status=none
    fi
}

# Microseconds per file to create 500 empty files in a new directory (kept until exit:
# deleting them would be what `settle` waits out).
probe_create() {
    python3 - "$work/probe.$1" <<'EOF'
import os, sys, time
d = sys.argv[1]
os.makedirs(d)
t = time.perf_counter()
for i in range(500):
    os.close(os.open(os.path.join(d, str(i)), os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600))
print(int((time.perf_counter() - t) / 500 * 1e6))
EOF
}
probes=()
settle() {
    local waited=0 us n=0
    sync
    while :; do
        n=$((n + 1))
        us=$(probe_create "$round.$n")
        [ "$us" -lt "${SETTLE_US:-300}" ] && break
        [ "$waited" -ge "${SETTLE_MAX:-360}" ] && { echo "creating a file still costs ${us} µs" >&2; break; }
        echo "creating a file costs ${us} µs (recently deleted inodes?): waiting" >&2
        sleep 20
        waited=$((waited + 20))
        sync
    done
    probes+=("${us} µs after ${waited} s")
}

now() { date +%s.%N; }
timed() { # name cmd… → appends "name seconds" to $work/times
    local name=$1 t0 t1
    shift
    t0=$(now)
    "$@" >"$work/last.out" 2>"$work/last.err" || {
        echo "FAILED: $name: $*" >&2
        cat "$work/last.err" >&2
        exit 1
    }
    t1=$(now)
    echo "$name $(echo "$t1 - $t0" | bc)" >>"$work/times"
}

start_tig() { # data dir
    mkdir -p "$1"
    "$bin" serve --listen 127.0.0.1:0 --root "$1" --retention 0 \
        >"$work/serve.out" 2>"$work/serve.err" &
    server_pid=$!
    for _ in $(seq 300); do grep -q 'listening on' "$work/serve.out" 2>/dev/null && break; sleep 0.05; done
    url=$(sed -n 's/^tig: listening on //p' "$work/serve.out")
    [ -n "$url" ] || { cat "$work/serve.err" >&2; exit 1; }
}
stop_tig() { kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; server_pid=""; }

# Everything, as restic takes it: no ignore rules, .git included.
tig_snap() { "$bin" snapshot "$1" --no-ignore --include-git --server "$url" "${jobs[@]}"; }
export RESTIC_PASSWORD=bench
restic_q() { restic --repo "$repo" --quiet "$@"; }

: >"$work/times"
for round in $(seq 1 "$RUNS"); do
    settle
    for tree in small large; do
        dir=${!tree}
        run="$work/round$round-$tree"
        echo "round $round: $tree tree" >&2
        # tig
        start_tig "$run/tigdata"
        export XDG_CACHE_HOME="$work/cache"
        rm -rf "$XDG_CACHE_HOME"
        timed "tig $tree first" tig_snap "$dir"
        change "$tree" "$round-tig"
        timed "tig $tree one" tig_snap "$dir"
        timed "tig $tree none" tig_snap "$dir"
        root=$(cat "$work/last.out")
        timed "tig $tree restore" "$bin" restore "$root" "$run/out-tig" --server "$url" "${jobs[@]}"
        cmp -s "$run/out-tig/$(basename "${large_victim}")" "$large_victim" || [ "$tree" = small ] ||
            { echo "tig restore differs" >&2; exit 1; }
        stop_tig
        # restic
        repo="$run/repo"
        restic_q init >/dev/null
        timed "restic $tree first" restic_q backup "$dir"
        change "$tree" "$round-restic"
        timed "restic $tree one" restic_q backup "$dir"
        timed "restic $tree none" restic_q backup "$dir"
        timed "restic $tree restore" restic_q restore latest --target "$run/out-restic"
        # A few large files: removing them now costs nothing later.
        if [ "$tree" = large ]; then rm -rf "$run"; fi
    done
done

# ---- the table ------------------------------------------------------------------
# Every round's time, for a closer look (TIMES_TO=file).
[ -n "${TIMES_TO:-}" ] && cp "$work/times" "$TIMES_TO"
table=$(python3 - "$work/times" "$small_desc" "$large_desc" <<'EOF'
import statistics, sys
times = {}
for line in open(sys.argv[1]):
    name, secs = line.rsplit(" ", 1)
    times.setdefault(name, []).append(float(secs))
desc = {"small": sys.argv[2], "large": sys.argv[3]}
steps = [("first", "first snapshot"), ("one", "one file changed"),
         ("none", "nothing changed"), ("restore", "restore into an empty directory")]
print("| tree | step | restic | tig | tig / restic |")
print("|---|---|---:|---:|---:|")
for tree in ("small", "large"):
    for i, (key, label) in enumerate(steps):
        r = statistics.median(times[f"restic {tree} {key}"])
        t = statistics.median(times[f"tig {tree} {key}"])
        name = desc[tree] if i == 0 else "same"
        print(f"| {name} | {label} | {r:.2f} s | {t:.2f} s | {t / r:.2f}× |")
EOF
)
cpu=$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)
meta="$(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) × ${cpu:-unknown CPU}, $(free -g | awk '/^Mem:/ {print $2}') GiB RAM; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); $("$bin" --version 2>/dev/null || echo tig); $(restic version | cut -d' ' -f1-2); medians of $RUNS round(s); file creation probe before each round: $(IFS=';'; echo "${probes[*]}" | sed 's/;/, /g')"
echo "$meta"
echo "$table"
if [ -n "$OUT" ]; then
    {
        echo
        echo "## Snapshots: tig vs restic (bench/snapshot-vs-restic.sh)"
        echo
        echo "$meta. Command: \`bench/snapshot-vs-restic.sh\`${JOBS:+ with JOBS=$JOBS}. tig: a local"
        echo "\`tig serve --retention 0\` on loopback, a fresh snapshot cache; restic: a local"
        echo "repository. Same disk, same trees, same run."
        echo
        echo "$table"
    } >>"$here/$OUT"
    echo "appended to $OUT" >&2
fi
