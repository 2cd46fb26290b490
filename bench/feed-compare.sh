#!/usr/bin/env bash
# Feeds II, short and interleaved: two tig binaries (e.g. main's build before a change
# and after it) pull the same stores in the same session, so a loaded machine slows both
# alike. Prints wall and CPU (user + sys) seconds per step; record them in BENCHMARKS.md.
#
# usage: N=30000 bench/feed-compare.sh NEW_TIG OLD_TIG   (labels: feed = NEW, main = OLD)
set -euo pipefail
NEW=$1; OLD=$2; N=${N:-30000}
W=$(mktemp -d /tmp/feedbench.XXXXXX); trap 'rm -rf "$W"' EXIT
export HOME=$W TIG_LOG=warn GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
"$NEW" id new --out "$W/k" >/dev/null
"$NEW" feed init "$W/src" >/dev/null
seq -f 'message %g' "$N" > "$W/msgs"
"$NEW" feed -C "$W/src" append --key "$W/k" --batch "$W/msgs" >/dev/null
t() { local label=$1; shift; /usr/bin/time -f "%e %U %S" -o "$W/t" "$@" >/dev/null; read e u s < "$W/t"; printf "%-44s wall %6.2f s  cpu %6.2f s\n" "$label" "$e" "$(echo "$u + $s" | bc)"; }
for round in 1 2; do
  for who in main feed; do
    B=$NEW; [ $who = main ] && B=$OLD
    rm -rf "$W/d" "$W/e" "$W/b.bundle"
    "$B" feed init "$W/d" >/dev/null; "$B" feed init "$W/e" >/dev/null
    t "$who: pull $N msgs (path, empty store)" "$B" feed -C "$W/d" pull "$W/src"
    t "$who: bundle create ($N msgs)" "$B" feed -C "$W/src" bundle create "$W/b.bundle"
    t "$who: pull bundle into empty store" "$B" feed -C "$W/e" pull "$W/b.bundle"
  done
done
seq -f 'more %g' 100 > "$W/more"
"$NEW" feed -C "$W/src" append --key "$W/k" --batch "$W/more" >/dev/null
for who in main feed; do
  B=$NEW; [ $who = main ] && B=$OLD
  cp -r "$W/d" "$W/d-$who"
  t "$who: pull 100 new msgs (path)" "$B" feed -C "$W/d-$who" pull "$W/src"
done
