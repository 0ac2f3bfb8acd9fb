#!/usr/bin/env python3
"""Benchmark: `shmkit elf` over every ELF library in a directory in one call, against one `readelf -lW` call
on the same files (and, for the record, readelf run once per file).

Prints the median wall time of each over several runs, run side by side, and their ratios.
Target (issue 13): at most 3x the one readelf call.
Run: python3 bench/elf_speed.py [DIR] [RUNS]
"""
import glob
import os
import statistics
import subprocess
import sys
import time

libdir = sys.argv[1] if len(sys.argv) > 1 else "/usr/lib/" + getattr(sys.implementation, "_multiarch", "x86_64-linux-gnu")
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
    subprocess.run(["readelf", "-lW", *libs], stdout=subprocess.DEVNULL, check=True)


def readelf_each():
    for p in libs:
        subprocess.run(["readelf", "-lW", p], stdout=subprocess.DEVNULL, check=True)


FLOOR = r"""
import struct, sys
for p in sys.argv[1:]:
    with open(p, "rb") as f:
        head = f.read(64)
        shoff, = struct.unpack_from("<Q", head, 0x28)
        f.seek(shoff)
        f.read(64 * struct.unpack_from("<H", head, 0x3C)[0])
"""


# Less than `shmkit elf` does (64-bit little-endian files only; no relocations, no dynamic flags, no verdicts,
# the mapping by address alone), but what any Python tool printing readelf's table for each file must do:
# import click (every shmkit command parses its options with it), read and unpack the headers, print a
# line per program header and per mapping row.
BARE = r"""
import struct, sys
import click
P, S = struct.Struct("<IIQQQQQQ"), struct.Struct("<IIQQQQIIQQ")
out = []
for p in sys.argv[1:]:
    with open(p, "rb") as f:
        head = f.read(64)
        phoff, shoff = struct.unpack_from("<QQ", head, 0x20)
        phnum, = struct.unpack_from("<H", head, 0x38)
        shnum, shstrndx = struct.unpack_from("<HH", head, 0x3C)
        f.seek(phoff)
        phdrs = list(P.iter_unpack(f.read(56 * phnum)))
        f.seek(shoff)
        secs = list(S.iter_unpack(f.read(64 * shnum)))
        f.seek(secs[shstrndx][4])
        strtab = f.read(secs[shstrndx][5])
    names = [strtab[s[0]:strtab.find(b"\0", s[0])].decode() for s in secs]
    out.append(f"\n{p}\nProgram Headers:\n  Type Offset VirtAddr PhysAddr FileSiz MemSiz Flg Align")
    for t, fl, off, va, pa, fs, ms, al in phdrs:
        out.append(f"  {t:<14x} 0x{off:06x} 0x{va:016x} 0x{pa:016x} 0x{fs:06x} 0x{ms:06x} {fl:3x} 0x{al:x}")
    out.append(" Section to Segment mapping:")
    for i, (t, fl, off, va, pa, fs, ms, al) in enumerate(phdrs):
        out.append(f"   {i:02d}     " + " ".join(n for n, s in zip(names, secs)
                                             if s[2] & 2 and va <= s[3] and s[3] + s[5] <= va + ms))
sys.stdout.write("\n".join(out))
"""


def python_start():
    subprocess.run([sys.executable, "-c", "pass"], check=True)


def python_imports():
    """The interpreter starts and imports what `shmkit elf` imports (click, the ELF reader, pyelftools'
    name tables, the report): what the command pays before its first file."""
    subprocess.run([sys.executable, "-c", "import toolkit.cli.main, toolkit.elf.headers, toolkit.report.elf; "
                    "toolkit.elf.headers._names()"], check=True)


def python_floor():
    """The interpreter starts, opens every file and reads its ELF header and section headers: no parsing,
    no output. What any Python tool doing this job pays at least."""
    subprocess.run([sys.executable, "-c", FLOOR, *libs], check=True)


def python_bare():
    """The interpreter starts, imports click, and prints a bare program header table and mapping of every
    file (BARE above): a floor for any Python tool with readelf's output, below what shmkit shows."""
    subprocess.run([sys.executable, "-c", BARE, *libs], stdout=subprocess.DEVNULL, check=True)


def timed(fn):
    t0 = time.monotonic()
    fn()
    return time.monotonic() - t0


shmkit(), readelf(), readelf_each(), python_start(), python_floor(), python_imports(), python_bare()  # warm-up
a, b, c, d, e, f, g = [], [], [], [], [], [], []
for _ in range(runs):  # interleaved, so all see the same machine load
    a.append(timed(shmkit))
    b.append(timed(readelf))
    c.append(timed(readelf_each))
    d.append(timed(python_start))
    e.append(timed(python_floor))
    f.append(timed(python_imports))
    g.append(timed(python_bare))
ma, mb, mc = statistics.median(a), statistics.median(b), statistics.median(c)
md, me, mf, mg = statistics.median(d), statistics.median(e), statistics.median(f), statistics.median(g)
print(f"{len(libs)} ELF files in {libdir}, {runs} runs each, interleaved")
print(f"shmkit elf (one call)       : median {ma:.3f} s  (min {min(a):.3f}, max {max(a):.3f})")
print(f"readelf -lW (one call)      : median {mb:.3f} s  (min {min(b):.3f}, max {max(b):.3f})")
print(f"readelf -lW (once per file) : median {mc:.3f} s")
print(f"ratio shmkit / one readelf call   : {ma / mb:.2f}  (target <= 3.00)")
print(f"ratio shmkit / readelf per file   : {ma / mc:.2f}")
print(f"floor: the interpreter starting ({md:.3f} s, {md / mb:.2f}x the readelf call), and starting then "
      f"reading every file's headers without parsing ({me:.3f} s, {me / mb:.2f}x)")
print(f"before the first file: start and the command's imports {mf:.3f} s ({mf / mb:.2f}x); 3x leaves "
      f"{max(0.0, 3 * mb - mf) / len(libs) * 1e6:.0f} us per file to read, parse and print it, where shmkit "
      f"takes {(ma - mf) / len(libs) * 1e6:.0f} us")
print(f"floor of any Python tool with this output: start, import click, unpack and print a bare table and "
      f"mapping of each file (no relocations, no verdicts): {mg:.3f} s ({mg / mb:.2f}x the readelf call)")
