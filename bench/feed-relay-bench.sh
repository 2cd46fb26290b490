#!/bin/sh
# Feeds over tig: time `tig feed push/pull tig+http://…` through a local `tig serve`.
# usage: bench/feed-relay-bench.sh N   (N messages in one feed; 3 runs each)
# T=path/to/tig overrides the binary (default: target/debug/tig, as `cargo build` makes it).
set -e
N=${1:-10000}; T=${T:-$(pwd)/target/debug/tig}; export TIG_LOG=warn
D=$(mktemp -d /tmp/rbench.XXXX); cd $D; mkdir root
$T serve --listen 127.0.0.1:0 --root $D/root --retention 0 > srv.out 2>&1 &
SP=$!
for i in 1 2 3 4 5 6 7 8 9 10; do grep -q listening srv.out && break; sleep 0.2; done
U=$(sed -n 's/tig: listening on //p' srv.out)
$T id new --out k >/dev/null 2>&1; $T feed init a >/dev/null; 
seq 1 $N | sed 's/^/message number /' > batch.txt; seq 1 100 | sed 's/^/more /' > more.txt
(cd a && $T feed append --key ../k --batch ../batch.txt >/dev/null)
t() { s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); echo "$e - $s" | bc; }
for r in 1 2 3; do
  $T feed init a$r >/dev/null; cp -r a/. a$r/ ; $T feed init b$r >/dev/null
  p=$(cd a$r && t $T feed push tig+$U/ch$r); q=$(cd b$r && t $T feed pull tig+$U/ch$r)
  (cd a$r && $T feed append --key ../k --batch ../more.txt >/dev/null)
  pi=$(cd a$r && t $T feed push tig+$U/ch$r); qi=$(cd b$r && t $T feed pull tig+$U/ch$r)
  u=$(cd b$r && t $T feed pull tig+$U/ch$r)
  echo "N=$N run $r: push full ${p}s pull full ${q}s | push +100 ${pi}s pull +100 ${qi}s | pull up-to-date ${u}s"
done
ls -l root | awk '{s+=$5} END {print "relay bytes:", s}'
kill $SP; cd /; rm -rf $D
