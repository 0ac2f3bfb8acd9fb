"""/proc/PID/pagemap and /proc/kpagecount (Documentation/admin-guide/mm/pagemap.rst)."""
from __future__ import annotations

import os
import struct

from toolkit.errors import AccessDenied
from toolkit.proc.fs import ProcFS, default_fs
from toolkit.records import PageRange

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
_ENTRY = 8


def decode_pagemap(pid, start: int, raw: bytes, page_size: int = PAGE_SIZE, pfns_visible=None) -> PageRange:
    """Decode a whole run of pagemap words at once."""
    entries = struct.unpack(f"<{len(raw) // _ENTRY}Q", raw[: len(raw) // _ENTRY * _ENTRY])
    if pfns_visible is None:
        # Since 4.2 the PFN field reads 0 without CAP_SYS_ADMIN; a present page never has PFN 0 in practice.
        # With no present page in the range there is nothing to judge by: ask the probe.
        mask = PageRange.PFN_MASK
        present = [e for e in entries if e >> 63 and not (e >> 62 & 1)]
        pfns_visible = any(e & mask for e in present) if present else pfns_visible_here()
    return PageRange(pid, start, page_size, entries, pfns_visible)


def read_pagemap(pid, start: int, end: int, fs: ProcFS | None = None) -> PageRange:
    fs = fs or default_fs()
    first, last = start // PAGE_SIZE, (end + PAGE_SIZE - 1) // PAGE_SIZE
    (raw,) = fs.read_at((pid, "pagemap"), [(first * _ENTRY, (last - first) * _ENTRY)])
    return decode_pagemap(pid, first * PAGE_SIZE, raw)


def _runs(sorted_pfns):
    run_start = prev = None
    for p in sorted_pfns:
        if run_start is None:
            run_start = prev = p
        elif p == prev + 1:
            prev = p
        else:
            yield run_start, prev - run_start + 1
            run_start = prev = p
    if run_start is not None:
        yield run_start, prev - run_start + 1


def _read_per_pfn(name, pfns, fs) -> dict:
    """One 64-bit word per PFN from /proc/kpagecount or /proc/kpagecgroup: sorted, one read per
    contiguous run."""
    fs = fs or default_fs()
    wanted = sorted({p for p in pfns if p is not None})
    runs = list(_runs(wanted))
    blobs = fs.read_at((name,), [(start * _ENTRY, count * _ENTRY) for start, count in runs])
    out = {}
    for (start, count), blob in zip(runs, blobs):
        for i, value in enumerate(struct.unpack(f"<{len(blob) // _ENTRY}Q", blob)):
            out[start + i] = value
    return out


def read_kpagecount(pfns, fs: ProcFS | None = None) -> dict:
    """How many times each physical page is mapped. Needs root."""
    return _read_per_pfn("kpagecount", pfns, fs)


def read_kpagecgroup(pfns, fs: ProcFS | None = None) -> dict:
    """The inode of the memory cgroup each physical page is charged to (0: none). Needs root; Linux 4.3."""
    return _read_per_pfn("kpagecgroup", pfns, fs)


def probe_pfns_visible(fs: ProcFS | None = None) -> bool:
    """Can this process read PFNs? Look up a page of our own that is surely present."""
    import ctypes

    fs = fs or default_fs()
    buf = ctypes.create_string_buffer(PAGE_SIZE * 2)
    buf[PAGE_SIZE] = b"x"
    addr = ctypes.addressof(buf) + PAGE_SIZE
    try:
        (raw,) = fs.read_at(("self", "pagemap"), [(addr // PAGE_SIZE * _ENTRY, _ENTRY)])
    except AccessDenied:
        return False
    (entry,) = struct.unpack("<Q", raw)
    return bool(entry >> 63) and bool(entry & PageRange.PFN_MASK)


def kpagecount_readable(fs: ProcFS | None = None) -> bool:
    fs = fs or default_fs()
    try:
        fs.read_at(("kpagecount",), [(0, _ENTRY)])
        return True
    except (AccessDenied, OSError):
        return False


_VISIBLE = []


def pfns_visible_here() -> bool:
    """probe_pfns_visible(), once per process."""
    if not _VISIBLE:
        _VISIBLE.append(probe_pfns_visible())
    return _VISIBLE[0]
