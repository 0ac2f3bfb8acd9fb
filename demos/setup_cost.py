#!/usr/bin/env python3
"""What it costs to set shared memory up, and why: faults, zeroing, fault-around. Measured here, now.

Run: python3 demos/setup_cost.py [SIZE]
"""
import sys

from toolkit.measure.bench import run_bench
from toolkit.units import human_bytes, human_seconds, parse_size

size = parse_size(sys.argv[1] if len(sys.argv) > 1 else "16M")
r = run_bench(sizes=[4096, size], mechs=("sysv", "posix", "memfd", "anon"), repeat=5)
row = {(x.mechanism, x.size_bytes, x.phase): x for x in r.rows}

print(f"Setting up {human_bytes(size)} of shared memory four ways (median of 5 runs, {r.machine['cpu']}):\n")
for m in ("sysv", "posix", "memfd", "anon"):
    c, a, t = (row.get((m, size, p)) for p in ("create", "attach", "first_touch"))
    print(f"  {m:6} create {human_seconds(c.median_s) if c else '—':>9}  attach {human_seconds(a.median_s):>9}  "
          f"first touch {human_seconds(t.median_s):>9} ({t.minor_faults} faults, {t.ns_per_page:.0f} ns/page)")
print("\nCreating and attaching are cheap and nearly independent of size: no memory is handed out yet.")
print("The first touch is the real cost: one fault per page, and the kernel zeroes every new page.\n")
print("A second process reading an object that already exists:")
for m in ("sysv", "posix", "memfd"):
    x = row.get((m, size, "read_through"))
    print(f"  {m:6} {x.minor_faults:>6} faults for {x.pages} pages ({x.pages / max(1, x.minor_faults):.1f} pages per fault), "
          f"{x.ns_per_page:.0f} ns per page")
print("\nWhat the numbers say:")
for line in r.findings:
    print("  - " + line)
