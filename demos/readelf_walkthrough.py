#!/usr/bin/env python3
"""The classic `readelf -e libc.so.6` walkthrough, tied to what the kernel did in this very process.

Run: python3 demos/readelf_walkthrough.py [LIBRARY]
"""
import os
import sys

from toolkit.elf.headers import read_elf
from toolkit.measure.elfjoin import join_pid
from toolkit.mechanisms.dso import Dso, resolve_library
from toolkit.proc.pagemap import kpagecount_readable, probe_pfns_visible
from toolkit.report.elf import render_elf
from toolkit.units import counted, human_bytes

path = resolve_library(sys.argv[1] if len(sys.argv) > 1 else None)
lib = Dso.dlopen(path)  # make sure it is loaded here (libc already is)
info = read_elf(path)

print("Step 1: the file. Only PT_LOAD segments are mapped; the others describe parts of them.\n")
render_elf(info, sys.stdout)

privileged = probe_pfns_visible() and kpagecount_readable()
(_, joined), = join_pid(os.getpid(), path, privileged)
print(f"Step 2: this process (pid {os.getpid()}) has it at {joined.base:#x}. Each LOAD became these mappings:\n")
for m in joined.mappings:
    seg = info.segments[m.segment]
    shared = m.shared_clean + m.shared_dirty
    private = m.private_clean + m.private_dirty
    who = (f", its pages mapped by {m.kpagecount_min}-{m.kpagecount_max} processes (kpagecount)"
           if m.kpagecount_min is not None else (", how many map it needs root" if not privileged else ""))
    print(f"  LOAD {seg.flags:<3} -> {m.perms} {m.start:#x}-{m.end:#x}{' (.bss, anonymous)' if m.anonymous else ''}: "
          f"Rss {human_bytes(m.rss)}, Pss {human_bytes(m.pss)}, shared {human_bytes(shared)}, "
          f"private {human_bytes(private)}{who}")
code = [m for m in joined.mappings if "x" in m.perms]
data = [m for m in joined.mappings if "w" in m.perms]
print("\nStep 3: what it means, from those numbers:")
if code:
    c = code[0]
    print(f"  the code (r-xp) is {human_bytes(c.rss)} resident but costs this process only {human_bytes(c.pss)} "
          f"of Pss: the pages are shared with every other process that loaded the library.")
if data:
    print(f"  the data (rw-p) is {human_bytes(sum(m.private_dirty for m in data))} Private_Dirty: this process's own "
          f"copy of the pages it (or the loader) wrote; nobody else sees those globals.")
reloc_pages = sum(s.reloc_pages for s in info.loads())
print(f"  relocations dirty at least {counted(reloc_pages, 'page')} of the file in every process; "
      f"RELRO is {info.relro}.")
Dso.dlclose(lib)
