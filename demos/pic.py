#!/usr/bin/env python3
"""Position independent code, shown: one library, N processes, N load addresses, one set of distances.

Run: python3 demos/pic.py [LIBRARY] [PEERS]
"""
import sys

from toolkit.elf.headers import read_elf
from toolkit.measure.pic import load_layout

library = sys.argv[1] if len(sys.argv) > 1 else None
peers = int(sys.argv[2]) if len(sys.argv) > 2 else 4
result = load_layout(library, peers)
info = read_elf(result.library)
loads = info.loads()
code = next(s for s in loads if "E" in s.flags)
data = next((s for s in loads if "W" in s.flags), None)

print(f"{result.library}: {'position independent' if info.pic else 'NOT position independent'}, {info.layout}.")
if data:
    print(f"In the file, the code segment starts at vaddr {code.vaddr:#x} and the data segment at {data.vaddr:#x}: "
          f"{data.vaddr - code.vaddr:#x} apart.")
print(f"\n{peers} separate processes loaded it:")
for p in result.peers:
    print(f"  pid {p.pid:>7}: base {p.base:#x}   code->data {p.text_to_data:#x}")
print(f"\n{result.distinct_bases} different base addresses (ASLR), and the distance from code to data is "
      f"{'the same in every process' if result.same_distance else 'NOT the same'}.")
print("The code finds its data relative to itself, so the same code pages (from the page cache) work at any "
      "address: that is why one physical copy can serve every process.")
