"""Hand-written SVG drawings for the HTML hand-outs: small, crisp, text you can select and search, and a
<title>/<desc> on each for screen readers. Every text is escaped; every number comes from a record."""
from __future__ import annotations

import math
from html import escape as _esc

from toolkit.units import counted, human_bytes, human_seconds

FLAG_COLOUR = {"R E": "#4c78a8", "R": "#9aa5b1", "RW": "#f58518", "RWE": "#e45756"}
KIND_COLOUR = {"Rss sum": "#9aa5b1", "Pss sum": "#4c78a8", "physical": "#54a24b"}
MECH_COLOUR = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#b279a2", "#72b7b2")


def esc(x) -> str:
    return _esc(str(x), quote=True)


def svg(width, height, title, desc, body, cls="drawing") -> str:
    # its natural width, shrunk (never enlarged) to fit a narrow screen by the page's CSS
    return (f'<svg class="{cls}" viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" role="img" '
            f'xmlns="http://www.w3.org/2000/svg" preserveAspectRatio="xMinYMin meet">'
            f"<title>{esc(title)}</title><desc>{esc(desc)}</desc>{body}</svg>")


def text(x, y, s, size=12, anchor="start", weight="normal", fill="#222") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" font-weight="{weight}" '
            f'fill="{fill}">{esc(s)}</text>')


def rect(x, y, w, h, fill, stroke="none", title=None, extra="") -> str:
    t = f"<title>{esc(title)}</title>" if title else ""
    return (f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0.5):.1f}" height="{h:.1f}" fill="{fill}" '
            f'stroke="{stroke}" {extra}>{t}</rect>')


# ------------------------------------------------------------------ the ELF file and its mappings


def elf_bar(path, segments, page_size) -> str:
    """The file as a bar of its PT_LOADs (offset, size, flags), RELRO marked; beneath, each as a mapping
    at its page-aligned address (memsz: the .bss tail is anonymous)."""
    loads = [s for s in segments if s.type == "LOAD"]
    relro = [s for s in segments if s.type == "GNU_RELRO"]
    if not loads:
        return ""
    fend = max(s.offset + s.filesz for s in loads)
    vend = max(s.vaddr + s.memsz for s in loads)
    W, left = 900, 110
    fx = lambda off: left + (W - left - 60) * off / max(fend, 1)  # noqa: E731
    vx = lambda va: left + (W - left - 60) * va / max(vend, 1)  # noqa: E731
    body = [text(0, 36, "file", 13, weight="bold"), text(0, 116, "mappings", 13, weight="bold")]
    for s in loads:
        col = FLAG_COLOUR.get(s.flags.replace(" ", "") if s.flags != "R E" else "R E", "#bbb")
        x0, x1 = fx(s.offset), fx(s.offset + s.filesz)
        x1 = max(x1, x0 + 3)  # 11 bytes of code in a 13 KiB file must still be seen
        body.append(rect(x0, 20, x1 - x0, 26, col, "#fff",
                         f"LOAD {s.index:02d} {s.flags}: offset {s.offset:#x}, filesz {s.filesz:#x} ({human_bytes(s.filesz)})"))
        body.append(text((x0 + x1) / 2, 60, f"{s.index:02d} {s.flags}", 11, "middle"))
        m0 = vx(s.vaddr - s.vaddr % page_size)
        m1, mfile = vx(s.vaddr + s.memsz), vx(s.vaddr + s.filesz)
        mfile = max(mfile, m0 + 3)
        m1 = max(m1, mfile)
        body.append(rect(m0, 100, mfile - m0, 26, col, "#fff",
                         f"LOAD {s.index:02d} mapped at vaddr {s.vaddr:#x}: {s.sharing}"))
        if m1 > mfile + 0.5:
            body.append(rect(mfile, 100, m1 - mfile, 26, "#fff", col, f".bss: {s.memsz - s.filesz} bytes of anonymous "
                             "zero pages", 'stroke-dasharray="4 2"'))
        body.append(f'<line x1="{(x0 + x1) / 2:.1f}" y1="47" x2="{(m0 + m1) / 2:.1f}" y2="99" stroke="#888" '
                    'stroke-width="1" marker-end="url(#arrow)"/>')
        all_relro = any(r.vaddr <= s.vaddr and s.vaddr + s.memsz <= r.vaddr + r.memsz for r in relro)
        label = {"R E": "r-xp code", "R": "r--p", "RW": "r--p (RELRO)" if all_relro else "rw-p data"}
        body.append(text((m0 + m1) / 2, 140, label.get(s.flags, s.flags), 11, "middle"))
    for r in relro:
        x0, x1 = vx(r.vaddr), vx(r.vaddr + r.memsz)
        body.append(rect(x0, 96, x1 - x0, 4, "#222", title=f"GNU_RELRO {r.vaddr:#x}+{r.memsz:#x}: read-only after "
                         "relocation"))
        body.append(text(x0, 92, "RELRO", 10))
    defs = ('<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" markerHeight="6" '
            'orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#888"/></marker></defs>')
    legend = "".join(rect(left + i * 150, 152, 12, 12, c) + text(left + i * 150 + 16, 163, lab, 11)
                     for i, (lab, c) in enumerate((("code (R E)", FLAG_COLOUR["R E"]), ("read-only (R)", FLAG_COLOUR["R"]),
                                                   ("data (RW)", FLAG_COLOUR["RW"]))))
    desc = "; ".join(f"LOAD {s.index:02d} {s.flags} offset {s.offset:#x} size {s.filesz:#x}" for s in loads)
    return svg(W, 172, f"{path}: its PT_LOADs in the file and as mappings", desc, defs + "".join(body) + legend, "elf")


# ------------------------------------------------------------------ address spaces


def address_spaces(c) -> str:
    """Each peer's regions at its own addresses: the library's base differs, text-to-data does not."""
    by = {m.mechanism: m for m in c.mechanisms}
    pids = [p.pid for p in by["dso_text"].footprint.per_peer]
    W, rowh = 900, 44
    order = [(k, by[k].title) for k in ("sysv", "posix", "dso_text", "dso_data") if k in by]
    body = [text(0, 16, "peer", 12, weight="bold")]
    for j, (_k, title) in enumerate(order):
        body.append(text(120 + j * 195, 16, title, 12, weight="bold"))
    for i, pid in enumerate(pids):
        y = 28 + i * rowh
        body.append(text(0, y + 20, f"pid {pid}", 12))
        for j, (k, _title) in enumerate(order):
            pp = next((p for p in by[k].footprint.per_peer if p.pid == pid), None)
            if pp is None:
                continue
            col = MECH_COLOUR[j]
            body.append(rect(120 + j * 195, y, 185, 28, col, title=f"{pid}: {k} at {pp.start:#x}-{pp.end:#x}",
                             extra='rx="3" fill-opacity="0.85"'))
            body.append(text(120 + j * 195 + 92, y + 18, f"{pp.start:#x}", 11, "middle", fill="#fff"))
    t = c.text_sharing
    same = t is not None and len(set(t.text_to_data)) == 1
    y = 28 + len(pids) * rowh + 12
    note = (f"library text to data: {t.text_to_data[0]:#x} in every peer; {len(set(t.load_addresses))} different load "
            "addresses" if same else "text to data distance differs between peers") if t else ""
    body.append(text(0, y, note, 12, weight="bold"))
    return svg(W, y + 10, "Each peer's address space", note, "".join(body), "aspace")


# ------------------------------------------------------------------ pages


def _pfn_colour(pfn, count, top) -> str:
    hue = (pfn * 2654435761) % 360  # the same physical page, the same colour, in every peer
    light = 70 - 35 * min(1.0, math.log1p(count or 1) / math.log1p(max(top, 2)))  # darker: mapped by more
    return f"hsl({hue},65%,{light:.0f}%)"


def page_grid(title, grid, page_size) -> str:
    """One row per peer, one cell per page (sampled), coloured by physical page, shaded by kpagecount."""
    cell, gap, left = 6, 1, 90
    ncol = max(len(row) for _, row in grid.rows)
    W = left + ncol * (cell + gap) + 10
    top = max(grid.kpagecount.values(), default=1)
    body = []
    for i, (pid, row) in enumerate(grid.rows):
        y = 18 + i * (cell + 6)
        body.append(text(0, y + cell, f"pid {pid}", 10))
        for j, pfn in enumerate(row):
            x = left + j * (cell + gap)
            if pfn is None:
                body.append(rect(x, y, cell, cell, "#fff", "#ccc", f"page {j * grid.step}: not present"))
            else:
                n = grid.kpagecount.get(pfn)
                body.append(rect(x, y, cell, cell, _pfn_colour(pfn, n, top),
                                 title=f"page {j * grid.step}: PFN {pfn:#x}, mapped {n} times (kpagecount)"))
    sampled = f", one cell per {grid.step} pages (sampled)" if grid.step > 1 else ""
    heading = f"{title}: {counted(grid.pages, 'page')}{sampled}"
    W = max(W, 7 * len(heading))  # a grid of one page must not cut its own title (11 px bold: under 7 px a letter)
    body.append(text(0, 12, heading, 11, weight="bold"))
    distinct = len({p for _, row in grid.rows for p in row if p is not None})
    desc = (f"{title}: {len(grid.rows)} peers, {grid.pages} pages; the cells show {distinct} distinct physical pages; "
            "the same colour in two rows is the same physical page")
    return svg(W, 24 + len(grid.rows) * (cell + 6), f"{title}: physical pages per peer", desc, "".join(body), "grid")


def shared_private(title, fp) -> str:
    """Where PFNs are hidden: what smaps can say of each peer's view of the region (no invented identity)."""
    W, left = 900, 90
    total = max((p.rss for p in fp.per_peer), default=0) or 1
    body = [text(0, 12, f"{title}: Shared/Private from smaps (PFNs need root)", 11, weight="bold"),
            rect(W - 220, 3, 10, 10, "#4c78a8"), text(W - 206, 12, "shared", 10),
            rect(W - 140, 3, 10, 10, "#f58518"), text(W - 126, 12, "private", 10)]
    for i, p in enumerate(fp.per_peer):
        y = 20 + i * 18
        shared = p.shared_clean + p.shared_dirty
        private = p.private_clean + p.private_dirty
        w = (W - left - 10) / total
        body.append(text(0, y + 11, f"pid {p.pid}", 10))
        body.append(rect(left, y, shared * w, 12, "#4c78a8", title=f"{p.pid}: shared {human_bytes(shared)}"))
        body.append(rect(left + shared * w, y, private * w, 12, "#f58518", title=f"{p.pid}: private {human_bytes(private)}"))
    return svg(W, 26 + len(fp.per_peer) * 18, f"{title}: shared and private bytes per peer",
               "blue: shared (mapped by more than one process), orange: private", "".join(body), "grid")


def cow(w) -> str:
    """The page holding the global in peer A, before and after A writes it; B's page beside."""
    if w is None or w.cow_page_offset is None and w.pfn_a is None:
        return ""
    W = 620
    cells = []
    if w.cow_pfn_before is not None:
        cells = [("before the write (A)", w.cow_pfn_before, "the page cache's page"),
                 ("after the write (A)", w.cow_pfn_after, "A's private copy")]
    elif w.cow_file_before is not None:
        cells = [("before the write (A)", None, "file page" if w.cow_file_before else "anonymous"),
                 ("after the write (A)", None, "file page" if w.cow_file_after else "anonymous: a private copy")]
    if w.pfn_a is not None and w.pfn_b is not None:
        cells += [(f"{w.symbol} in A", w.pfn_a, "after A wrote it"), (f"{w.symbol} in B", w.pfn_b, "B's own page")]
    body = []
    for i, (lab, pfn, what) in enumerate(cells):
        x = 10 + i * 200
        fill = _pfn_colour(pfn, 1, 2) if pfn is not None else ("#9aa5b1" if "file" in what else "#f58518")
        body.append(rect(x, 26, 60, 60, fill, "#333", f"{lab}: {what}" + (f", PFN {pfn:#x}" if pfn is not None else "")))
        body.append(text(x, 18, lab, 11, weight="bold"))
        body.append(text(x + 66, 50, f"PFN {pfn:#x}" if pfn is not None else "PFN: needs root", 11))
        body.append(text(x + 66, 66, what, 10))
    return svg(W, 96, "Copy on write of a library's data page", "; ".join(f"{a}: {c}" for a, _b, c in cells),
               "".join(body), "cow")


# ------------------------------------------------------------------ charts


def _ticks_log(lo, hi, human):
    out = []
    e = math.floor(math.log10(lo))
    while 10 ** e <= hi * 1.0001:
        for m in (1, 2, 5) if hi / lo < 1e4 else (1,):
            v = m * 10 ** e
            if lo <= v <= hi:
                out.append((v, human(v)))
        e += 1
    return out


def _size_label(n) -> str:
    for unit, f in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= f and n % f == 0:
            return f"{n // f}{unit}"
    return human_bytes(n).replace(" ", "")


def bars_log(title, rows, unit="s") -> str:
    """Horizontal bars on a log scale: rows = [(label, value or None, colour)]; seconds in µs/ms."""
    vals = [v for _, v, _ in rows if v]
    if not vals:
        return ""
    lo, hi = 10 ** math.floor(math.log10(min(vals))), 10 ** math.ceil(math.log10(max(vals)))
    W, left, rowh = 900, 190, 20
    x = lambda v: left + (W - left - 70) * (math.log10(v) - math.log10(lo)) / max(math.log10(hi / lo), 1e-9)  # noqa: E731
    human = human_seconds if unit == "s" else human_bytes
    body = [text(0, 12, title, 12, weight="bold")]
    for i, (label, v, col) in enumerate(rows):
        y = 22 + i * rowh
        body.append(text(left - 6, y + 13, label, 11, "end"))
        if v:
            body.append(rect(left, y + 2, x(v) - left, rowh - 6, col, title=f"{label}: {human(v)}"))
            body.append(text(x(v) + 4, y + 13, human(v), 10))
        else:
            body.append(text(left + 4, y + 13, "— (none)", 10, fill="#888"))
    yb = 22 + len(rows) * rowh + 4
    for v, lab in _ticks_log(lo, hi, human):
        body.append(f'<line x1="{x(v):.1f}" y1="22" x2="{x(v):.1f}" y2="{yb:.1f}" stroke="#ddd"/>')
        body.append(text(x(v), yb + 12, lab, 10, "middle", fill="#555"))
    return svg(W, yb + 18, title, "; ".join(f"{a}: {human(b) if b else 'none'}" for a, b, _ in rows),
               "".join(body), "chart")


def bars(title, groups) -> str:
    """Grouped horizontal bars on a linear scale: groups = [(group label, [(series, bytes or None)])]."""
    vals = [v for _, series in groups for _, v in series if v is not None]
    if not vals:
        return ""
    top = max(vals) or 1
    W, left, rowh = 900, 190, 16
    body = [text(0, 12, title, 12, weight="bold")]
    y = 22
    for label, series in groups:
        body.append(text(0, y + 12, label, 12, weight="bold"))
        for name, v in series:
            body.append(text(left - 6, y + 12, name, 11, "end"))
            if v is None:
                body.append(text(left + 4, y + 12, "unavailable (needs root)", 10, fill="#888"))
            else:
                w = (W - left - 110) * v / top
                body.append(rect(left, y + 2, w, rowh - 4, KIND_COLOUR.get(name, "#888"), title=f"{label} {name}: {human_bytes(v)}"))
                body.append(text(left + w + 4, y + 12, human_bytes(v), 10))
            y += rowh
        y += 6
    desc = "; ".join(f"{g} {n}: {human_bytes(v) if v is not None else 'unavailable'}" for g, s in groups for n, v in s)
    return svg(W, y + 4, title, desc, "".join(body), "chart")


def loglog(title, series, xlabel="size", ylabel="median time") -> str:
    """Lines on log-log axes with human tick labels: series = [(name, [(size bytes, seconds)])]."""
    pts = [(x, y) for _, s in series for x, y in s if x and y]
    if not pts:
        return ""
    xlo, xhi = min(p[0] for p in pts), max(p[0] for p in pts)
    ylo = 10 ** math.floor(math.log10(min(p[1] for p in pts)))
    yhi = 10 ** math.ceil(math.log10(max(p[1] for p in pts)))
    # above the plot the title, below it tick labels, the axis label, then the legend: none on another
    W, H, left, top, bottom = 440, 282, 60, 28, 54
    lx = lambda v: left + (W - left - 10) * (math.log2(v / xlo) / max(math.log2(xhi / xlo), 1e-9))  # noqa: E731
    ly = lambda v: top + (H - bottom - top) * (1 - (math.log10(v / ylo) / max(math.log10(yhi / ylo), 1e-9)))  # noqa: E731
    body = [text(0, 12, title, 12, weight="bold")]
    sizes = sorted({p[0] for p in pts})
    for v in sizes:
        body.append(f'<line x1="{lx(v):.1f}" y1="{top}" x2="{lx(v):.1f}" y2="{H - bottom}" stroke="#eee"/>')
        body.append(text(lx(v), H - bottom + 14, _size_label(v), 10, "middle", fill="#555"))
    for v, lab in _ticks_log(ylo, yhi, human_seconds):
        body.append(f'<line x1="{left}" y1="{ly(v):.1f}" x2="{W - 10}" y2="{ly(v):.1f}" stroke="#eee"/>')
        body.append(text(left - 4, ly(v) + 3, lab, 10, "end", fill="#555"))
    for i, (name, s) in enumerate(series):
        s = sorted(p for p in s if p[0] and p[1])
        if not s:
            continue
        col = MECH_COLOUR[i % len(MECH_COLOUR)]
        body.append('<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>'.format(
            col, " ".join(f"{lx(a):.1f},{ly(b):.1f}" for a, b in s)))
        for a, b in s:
            body.append(f'<circle cx="{lx(a):.1f}" cy="{ly(b):.1f}" r="3" fill="{col}"><title>{esc(name)} '
                        f'{esc(_size_label(a))}: {esc(human_seconds(b))}</title></circle>')
        body.append(rect(left + i * 80, H - 16, 10, 10, col) + text(left + i * 80 + 14, H - 7, name, 10))
    body.append(text(W / 2, H - bottom + 26, xlabel, 10, "middle", fill="#555"))
    return svg(W, H, title, f"{ylabel} against {xlabel}, log scales", "".join(body), "loglog")
