"""/proc/PID/mountinfo through the gateway: the one parser of it (proc(5): fields, then " - ", then the
file system type, source and per-superblock options)."""
from __future__ import annotations

from toolkit.errors import ShmkitError
from toolkit.proc.fs import ProcFS, default_fs
from toolkit.records import Mount


def read_mounts(pid="self", fs: ProcFS | None = None) -> list:
    """The mounts pid sees, in mountinfo's order (a later one at a point is on top); [] where unreadable."""
    fs = fs or default_fs()
    try:
        text = fs.read_text(pid, "mountinfo")
    except (ShmkitError, OSError):
        return []
    out = []
    for line in text.splitlines():
        pre, _, post = line.partition(" - ")
        f, p = pre.split(), post.split()
        if len(f) > 5 and p:
            out.append(Mount(f[2], f[3], f[4], tuple(f[5].split(",")), p[0],
                             tuple(p[2].split(",")) if len(p) > 2 else ()))
    return out
