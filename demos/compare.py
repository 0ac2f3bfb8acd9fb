#!/usr/bin/env python3
"""The main comparison as a story: four processes share 16 MiB three ways, and /proc tells the truth.

Run: python3 demos/compare.py [SIZE] [PEERS]
"""
import sys

from toolkit.measure.compare import run_compare
from toolkit.units import human_bytes, human_seconds, parse_size

size = parse_size(sys.argv[1] if len(sys.argv) > 1 else "16M")
peers = int(sys.argv[2]) if len(sys.argv) > 2 else 4
c = run_compare(size, peers, progress=lambda what, done=None, total=None: print(f"  ... {what}", file=sys.stderr))
by = {m.mechanism: m for m in c.mechanisms}
sysv, posix, text, data = by["sysv"], by["posix"], by["dso_text"], by["dso_data"]

print(f"{peers} separate processes, each given a {human_bytes(size)} System V segment, a POSIX object, "
      f"and {c.library}.\n")

print("1. Explicit sharing is asked for, and it is visible.")
for m in (sysv, posix):
    v = m.visibility
    print(f"   {m.title}: peer 0 wrote 8 bytes, peer 1 {'read them back' if v.peer_sees_write else 'did NOT see them'}; "
          f"maps shows it as {v.maps_name!r}; listed in {', '.join(v.listed_in)}; mode {v.mode}; "
          f"{'it outlived the process that made it' if v.outlives_creator else 'it died with its maker'}.")

print("\n2. What it costs to set up (median of repetitions, this machine, this run):")
for m in (sysv, posix):
    ph = {p.name: p for p in m.setup.phases}
    frees = "destroy" if "destroy" in ph else "detach"  # System V: the last detach of a marked segment frees it
    print(f"   {m.title}: create {human_seconds(ph['create'].median_s)}, attach {human_seconds(ph['attach'].median_s)}, "
          f"mark for removal {human_seconds(ph['mark'].median_s)}, "
          f"first touch {human_seconds(ph['first_touch'].median_s)} ({ph['first_touch'].minor_faults} minor faults), "
          f"freeing the pages ({frees}) {human_seconds(ph[frees].median_s)}")
print(f"   the library: {text.setup.note}")

print("\n3. Footprint: Rss counts shared pages in every process, Pss divides them, PFNs count them once.")
for m in (sysv, posix, text, data):
    f = m.footprint
    phys = human_bytes(f.physical_bytes) if f.physical_bytes is not None else "unavailable (needs root)"
    print(f"   {m.title:13} Rss sum {human_bytes(f.rss_sum):>10}  Pss sum {human_bytes(f.pss_sum):>10}  physical {phys}")

print("\n4. Implicit sharing nobody asked for:")
w = c.library_write
if w.symbol:
    print(f"   peer A changed the library global {w.symbol} ({w.value_before} -> {w.value_written}); "
          f"peer B still reads {w.value_seen_by_b}: globals are per process (copy on write).")
t = c.text_sharing
if t.same_pfns_in_all_peers is not None:
    print(f"   the library's {t.pages} code pages are {'the same physical pages' if t.same_pfns_in_all_peers else 'NOT the same pages'} "
          f"in all {peers} peers, though each peer loaded it at its own address.")
else:
    print("   whether the code pages are physically one copy needs root to see (PFNs are hidden).")
