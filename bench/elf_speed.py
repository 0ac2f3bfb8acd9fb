#!/usr/bin/env python3
"""Benchmark: `shmkit elf` over every ELF library in a directory in one call, against `readelf -lW` on each.

Prints the median wall time of each over several runs, run side by side, and their ratio.
Run: python3 bench/elf_speed.py [DIR] [RUNS]
"""
import glob
import os
import statistics
import subprocess
import sys
import time

libdir = sys.argv[1] if len(sys.argv) > 1 else "/usr/lib/x86_64-linux-gnu"
runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
libs = []
for p in sorted({os.path.realpath(p) for p in glob.glob(os.path.join(libdir, "*.so*"))}):
    try:
        with open(p, "rb") as f:
            if f.read(4) == b"\x7fELF":
                libs.append(p)
    except OSError:
        pass


def shmkit():
    subprocess.run([sys.executable, "-m", "toolkit", "elf", *libs], stdout=subprocess.DEVNULL, check=True)


def readelf():
    for p in libs:
        subprocess.run(["readelf", "-lW", p], stdout=subprocess.DEVNULL, check=True)


def timed(fn):
    t0 = time.monotonic()
    fn()
    return time.monotonic() - t0


shmkit(), readelf()  # warm-up: page cache, interpreter
a, b = [], []
for _ in range(runs):  # interleaved, so both see the same machine load
    a.append(timed(shmkit))
    b.append(timed(readelf))
ma, mb = statistics.median(a), statistics.median(b)
print(f"{len(libs)} ELF files in {libdir}, {runs} runs each, interleaved")
print(f"shmkit elf (one call): median {ma:.3f} s  (min {min(a):.3f}, max {max(a):.3f})")
print(f"readelf -lW (each)   : median {mb:.3f} s  (min {min(b):.3f}, max {max(b):.3f})")
print(f"ratio shmkit/readelf : {ma / mb:.2f}  (target <= 1.00)")
