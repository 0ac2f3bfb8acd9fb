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


def region_footprint(mechanism: str, region_bytes: int, ranges_by_pid: dict, smaps: dict,
                     privileged: bool, kernel=(None, "")) -> Footprint:
    per_peer, pfns = [], set()
    for pid, ranges in ranges_by_pid.items():
        entries = entries_in(smaps[pid], ranges)
        if entries:
            per_peer.append(PeerFootprint.from_entries(pid, entries))
        if privileged:
            for lo, hi in ranges:
                found = read_pagemap(pid, lo, hi).distinct_pfns()
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
