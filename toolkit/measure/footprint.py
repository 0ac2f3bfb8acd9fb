"""Footprint of a region across peers: smaps per peer, distinct physical pages, the kernel's count."""
from __future__ import annotations

from toolkit.proc.maps import read_smaps
from toolkit.proc.pagemap import (
    PAGE_SIZE,
    physical_pages,
    read_kpagecount,
    read_pagemap,
)
from toolkit.records import Footprint, PageGrid, PeerFootprint


def smaps_of(pids) -> dict:
    """Each peer's smaps, read once for all the regions measured in it."""
    return {pid: read_smaps(pid) for pid in pids}


def entries_in(entries, ranges):
    """The smaps entries that lie inside any of the (start, end) ranges."""
    return [e for e in entries if any(lo <= e.mapping.start and e.mapping.end <= hi for lo, hi in ranges)]


def pagemaps_of(ranges_by_pid: dict) -> dict:
    """{pid: [PageRange per (start, end)]}: read once, for every measurement that needs the pages."""
    return {pid: [read_pagemap(pid, r[0], r[1]) for r in ranges] for pid, ranges in ranges_by_pid.items()}


def region_footprint(mechanism: str, region_bytes: int, ranges_by_pid: dict, smaps: dict,
                     privileged: bool, kernel=(None, ""), pagemaps=None) -> Footprint:
    """pagemaps: what pagemaps_of() read for these ranges, if it was read already."""
    per_peer = []
    if privileged and pagemaps is None:
        pagemaps = pagemaps_of(ranges_by_pid)
    for pid, ranges in ranges_by_pid.items():
        entries = entries_in(smaps[pid], ranges)
        if entries:
            per_peer.append(PeerFootprint.from_entries(pid, entries))
    physical = kmin = kmax = grid = None
    if privileged:
        count, kmin, kmax = physical_pages((r for rs in pagemaps.values() for r in rs))
        if count is not None:
            physical = count * PAGE_SIZE
            grid = page_grid(pagemaps) if count else None
    return Footprint(mechanism, region_bytes, tuple(per_peer), physical, kernel[0], kernel[1], kmin, kmax, grid)


GRID_CELLS = 128  # per peer: more pages than this are sampled, one in every `step`


def page_grid(pagemaps: dict) -> PageGrid:
    """Every peer's PFNs of a region, sampled to at most GRID_CELLS cells, with their kpagecount."""
    rows = []
    pages = 0
    for pid, ranges in pagemaps.items():
        arrays = [rng.pfn_array() for rng in ranges]
        pages = max(pages, sum(len(a) for a in arrays))
        rows.append((pid, arrays))
    step = max(1, -(-pages // GRID_CELLS))
    # sampled before anything is turned into Python objects: one slice of each range at C speed
    sampled = []
    for pid, arrays in rows:
        joined = arrays[0] if len(arrays) == 1 else sum(arrays[1:], arrays[0][:])
        sampled.append((pid, tuple(p or None for p in joined[::step])))
    shown = {p for _, row in sampled for p in row if p is not None}
    return PageGrid(pages, step, tuple(sampled), read_kpagecount(shown) if shown else {})
