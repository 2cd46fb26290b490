#!/usr/bin/env python3
"""Per-cell medians over several runs of bench/compare.sh (issue 15 asks for medians
of 3 runs): reads the tables the script appended to a file and prints one table.

    python3 bench/compare-medians.py runs.md      # every run in the file
    python3 bench/compare-medians.py runs.md 3    # the last 3

Small requests: the median of each column over the runs, then the ratios of those
medians; the per-run ratios beside them. Large transfers: the same per row and peer.
"""
import re, statistics, sys
text = open(sys.argv[1]).read()
runs = text.split('### bench/compare.sh — ')[1:]
if len(sys.argv) > 2: runs = runs[-int(sys.argv[2]):]
small = {}; large = {}; rss = []
for r in runs:
    for m in re.finditer(r'^\| ([A-Z][^|]*?) \| (\d+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| [\d.]+ \|$', r, re.M):
        small.setdefault((m[1], int(m[2])), []).append([float(x) for x in m.groups()[2:]])
    for m in re.finditer(r'^\| ([^|]*?) \| ([\d.]+) \| ([^:|]+): ([\d.]+) \| [\d.]+ \|$', r, re.M):
        large.setdefault((m[1], m[3]), []).append((float(m[2]), float(m[4])))
    m = re.search(r'idle (\d+) KiB.*during 64 concurrent 64 MiB uploads (\d+) KiB', r)
    rss.append((int(m[1]), int(m[2])))
print(f"{len(runs)} runs: " + ", ".join(r.split('\n')[0] for r in runs))
print("| scenario | conns | tig req/s | tig p50 | tig p99 | nginx req/s | nginx p50 | nginx p99 | req/s ratio | p99 ratio | per run req/s ratios |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
for (name, c), rows in small.items():
    med = [statistics.median(col) for col in zip(*rows)]
    per = " / ".join(f"{r[0]/r[3]:.2f}" for r in rows)
    print(f"| {name} | {c} | {med[0]:.0f} | {med[1]:g} | {med[2]:g} | {med[3]:.0f} | {med[4]:g} | {med[5]:g} | {med[0]/med[3]:.2f} | {med[2]/med[5]:.2f} | {per} |")
print()
print("| large transfer | peer | tig (median) | peer (median) | ratio of medians | per run |")
print("|---|---|---:|---:|---:|---|")
for (name, peer), rows in large.items():
    t = statistics.median(r[0] for r in rows); p = statistics.median(r[1] for r in rows)
    per = " / ".join(f"{a/b:.2f}" for a, b in rows)
    print(f"| {name} | {peer} | {t:g} | {p:g} | {t/p:.2f} | {per} |")
print()
print("RSS idle KiB:", [a for a, b in rss], "peak during uploads KiB:", [b for a, b in rss])
