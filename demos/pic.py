#!/usr/bin/env python3
"""Position independent code, shown: one library, N processes, N load addresses, one set of distances.
(Also: shmkit demo pic, shmkit elf --aslr N.)

Run: python3 demos/pic.py [LIBRARY] [PEERS]
"""
import sys

from toolkit.elf.headers import read_elf
from toolkit.measure.stories import pic
from toolkit.mechanisms.dso import resolve_library
from toolkit.report.story import render_text

library = resolve_library(sys.argv[1] if len(sys.argv) > 1 else None)
peers = int(sys.argv[2]) if len(sys.argv) > 2 else 4
info = read_elf(library)
code = next(s for s in info.loads() if "E" in s.flags)
data = next((s for s in info.loads() if "W" in s.flags), None)

print(f"{library}: {'position independent' if info.pic else 'NOT position independent'}, {info.layout}.")
if data:
    print(f"In the file, the code segment starts at vaddr {code.vaddr:#x} and the data segment at {data.vaddr:#x}: "
          f"{data.vaddr - code.vaddr:#x} apart (the mappings start on page boundaries).\n")
story = pic(library, peers)
render_text(story, sys.stdout)
print("\nThe code finds its data relative to itself, so the same code pages (from the page cache) work at any "
      "address: that is why one physical copy can serve every process.")
