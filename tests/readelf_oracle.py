"""Parse `readelf -lW` output: the oracle for our program headers."""
import re
import subprocess

_ROW = re.compile(r"^\s{2}(\S+(?:\+0x[0-9a-f]+)?(?:: [0-9a-fx]+)?)\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+"
                  r"(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+([R ][W ][E ])\s+(0x[0-9a-f]+|0)\s*$")  # %#lx: 0 is "0"


def readelf_segments(path):
    out = subprocess.run(["readelf", "-lW", path], capture_output=True, text=True, env={"LC_ALL": "C"}).stdout
    rows, mapping, in_map = [], [], False
    for line in out.splitlines():
        m = _ROW.match(line)
        if m:
            t, *nums, flags, align = m.groups()
            rows.append((t, *(int(x, 16) for x in nums), flags.rstrip(), int(align, 16)))
        elif "Segment Sections..." in line:
            in_map = True
        elif in_map and re.match(r"^\s+\d\d\s", line):
            mapping.append(tuple(line.split()[1:]))
    return rows, mapping
