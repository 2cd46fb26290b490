#!/usr/bin/env bash
# Feeds I benchmark: append / verify / log rates of `tig feed` against the SSB-over-git
# seed's shell workflow (one `git commit-tree --gpg-sign` + `git update-ref` per message
# with a gpg ed25519 key). Prints one line per measurement; record them in BENCHMARKS.md.
#
# usage: bench/feed-bench.sh            (builds tig in release mode first)
#   TIG=/path/to/tig  use that binary instead
#   N=10000           messages for the batch append
#   SINGLE=500        single-message `tig feed append` processes
#   SEED_N=200        messages through the seed's workflow (it runs ~30 msg/s)
#   BIG=100000        messages in the feed that verify and log read
set -euo pipefail
N=${N:-10000}
SINGLE=${SINGLE:-500}
SEED_N=${SEED_N:-200}
BIG=${BIG:-100000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${TIG:-}" ]; then
    cargo build --release -q -p tig --manifest-path "$ROOT/Cargo.toml"
    TIG=${CARGO_TARGET_DIR:-$ROOT/target}/release/tig
fi
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
export HOME=$W GNUPGHOME=$W/gnupg TIG_LOG=warn GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
mkdir -m 700 "$GNUPGHOME"

now() { date +%s.%N; }
# CPU seconds (user + sys) of finished children so far: on a shared, loaded machine the
# CPU rate (messages per CPU-second) is the number that does not depend on the load.
snap() { times > "$W/times"; CPU=$(awk 'NR == 2 { split($1, u, /[ms]/); split($2, s, /[ms]/); print u[1] * 60 + u[2] + s[1] * 60 + s[2] }' "$W/times"); }
rate() { awk -v n="$1" -v a="$2" -v b="$3" -v what="$4" -v c0="${5:-0}" -v c1="${6:-0}" \
    'BEGIN { t = b - a; c = c1 - c0; printf "%-52s %7d msgs %7.2f s %8.0f msg/s", what, n, t, n / t;
             if (c > 0) printf "   cpu %6.2f s %8.0f msg/cpu-s", c, n / c; printf "\n" }'; }

echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(uname -srm), $(nproc) cores, $(git --version), gpg $(gpg --version | head -1 | awk '{print $3}')"

KEY=$W/id
"$TIG" id new --out "$KEY" >/dev/null

# 1. tig batch append: N messages, one ref update
"$TIG" feed init "$W/batch" >/dev/null
seq -f 'message %g' "$N" > "$W/msgs"
snap; c0=$CPU; a=$(now); "$TIG" feed -C "$W/batch" append --key "$KEY" --batch "$W/msgs" >/dev/null; b=$(now); snap; c1=$CPU
rate "$N" "$a" "$b" "tig feed append --batch (one process)" "$c0" "$c1"

# 2. tig single appends: one process per message
"$TIG" feed init "$W/single" >/dev/null
snap; c0=$CPU; a=$(now)
for i in $(seq "$SINGLE"); do "$TIG" feed -C "$W/single" append --key "$KEY" "message $i" >/dev/null; done
b=$(now); snap; c1=$CPU
rate "$SINGLE" "$a" "$b" "tig feed append (one process per message)" "$c0" "$c1"
awk -v a="$a" -v b="$b" -v n="$SINGLE" 'BEGIN { printf "%-58s %8.2f ms per append process\n", "", (b - a) * 1000 / n }'

# 3. the seed's workflow with a gpg ed25519 key
gpg --batch --quiet --passphrase '' --pinentry-mode loopback \
    --quick-gen-key 'Bench <bench@example.invalid>' ed25519 sign never 2>/dev/null
BOB=$(gpg --batch --with-colons --list-keys bench@example.invalid | awk -F: '/^fpr:/ {print $10; exit}')
mkdir "$W/seed" && git -C "$W/seed" init -q . && git -C "$W/seed" write-tree >/dev/null
snap; c0=$CPU; a=$(now)
(
    cd "$W/seed"
    export GIT_COMMITTER_NAME=$BOB GIT_AUTHOR_NAME=$BOB GIT_AUTHOR_EMAIL= GIT_COMMITTER_EMAIL=
    C=$(echo 'message 1' | git commit-tree 4b825dc --gpg-sign="$BOB")
    git update-ref "refs/heads/$BOB" "$C"
    for i in $(seq 2 "$SEED_N"); do
        C=$(echo "message $i" | git commit-tree --gpg-sign="$BOB" -p "refs/heads/$BOB" 4b825dc)
        git update-ref "refs/heads/$BOB" "$C"
    done
)
b=$(now); snap; c1=$CPU
rate "$SEED_N" "$a" "$b" "seed workflow (git commit-tree --gpg-sign + update-ref)" "$c0" "$c1"
snap; c0=$CPU; a=$(now); head -n "$SEED_N" "$W/msgs" | "$TIG" feed -C "$W/seed" append --gpg "$BOB" --batch - >/dev/null; b=$(now); snap; c1=$CPU
rate "$SEED_N" "$a" "$b" "tig feed append --gpg --batch (gpg per message)" "$c0" "$c1"
snap; c0=$CPU; a=$(now); "$TIG" feed -C "$W/seed" verify >/dev/null; b=$(now); snap; c1=$CPU
rate "$((SEED_N * 2))" "$a" "$b" "tig feed verify, GPG feed (gpg per message)" "$c0" "$c1"

# 4. verify and log a BIG-message feed
"$TIG" feed init "$W/big" >/dev/null
seq -f 'message %g with a little more text in it, as a post would have' "$BIG" > "$W/big-msgs"
snap; c0=$CPU; a=$(now); "$TIG" feed -C "$W/big" append --key "$KEY" --batch "$W/big-msgs" >/dev/null; b=$(now); snap; c1=$CPU
rate "$BIG" "$a" "$b" "tig feed append --batch (big feed)" "$c0" "$c1"
ID=$("$TIG" id show --key "$KEY")
snap; c0=$CPU; a=$(now); "$TIG" feed -C "$W/big" verify >/dev/null; b=$(now); snap; c1=$CPU
rate "$BIG" "$a" "$b" "tig feed verify" "$c0" "$c1"
snap; c0=$CPU; a=$(now); "$TIG" feed -C "$W/big" log "$ID" >/dev/null; b=$(now); snap; c1=$CPU
rate "$BIG" "$a" "$b" "tig feed log" "$c0" "$c1"
snap; c0=$CPU; a=$(now); "$TIG" feed -C "$W/big" log "$ID" --json >/dev/null; b=$(now); snap; c1=$CPU
rate "$BIG" "$a" "$b" "tig feed log --json (checks every signature)" "$c0" "$c1"
snap; c0=$CPU; a=$(now); git -C "$W/big" log --format=%s "refs/heads/$ID" >/dev/null; b=$(now); snap; c1=$CPU
rate "$BIG" "$a" "$b" "(reference) git log --format=%s" "$c0" "$c1"
