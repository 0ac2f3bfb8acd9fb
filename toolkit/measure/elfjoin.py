"""Join a live process's mappings to the PT_LOAD segments they came from, with smaps and kpagecount."""
from __future__ import annotations

import os
import statistics

from toolkit.elf.headers import ElfInfo, read_elf
from toolkit.errors import (
    AccessDenied,
    KernelThread,
    NoSuchProcess,
    NotFound,
    ShmkitError,
    ZombieProcess,
)
from toolkit.proc.fs import default_fs
from toolkit.proc.maps import read_smaps
from toolkit.proc.pagemap import PAGE_SIZE, read_kpagecount, read_pagemap
from toolkit.records import JoinedMapping, ObjectJoin


def _down(x):
    return x - x % PAGE_SIZE


def _up(x):
    return -(-x // PAGE_SIZE) * PAGE_SIZE


def join_object(pid, path: str, smaps, info: ElfInfo, privileged: bool, deleted: bool = False) -> ObjectJoin:
    """`deleted`: the mappings of the file at `path` that was deleted (or replaced, as by an upgrade) after
    it was mapped; a process can map both that one and the new file of the same name."""
    loads = info.loads()

    def of_object(m):
        return m.path == path and m.deleted == deleted

    mine = [e for e in smaps if of_object(e.mapping)]
    first = min(loads, key=lambda s: s.offset)
    zero = next((e for e in mine if e.mapping.offset == _down(first.offset)), None)
    if zero is None:
        raise NotFound(f"{path}: no mapping at file offset {first.offset:#x} in process {pid}")
    base = zero.mapping.start - _down(first.vaddr)
    rows = []
    for i, e in enumerate(smaps):
        m = e.mapping
        is_file = of_object(m)
        is_bss = (not m.path and m.inode == 0 and i > 0 and of_object(smaps[i - 1].mapping)
                  and smaps[i - 1].mapping.end == m.start)
        if not (is_file or is_bss):
            continue
        rel = m.start - base
        seg = next((s for s in loads if _down(s.vaddr) <= rel < _up(s.vaddr + s.memsz)), None)
        if seg is None:
            continue
        kmin = kmed = kmax = None
        if privileged:
            pfns = [p for p in read_pagemap(pid, m.start, m.end).pfns if p is not None]
            if pfns:
                counts = read_kpagecount(pfns)
                vals = [counts[p] for p in pfns]
                kmin, kmed, kmax = min(vals), int(statistics.median(vals)), max(vals)
        rows.append(JoinedMapping(
            segment=seg.index, load_flags=seg.flags, load_offset=seg.offset, aligned_offset=_down(seg.offset),
            start=m.start, end=m.end, perms=m.perms, map_offset=m.offset, anonymous=is_bss,
            rss=e.get("Rss", 0), pss=e.get("Pss", 0), shared_clean=e.get("Shared_Clean", 0),
            shared_dirty=e.get("Shared_Dirty", 0), private_clean=e.get("Private_Clean", 0),
            private_dirty=e.get("Private_Dirty", 0), kpagecount_min=kmin, kpagecount_median=kmed,
            kpagecount_max=kmax, sharing=_fate(m.perms, is_bss, seg.flags),
        ))
    note = (f"deleted from disk since it was mapped (replaced by an upgrade?): the process still runs this "
            f"copy; its headers were read through /proc/{pid}/map_files") if deleted else ""
    return ObjectJoin(pid, path, base, tuple(rows), privileged, note, deleted)


def _fate(perms, bss, load_flags) -> str:
    if bss:
        return ".bss: anonymous, private"
    if "x" in perms:
        return "code: page cache, shared"
    if "w" in perms:
        return "data: private once written"
    if "W" in load_flags:
        return "RELRO: written at relocation (an anonymous copy), now read-only"
    return "read-only: page cache, shared"


def loaded_objects(smaps) -> list:
    """(path, deleted, first mapping) of each ELF object mapped in a process, in address order; a file
    deleted after it was mapped is one too (the process still runs it)."""
    seen, out = set(), []
    for e in smaps:
        m = e.mapping
        key = (m.path, m.deleted)
        if m.path.startswith("/") and key not in seen and "x" in m.perms:
            seen.add(key)
            out.append((m.path, m.deleted, m))
    return out


def join_pid(pid: int, library: str | None = None, privileged: bool = False, skipped: list | None = None) -> list:
    """Every loaded object of pid (or those whose path or name matches library), joined. An object that
    cannot be read is left out, and (path, why) goes to `skipped` where one is given."""
    try:
        smaps = read_smaps(pid)
    except AccessDenied as err:  # say why, as footprint does, not only which file
        from toolkit.proc.access import read_access, why_denied

        fs = default_fs()
        raise AccessDenied(pid, f"process {pid}: permission denied ({why_denied(fs, read_access(fs), [pid])})") from err
    if not smaps:  # no address space: say which kind of process this is rather than print nothing
        fs = default_fs()
        state = fs.task_state(pid)
        if state == "zombie":
            raise ZombieProcess(pid)
        if state == "kernel thread":
            raise KernelThread(pid)
        if state is None:
            raise NoSuchProcess(pid)
    objects = loaded_objects(smaps)
    if library:
        real = os.path.realpath(library) if os.path.sep in library else None
        objects = [o for o in objects if o[0] == real or o[0] == library or os.path.basename(o[0]).startswith(library)]
        if not objects:
            raise NotFound(f"process {pid} has no library matching {library!r} mapped")
    out = []
    for path, deleted, first in objects:
        try:
            info = read_elf(default_fs().mapped_file(pid, first))
        except ShmkitError as err:  # another mount namespace we cannot enter, a deleted file without root
            if skipped is not None:
                skipped.append((path + (" (deleted)" if deleted else ""), str(err)))
            continue
        if not info.loads():
            continue
        out.append((info, join_object(pid, path, smaps, info, privileged, deleted)))
    return out
