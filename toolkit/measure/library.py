"""A library across peers: its globals are per process (copy on write), its code pages are one copy."""
from __future__ import annotations

import os
import statistics

from toolkit.proc.maps import read_smaps
from toolkit.proc.pagemap import PAGE_SIZE, read_kpagecount, read_pagemap
from toolkit.records import LibraryWrite, TextSharing


VERSYM_HIDDEN = 0x8000  # a non-default version (name@VER, not name@@VER): dlsym does not find it


def data_symbol(path: str) -> str:
    """A global variable of the library to write, one that dlsym finds: libc's optind, else the first
    exported object in .data, else in .bss (libm's signgam). Hidden compat versions are passed over:
    libm's first object in .data is _LIB_VERSION, which dlsym does not find."""
    if os.path.basename(path).startswith("libc."):
        return "optind"
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as f:
        elf = ELFFile(f)
        dynsym = elf.get_section_by_name(".dynsym")
        if dynsym is None:
            return ""
        versym = elf.get_section_by_name(".gnu.version")
        exported = []
        for i, sym in enumerate(dynsym.iter_symbols()):
            if (sym["st_info"]["type"] != "STT_OBJECT" or sym["st_shndx"] == "SHN_UNDEF" or sym["st_size"] < 1
                    or sym["st_info"]["bind"] not in ("STB_GLOBAL", "STB_WEAK")
                    or sym["st_other"]["visibility"] not in ("STV_DEFAULT", "STV_PROTECTED")):
                continue
            if versym is not None:
                ndx = versym.get_symbol(i).entry["ndx"]
                if ndx == "VER_NDX_LOCAL" or (isinstance(ndx, int) and ndx & VERSYM_HIDDEN):
                    continue
            exported.append(sym)
        for name in (".data", ".bss"):
            sec = elf.get_section_by_name(name)
            if sec is None:
                continue
            lo, hi = sec["sh_addr"], sec["sh_addr"] + sec["sh_size"]
            found = next((sym.name for sym in exported if lo <= sym["st_value"] < hi), None)
            if found:
                return found
    return ""


def _private_dirty(pid, lo, hi) -> int:
    return sum(e.get("Private_Dirty", 0) for e in read_smaps(pid) if lo <= e.mapping.start and e.mapping.end <= hi)


def global_write(peer_a, peer_b, region: str, path: str, data_file_a, privileged: bool) -> LibraryWrite:
    """Peer A changes a global of the library and B reads it; then A writes a page of the data
    segment that is still the page cache's (written back unchanged) and we watch it become A's copy."""
    symbol = data_symbol(path)
    note = []
    addr_a = addr_b = None
    before = written = seen = 0
    pfn_a = pfn_b = None
    if symbol:
        addr_a = peer_a.call("symbol", region=region, name=symbol)["addr"]
        addr_b = peer_b.call("symbol", region=region, name=symbol)["addr"]
        raw = peer_a.call("peek", addr=addr_a, n=1)["data"]
        before = int(raw, 16)
        written = before ^ 0x5A
        peer_a.call("poke", addr=addr_a, data=f"{written:02x}")
        seen = int(peer_b.call("peek", addr=addr_b, n=1)["data"], 16)
        if privileged:
            pfn_a = read_pagemap(peer_a.pid, addr_a, addr_a + 1).pfns[0]
            pfn_b = read_pagemap(peer_b.pid, addr_b, addr_b + 1).pfns[0]
        peer_a.call("poke", addr=addr_a, data=raw)  # give A its value back
    else:
        note.append("no global variable found in .data to write")

    cow = dict(offset=None, pfn_before=None, pfn_after=None, file_before=None, file_after=None, pd_before=0, pd_after=0)
    for lo, hi in data_file_a[:1]:  # not .bss: its pages were never the page cache's
        # map the untouched pages in by reading: they come from the page cache, unchanged
        peer_a.call("touch", region=region, write=False, addr=lo, length=hi - lo)
        rng = read_pagemap(peer_a.pid, lo, hi)
        candidates = [i for i, (p, f) in enumerate(zip(rng.present, rng.file_or_shared_anon)) if p and f]
        if not candidates:
            note.append("every page of the data segment was already a private copy in the peer (written at start-up)")
            break
        i = candidates[0]
        page = lo + i * PAGE_SIZE
        cow["offset"] = i * PAGE_SIZE
        cow["pd_before"] = _private_dirty(peer_a.pid, lo, hi)
        cow["pfn_before"] = rng.pfns[i]
        cow["file_before"] = True
        byte = peer_a.call("peek", addr=page, n=1)["data"]
        peer_a.call("poke", addr=page, data=byte)  # the same value: only the write matters
        after = read_pagemap(peer_a.pid, page, page + 1)
        cow["pfn_after"] = after.pfns[0]
        cow["file_after"] = after.file_or_shared_anon[0]
        cow["pd_after"] = _private_dirty(peer_a.pid, lo, hi)
    return LibraryWrite(
        library=path, symbol=symbol, address_a=addr_a or 0, value_before=before, value_written=written,
        value_seen_by_b=seen, pfn_a=pfn_a, pfn_b=pfn_b, cow_page_offset=cow["offset"],
        cow_pfn_before=cow["pfn_before"], cow_pfn_after=cow["pfn_after"], cow_file_before=cow["file_before"],
        cow_file_after=cow["file_after"], private_dirty_before=cow["pd_before"],
        private_dirty_after=cow["pd_after"], note="; ".join(note),
    )


def text_sharing(path: str, text_by_pid: dict, data_start_by_pid: dict, privileged: bool,
                 pagemaps: dict) -> TextSharing:
    """Are a library's code pages one physical copy in every peer? And where does each peer load it?
    pagemaps: {pid: [PageRange]} of the text ranges, read once by the caller; data_start_by_pid: where each
    peer has the data segment (dso.data_start)."""
    pfn_lists = []
    for pid in text_by_pid:
        pfns = []
        for rng in pagemaps[pid]:
            pfns += rng.pfns
        pfn_lists.append(pfns)
    pages = len(pfn_lists[0]) if pfn_lists else 0
    same = kmin = kmed = None
    if privileged and pfn_lists:
        same = all(p == pfn_lists[0] for p in pfn_lists[1:]) and None not in pfn_lists[0]
        counts = read_kpagecount(pfn_lists[0])
        values = [counts[p] for p in pfn_lists[0] if p is not None]
        if values:
            kmin, kmed = min(values), int(statistics.median(values))
    loads = tuple(ranges[0][0] - ranges[0][2] for ranges in text_by_pid.values())
    dist = tuple(data_start_by_pid[pid] - text_by_pid[pid][0][0] for pid in text_by_pid
                 if data_start_by_pid.get(pid) is not None)
    return TextSharing(path, pages, same, kmin, kmed, loads, dist)
