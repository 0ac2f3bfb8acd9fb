"""`shmkit compare` as a table or as JSON."""
from __future__ import annotations

from toolkit.records import PHASES, Comparison, to_dict
from toolkit.report.view import escape, raw_hex
from toolkit.units import counted, every, human_bytes, human_seconds, region_size

NEEDS_ROOT = "unavailable (needs root)"


def to_json(c: Comparison) -> dict:
    mechs = {}
    for r in c.mechanisms:
        v, s, f = r.visibility, r.setup, r.footprint
        mechs[r.mechanism] = {
            "title": r.title,
            "visibility": {
                "peer_sees_write": v.peer_sees_write, "maps_name": v.maps_name, "listed_in": list(v.listed_in),
                "mode": v.mode, "owner": v.owner, "outlives_creator": v.outlives_creator,
                "reached_by": v.reached_by, "note": v.note,
            },
            "setup": {
                # every phase, null where the mechanism has none (System V has no destroy: its last
                # detach frees it; a library has no create, mark or destroy)
                **{f"{name}_s": (s.phase(name).median_s if s.phase(name) else None) for name in PHASES},
                "minor_faults": {p.name: p.minor_faults for p in s.phases},
                "phases": [to_dict(p) for p in s.phases],
                "touch_method": s.touch_method, "note": s.note,
            },
            "footprint": {
                "region_bytes": f.region_bytes, "rss_sum_bytes": f.rss_sum, "pss_sum_bytes": f.pss_sum,
                "physical_bytes": f.physical_bytes, "kernel_bytes": f.kernel_bytes, "kernel_source": f.kernel_source,
                "kpagecount_min": f.kpagecount_min, "kpagecount_max": f.kpagecount_max,
                "per_peer": [dict(to_dict(p), uss=p.uss) for p in f.per_peer],
                "page_grid": None if f.page_grid is None else {
                    "pages": f.page_grid.pages, "step": f.page_grid.step,
                    "rows": [{"pid": pid, "pfns": list(pfns)} for pid, pfns in f.page_grid.rows],
                    "kpagecount": {str(k): v for k, v in f.page_grid.kpagecount.items()}},
            },
        }
    return {
        "size_bytes": c.size_bytes, "peers": c.peers, "privileged": c.privileged, "page_size": c.page_size,
        "kernel": c.kernel, "library": escape(c.library), "library_hex": raw_hex(c.library), "mechanisms": mechs,
        "library_write": to_dict(c.library_write) if c.library_write else None,
        "text_sharing": to_dict(c.text_sharing) if c.text_sharing else None,
        "shmem_before_bytes": c.shmem_before, "shmem_during_bytes": c.shmem_during, "notes": list(c.notes),
        "library_segments": [to_dict(s) for s in c.library_segments],
    }


def _yes(b, none="—"):
    return none if b is None else ("yes" if b else "no")


def _avg(values):
    values = list(values)
    return sum(values) // len(values) if values else None


def rows(c: Comparison) -> list:
    """(group, label, [cell per mechanism]) rows; the table and the markdown hand-out share them."""
    ms = c.mechanisms
    out = []
    g = "visibility"
    out.append((g, "a peer's write seen by another", [
        _yes(m.visibility.peer_sees_write, "— (r-x: cannot write)") for m in ms]))
    out.append((g, "name in /proc/PID/maps", [m.visibility.maps_name for m in ms]))
    # an object gone with its creator (kernel.shm_rmid_forced) could not be looked for: say that, not nothing
    out.append((g, "listed in", [", ".join(m.visibility.listed_in) or
                                 ("— (gone with its creator)" if m.visibility.outlives_creator is False else "—")
                                 for m in ms]))
    out.append((g, "mode, owner", [f"{m.visibility.mode} {m.visibility.owner}" for m in ms]))
    out.append((g, "outlives its creator", [_yes(m.visibility.outlives_creator, "— (page cache)") for m in ms]))
    out.append((g, "peers reach it by", [m.visibility.reached_by for m in ms]))
    g = f"setup (median of {max((p.repeat for m in ms for p in m.setup.phases), default=0)})"
    for phase in PHASES:
        cells = []
        for m in ms:
            if m.mechanism == "dso_data":
                cells.append("(same dlopen)")
                continue
            p = m.setup.phase(phase)
            if p is None or p.median_s is None:
                cells.append("—")
            else:
                cells.append(human_seconds(p.median_s) + (f", {counted(p.minor_faults, 'fault')}" if p.minor_faults else ""))
        out.append((g, phase.replace("_", " "), cells))
    g = f"footprint ({c.peers} peers)"
    out.append((g, "region", [region_size(m.footprint.region_bytes) for m in ms]))
    out.append((g, "Rss per peer", [human_bytes(_avg(p.rss for p in m.footprint.per_peer)) for m in ms]))
    out.append((g, "Pss per peer", [human_bytes(_avg(p.pss for p in m.footprint.per_peer)) for m in ms]))
    out.append((g, "Shared clean/dirty per peer", [
        f"{human_bytes(_avg(p.shared_clean for p in m.footprint.per_peer))} / "
        f"{human_bytes(_avg(p.shared_dirty for p in m.footprint.per_peer))}" for m in ms]))
    out.append((g, "Private clean/dirty per peer", [
        f"{human_bytes(_avg(p.private_clean for p in m.footprint.per_peer))} / "
        f"{human_bytes(_avg(p.private_dirty for p in m.footprint.per_peer))}" for m in ms]))
    out.append((g, "Rss sum", [human_bytes(m.footprint.rss_sum) for m in ms]))
    out.append((g, "Pss sum", [human_bytes(m.footprint.pss_sum) for m in ms]))
    out.append((g, "physical (distinct PFNs)", [
        human_bytes(m.footprint.physical_bytes) if m.footprint.physical_bytes is not None else NEEDS_ROOT for m in ms]))
    out.append((g, "kpagecount min–max", [
        f"{m.footprint.kpagecount_min}–{m.footprint.kpagecount_max}" if m.footprint.kpagecount_min is not None
        else (NEEDS_ROOT if not c.privileged else "—") for m in ms]))
    out.append((g, "kernel's own count", [
        f"{human_bytes(m.footprint.kernel_bytes)} ({m.footprint.kernel_source})" if m.footprint.kernel_bytes is not None
        else "—" for m in ms]))
    return out


def findings(c: Comparison) -> list:
    """Sentences computed from the measurements, under the table."""
    out = []
    w, t = c.library_write, c.text_sharing
    if w and w.symbol:
        line = (f"library data: peer A set {w.symbol} from {w.value_before} to {w.value_written}; "
                f"peer B still reads {w.value_seen_by_b}")
        if w.pfn_a is not None and w.pfn_b is not None:
            line += f"; its page is PFN {w.pfn_a:#x} in A and {w.pfn_b:#x} in B ({'different copies' if w.pfn_a != w.pfn_b else 'the same page'})"
        out.append(line + ".")
    if w and w.cow_page_offset is not None:
        if w.cow_pfn_before is not None and w.cow_pfn_after is not None:
            out.append(f"copy on write: a data page still shared with the page cache (PFN {w.cow_pfn_before:#x}) "
                       f"became PFN {w.cow_pfn_after:#x} after one write; Private_Dirty "
                       f"{human_bytes(w.private_dirty_before)} -> {human_bytes(w.private_dirty_after)}.")
        else:
            out.append(f"copy on write: a page-cache data page became anonymous after one write "
                       f"(file bit {w.cow_file_before} -> {w.cow_file_after}); Private_Dirty "
                       f"{human_bytes(w.private_dirty_before)} -> {human_bytes(w.private_dirty_after)}.")
    elif w and w.note:
        out.append(f"library data: {w.note}.")
    if t:
        if t.same_pfns_in_all_peers is not None:
            out.append(f"library text: {t.pages} pages, {'the same PFNs' if t.same_pfns_in_all_peers else 'NOT the same PFNs'} "
                       f"in {every(c.peers, 'peers')}; each page mapped by {t.kpagecount_min} to "
                       f"{t.kpagecount_median}+ processes system-wide (kpagecount min, median).")
        else:
            out.append(f"library text: {counted(t.pages, 'page')}; whether they are one physical copy needs root "
                       "(PFNs hidden).")
        if t.load_addresses:
            distinct = len(set(t.load_addresses))
            same_dist = len(set(t.text_to_data)) == 1
            out.append(f"position independence: {distinct} different load addresses in {len(t.load_addresses)} peers (ASLR); "
                       f"text-to-data distance {'the same in every peer' if same_dist else 'differs'}"
                       + (f" ({t.text_to_data[0]:#x})" if same_dist and t.text_to_data else "") + ".")
    lib_setup = next((m.setup for m in c.mechanisms if m.mechanism == "dso_text"), None)
    if lib_setup is not None and lib_setup.note:
        out.append(f"library setup: {lib_setup.note}.")
    # the kernel gives whole pages: a 5000-byte region holds two, and the ratios are to what it holds
    pages = -(-c.size_bytes // c.page_size)
    held = pages * c.page_size
    region = "the region" if held == c.size_bytes else f"the region's {counted(pages, 'page')}"
    explicit = 0
    for m in c.mechanisms:
        f = m.footprint
        if m.mechanism in ("sysv", "posix") and f.per_peer:
            explicit += held
            out.append(f"{m.title}: Rss counts {region} {f.rss_sum / held:.1f} times over "
                       f"{len(f.per_peer)} peers; Pss sums to {f.pss_sum / held:.2f} x {region}"
                       + (f"; physical pages: {f.physical_bytes / held:.2f} x." if f.physical_bytes is not None else "."))
    if c.shmem_before is not None and c.shmem_during is not None:
        grew = c.shmem_during - c.shmem_before
        line = (f"/proc/meminfo Shmem: {human_bytes(c.shmem_before)} before, {human_bytes(c.shmem_during)} "
                f"while the regions were held ({'+' if grew >= 0 else '-'}{human_bytes(abs(grew))})")
        if explicit and grew != explicit:
            # NR_SHMEM is summed from per-CPU deltas that are folded in batches (mm/vmstat.c thresholds)
            line += (f"; the regions hold {human_bytes(explicit)}: the kernel adds each CPU's changes to this "
                     "total in batches (up to 125 pages per CPU), so it lags, and other processes change it too")
        out.append(line + ".")
    out.extend(c.notes)
    return out


def view(c: Comparison):
    """The comparison as a view: a row per measured property (group headings as rows of their own),
    a column per mechanism."""
    from toolkit.report.view import Column, View

    table = []
    last = None
    for group, label, cells in rows(c):
        if group != last:
            table.append((group, [""] * len(cells)))
            last = group
        table.append(("  " + label, cells))
    cols = (Column("", lambda r: r[0], text=True, key="property"),) + tuple(
        Column(m.title, lambda r, i=i: r[1][i], text=True, key=m.mechanism) for i, m in enumerate(c.mechanisms))
    return View(f"shmkit compare: {region_size(c.size_bytes)} regions, {c.peers} peers, {escape(c.library)} "
                f"(Linux {c.kernel}{'' if c.privileged else ', unprivileged'})", cols, table)


def render(c: Comparison, console) -> None:
    from toolkit.report.view import render as render_view

    render_view(view(c), console)
    for line in findings(c):
        console.print(("• " + line))
