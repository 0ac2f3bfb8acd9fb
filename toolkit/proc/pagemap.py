"""/proc/PID/pagemap and /proc/kpagecount (Documentation/admin-guide/mm/pagemap.rst)."""
from __future__ import annotations

import itertools
import os
import struct
from array import array

from toolkit.errors import AccessDenied
from toolkit.proc.fs import ProcFS, default_fs
from toolkit.records import PageRange

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
_ENTRY = 8


def decode_pagemap(pid, start: int, raw: bytes, page_size: int = PAGE_SIZE, pfns_visible=None) -> PageRange:
    """Decode a whole run of pagemap words at once (one array.frombytes)."""
    entries = array("Q")
    entries.frombytes(raw[: len(raw) // _ENTRY * _ENTRY])
    if pfns_visible is None:
        # Since 4.2 the PFN field reads 0 without CAP_SYS_ADMIN; a present page never has PFN 0 in practice.
        # With no present page in the range there is nothing to judge by: ask the probe.
        probe = PageRange(pid, start, page_size, entries, True)
        pfns_visible = (probe.pfn_array().tobytes().count(0) < 8 * len(entries)) if probe.present_count \
            else pfns_visible_here()
    return PageRange(pid, start, page_size, entries, pfns_visible)


def read_pagemap(pid, start: int, end: int, fs: ProcFS | None = None) -> PageRange:
    fs = fs or default_fs()
    page = fs.page_size  # the recorded host's, in a replay
    first, last = start // page, (end + page - 1) // page
    (raw,) = fs.read_at((pid, "pagemap"), [(first * _ENTRY, (last - first) * _ENTRY)])
    return decode_pagemap(pid, first * page, raw, page)


def read_pagemap_words(pid, ranges, fs: ProcFS | None = None) -> list:
    """[(first page, raw pagemap words)] of each (start, end) of pid, read with one open of its pagemap."""
    fs = fs or default_fs()
    page = fs.page_size  # the recorded host's, in a replay
    spans = [(start // page, (end + page - 1) // page) for start, end in ranges]
    raws = fs.read_at((pid, "pagemap"), [(first * _ENTRY, (last - first) * _ENTRY) for first, last in spans])
    return [(first, raw) for (first, _last), raw in zip(spans, raws)]


def read_pfn_arrays(pid, ranges, fs: ProcFS | None = None):
    """The PFNs (array('Q'), 0 where absent) of each (start, end) of pid: one open of its pagemap, one
    decoding of all the words. None where the kernel hides PFNs. A scan of every shared object reads
    thousands of small ranges of each process: opening and decoding each on its own took 2.2 of the
    ledger's 3.5 s with 300 processes of 400 shared mappings."""
    fs = fs or default_fs()
    raws = [raw for _first, raw in read_pagemap_words(pid, ranges, fs)]
    whole = decode_pagemap(pid, 0, b"".join(raws), fs.page_size)
    if not whole.pfns_visible:
        return None
    pfns, out, at = whole.pfn_array(), [], 0
    for raw in raws:
        n = len(raw) // _ENTRY
        out.append(pfns[at:at + n])
        at += n
    return out


def distinct_pfns_of(groups, fs: ProcFS | None = None, progress=lambda *a: None) -> dict:
    """{key: set of the distinct PFNs present, or None where they cannot be known} for groups of mappings
    {key: [(pid, start, end), ...]} (a library's or shared object's mappings in every process). Each
    process's pagemap is read once for all its ranges (read_pfn_arrays). A process that is gone is left
    out (its pages are counted through the others'); one that is there but unreadable, or whose PFNs are
    hidden, makes every group it is in unknown: None, never a false 0."""
    from toolkit.errors import NoSuchProcess, NotFound

    fs = fs or default_fs()
    spans_of = {}
    for ranges in groups.values():
        for pid, start, end in ranges:
            spans_of.setdefault(pid, set()).add((start, end))
    read, gone = {}, object()
    for i, (pid, spans) in enumerate(spans_of.items()):
        if i % 16 == 0:
            progress("reading the physical pages of each process's shared mappings", i, len(spans_of))
        spans = sorted(spans)
        try:
            arrays = read_pfn_arrays(pid, spans, fs) or [None] * len(spans)  # None: PFNs hidden
        except (NoSuchProcess, AccessDenied, NotFound):
            arrays = [None if fs.exists(pid) else gone] * len(spans)
        read.update(zip(((pid, *span) for span in spans), arrays))
    out = {}
    for key, ranges in groups.items():
        pfns = set()
        for r in ranges:
            found = read[r]
            if found is gone:
                continue
            if found is None:
                pfns = None
                break
            pfns.update(found)
        if pfns is not None:
            pfns.discard(0)  # absent pages
        out[key] = pfns
    return out


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
    if any(len(blob) != count * _ENTRY for (_, count), blob in zip(runs, blobs)):  # a short read: run by run
        out = {}
        for (start, _), blob in zip(runs, blobs):
            out.update(zip(range(start, start + len(blob) // _ENTRY),
                           struct.unpack(f"={len(blob) // _ENTRY}Q", blob[:len(blob) // _ENTRY * _ENTRY])))
        return out
    # one decoding of every word (the kernel writes them in host order), zipped with the PFNs in C: a third
    # faster than a loop per run
    values = array("Q")
    values.frombytes(b"".join(blobs))
    return dict(zip(itertools.chain.from_iterable(range(start, start + count) for start, count in runs), values))


def read_kpagecount(pfns, fs: ProcFS | None = None) -> dict:
    """How many times each physical page is mapped. Needs root."""
    return _read_per_pfn("kpagecount", pfns, fs)


def kpagecount_range(pfns, fs: ProcFS | None = None) -> tuple:
    """(min, max) of kpagecount over the PFNs, without a dict per page: each coalesced run read into an
    array, min and max at C speed. (None, None) for no PFN."""
    fs = fs or default_fs()
    runs = list(_runs(sorted(pfns)))
    if not runs:
        return None, None
    lo = hi = None
    for blob in fs.read_at(("kpagecount",), [(start * _ENTRY, count * _ENTRY) for start, count in runs]):
        a = array("Q")
        a.frombytes(blob)
        if a:
            lo = min(a) if lo is None else min(lo, min(a))
            hi = max(a) if hi is None else max(hi, max(a))
    return lo, hi


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


# Above this many pages, numpy (if installed) decodes, dedupes and counts: its import costs ~40 ms, and
# it turns ~100 ms of Python per million pages into ~10 ms (bench/pagemap_speed.py shows both).
NUMPY_FROM_PAGES = 1 << 16
BITMAP_PFNS = 1 << 26  # page frames up to 256 GiB of RAM (4 KiB pages): a 64 MiB bitmap at most


def _numpy():
    try:
        import numpy
    except ImportError:
        return None
    return numpy


def physical_pages(ranges, fs: ProcFS | None = None, counts: bool = True) -> tuple:
    """(distinct PFNs, kpagecount min, kpagecount max) over PageRanges of any number of peers: the physical
    bytes of a region and how widely its pages are mapped. (None, None, None) when PFNs are hidden."""
    ranges = list(ranges)
    if any(not r.pfns_visible for r in ranges):
        return None, None, None
    pages = sum(len(r) for r in ranges)
    np = _numpy() if pages >= NUMPY_FROM_PAGES else None
    if np is None:
        found = set()
        for r in ranges:
            found |= r.distinct_pfns()
        lo, hi = kpagecount_range(found, fs) if counts and found else (None, None)
        return len(found), lo, hi
    words = np.concatenate([np.frombuffer(r.entries, dtype=np.uint64) for r in ranges])
    present = (words >> np.uint64(62)) == np.uint64(2)  # bit 63 set, 62 (swapped) clear
    pfns = words[present] & np.uint64(PageRange.PFN_MASK)
    top = int(pfns.max()) if pfns.size else 0
    if top < BITMAP_PFNS:  # a byte per page frame of the machine: dedupes without a sort (4x faster)
        seen = np.zeros(top + 1, dtype=np.bool_)
        seen[pfns] = True
        unique = np.flatnonzero(seen).astype(np.uint64)
    else:
        unique = np.unique(pfns)
    lo = hi = None
    if counts and unique.size:
        breaks = np.flatnonzero(np.diff(unique) != 1) + 1
        starts = np.concatenate(([0], breaks))
        ends = np.concatenate((breaks, [unique.size]))
        runs = [(int(unique[a]) * _ENTRY, int(b - a) * _ENTRY) for a, b in zip(starts, ends)]
        blobs = (fs or default_fs()).read_at(("kpagecount",), runs)
        values = np.frombuffer(b"".join(blobs), dtype=np.uint64)
        lo, hi = int(values.min()), int(values.max())
    return int(unique.size), lo, hi

