"""Footprint of a region across peers: smaps per peer, distinct physical pages, the kernel's count."""
from __future__ import annotations

from toolkit.proc.maps import read_smaps
from toolkit.proc.pagemap import PAGE_SIZE, read_kpagecount, read_pagemap
from toolkit.records import Footprint, PeerFootprint


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
    if privileged and pfns:
        counts = read_kpagecount(pfns).values()
        kmin, kmax = min(counts), max(counts)
    return Footprint(mechanism, region_bytes, tuple(per_peer), physical, kernel[0], kernel[1], kmin, kmax)
