"""`shmkit explain`: the classic argument about shared libraries, each claim followed by its measurement."""
from __future__ import annotations

import os

from toolkit.elf.headers import read_elf
from toolkit.measure.compare import run_compare
from toolkit.measure.elfjoin import join_pid
from toolkit.measure.stories import _verdict, protection
from toolkit.mechanisms.dso import Dso, resolve_library
from toolkit.proc.pagemap import kpagecount_readable, pfns_visible_here
from toolkit.records import Step, Story
from toolkit.report.view import escape  # a library's path is anyone's bytes
from toolkit.units import counted, every, human_bytes, human_seconds

NEEDS_ROOT = "physical page numbers (pagemap PFNs, kpagecount) need root"


def explain(library: str | None = None, peers: int = 4, size: int = 16 << 20) -> Story:
    path = resolve_library(library)
    info = read_elf(path)
    privileged = pfns_visible_here() and kpagecount_readable()
    steps = []
    loads = info.loads()
    steps.append(Step(
        "A shared library is a file whose program headers say which parts the loader maps (PT_LOAD)",
        tuple([f"{escape(path)}: {info.layout}"] +
              [f"LOAD {s.flags:<3} offset {s.offset:#x} vaddr {s.vaddr:#x} filesz {s.filesz:#x} memsz {s.memsz:#x}: "
               f"{s.sharing}" for s in loads]), bool(loads)))

    lib = Dso.dlopen(path)
    try:
        (_, joined), = join_pid(os.getpid(), path, privileged)
    finally:
        Dso.dlclose(lib)
    ev = [f"LOAD {m.load_flags:<3} -> {m.perms} {m.start:#x}-{m.end:#x} "
          f"{'(.bss, anonymous)' if m.anonymous else f'file offset {m.map_offset:#x}'}: Rss {human_bytes(m.rss)}, "
          f"Pss {human_bytes(m.pss)}" for m in joined.mappings]
    mapped = {m.segment for m in joined.mappings}
    steps.append(Step(
        "Each PT_LOAD becomes a mapping of the file in /proc/PID/maps, at the page-aligned file offset",
        tuple(ev), mapped == {s.index for s in loads}))

    c = run_compare(size, peers, path, repeat=3)
    t, w = c.text_sharing, c.library_write
    by = {m.mechanism: m for m in c.mechanisms}
    text_fp = by["dso_text"].footprint
    if privileged:
        steps.append(Step(
            f"The code pages are one set of physical pages in {every(peers, 'processes')}",
            (f"{t.pages} code pages: the same PFNs in every peer: {t.same_pfns_in_all_peers}",
             f"Rss summed over the peers {human_bytes(text_fp.rss_sum)}, physical {human_bytes(text_fp.physical_bytes)}",
             f"kpagecount: each code page is mapped by at least {t.kpagecount_min} processes (median {t.kpagecount_median})"),
            bool(t.same_pfns_in_all_peers) and t.kpagecount_min >= peers))
    else:
        steps.append(Step(f"The code pages are one set of physical pages in {every(peers, 'processes')}",
                          (f"Rss summed {human_bytes(text_fp.rss_sum)}, Pss summed {human_bytes(text_fp.pss_sum)}: "
                           "Pss divides shared pages among their users",), None, NEEDS_ROOT))

    prot = protection(path, peers=3)
    steps.append(Step("The hardware refuses writes to code, which is what makes sharing it safe",
                      tuple(e for s in prot.steps for e in s.evidence),
                      None if any(s.holds is None for s in prot.steps) else all(s.holds for s in prot.steps),
                      "; ".join(s.why_not for s in prot.steps if s.why_not)))

    if w.symbol:
        ev = [f"peer A set {w.symbol} from {w.value_before} to {w.value_written}; peer B still reads {w.value_seen_by_b}"]
        if w.pfn_a is not None and w.pfn_b is not None:
            ev.append(f"the page holding it is PFN {w.pfn_a:#x} in A and {w.pfn_b:#x} in B: two copies")
        if w.note:
            ev.append(w.note)
        steps.append(Step("Globals are per process: the data segment is copied on write",
                          tuple(ev), w.value_seen_by_b == w.value_before != w.value_written
                          and (w.pfn_a is None or w.pfn_a != w.pfn_b)))
    else:
        steps.append(Step("Globals are per process", (), None, w.note))

    steps.append(Step(
        "Position independent code lets the same pages sit at different addresses",
        (f"load addresses in {peers} peers: " + ", ".join(f"{a:#x}" for a in t.load_addresses),
         "code-to-data distance: " + ", ".join(f"{d:#x}" for d in t.text_to_data)),
        len(set(t.load_addresses)) == len(t.load_addresses) and len(set(t.text_to_data)) == 1))

    ev = []
    ok = True
    for name in ("sysv", "posix"):
        m = by[name]
        ph = {p.name: p for p in m.setup.phases}
        f = m.footprint
        listed = (f"listed in {', '.join(m.visibility.listed_in)}" if m.visibility.listed_in else
                  "listed nowhere once its creator was gone (kernel.shm_rmid_forced)"
                  if m.visibility.outlives_creator is False else "listed nowhere")
        ev.append(f"{m.title}: asked for by name ({escape(m.visibility.maps_name)}), {listed}, "
                  f"mode {m.visibility.mode}; a peer's write is seen by another: {m.visibility.peer_sees_write}")
        ev.append(f"{m.title}: create {human_seconds(ph['create'].median_s)}, attach {human_seconds(ph['attach'].median_s)}, "
                  f"first touch of {human_bytes(size)} {human_seconds(ph['first_touch'].median_s)} "
                  f"({counted(ph['first_touch'].minor_faults, 'fault')}); "
                  f"Pss summed over {peers} peers {human_bytes(f.pss_sum)}"
                  + (f", physical {human_bytes(f.physical_bytes)}" if f.physical_bytes is not None else ""))
        ok = ok and bool(m.visibility.peer_sees_write) and abs(f.pss_sum - size) <= peers * os.sysconf("SC_PAGE_SIZE")
    steps.append(Step(
        "By contrast, explicit shared memory is asked for, named, writable by every peer, and costs a fault per page",
        tuple(ev), ok))
    return Story("explain", f"Why a shared library is shared memory nobody asked for ({escape(os.path.basename(path))})",
                 tuple(steps), _verdict(steps, "every claim of the argument held on this machine",
                                        "some claims did not hold here"), comparison=c)
