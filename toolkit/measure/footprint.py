"""Footprint of a region across peers: smaps per peer, distinct physical pages, the kernel's count."""
from __future__ import annotations

from toolkit.proc.maps import read_smaps
from toolkit.proc.pagemap import PAGE_SIZE, read_kpagecount, read_pagemap
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
    per_peer, pfns = [], set()
    if privileged and pagemaps is None:
        pagemaps = pagemaps_of(ranges_by_pid)
    for pid, ranges in ranges_by_pid.items():
        entries = entries_in(smaps[pid], ranges)
        if entries:
            per_peer.append(PeerFootprint.from_entries(pid, entries))
        if privileged:
            for rng in pagemaps[pid]:
                found = rng.distinct_pfns()
                if found is None:
                    privileged = False
                    break
                pfns |= found
    physical = len(pfns) * PAGE_SIZE if privileged else None
    kmin = kmax = None
    grid = None
    if privileged and pfns:
        counts = read_kpagecount(pfns)
        kmin, kmax = min(counts.values()), max(counts.values())
        grid = page_grid(pagemaps, counts)
    return Footprint(mechanism, region_bytes, tuple(per_peer), physical, kernel[0], kernel[1], kmin, kmax, grid)


GRID_CELLS = 128  # per peer: more pages than this are sampled, one in every `step`


def page_grid(pagemaps: dict, counts: dict) -> PageGrid:
    """Every peer's PFNs of a region, sampled to at most GRID_CELLS cells, with their kpagecount."""
    rows = []
    pages = 0
    for pid, ranges in pagemaps.items():
        pfns = [p for rng in ranges for p in rng.pfns]
        pages = max(pages, len(pfns))
        rows.append((pid, pfns))
    step = max(1, -(-pages // GRID_CELLS))
    sampled = tuple((pid, tuple(pfns[::step])) for pid, pfns in rows)
    shown = {p for _, row in sampled for p in row if p is not None}
    return PageGrid(pages, step, sampled, {p: counts[p] for p in shown if p in counts})
