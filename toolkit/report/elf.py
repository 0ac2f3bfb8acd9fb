"""Render ELF views: readelf -lW's columns, the sharing fate of each LOAD, the live join."""
from __future__ import annotations

from toolkit.report.view import escape, raw_hex
from toolkit.units import counted, human_bytes


def elf_to_json(info) -> dict:
    d = {
        "path": escape(info.path), "elf_class": info.elf_class, "endianness": info.endianness, "machine": info.machine,
        "type": info.type, "pie": info.pie, "entry": info.entry, "layout": info.layout,
        "textrel": info.textrel, "relro": info.relro, "bind_now": info.bind_now, "pic": info.pic,
        "loadable": info.loadable,
        "interpreter": None if info.interpreter is None else escape(info.interpreter),
        "segments": [{
            "type": s.type, "offset": s.offset, "vaddr": s.vaddr, "paddr": s.paddr, "filesz": s.filesz,
            "memsz": s.memsz, "flags": s.flags, "align": s.align, "sharing": s.sharing,
            "sections": list(s.sections), "relocations": s.relocations, "reloc_pages": s.reloc_pages,
        } for s in info.segments],
        "private_estimate_bytes": private_estimate(info),
        "truncated": info.truncated,
        "notes": list(info.notes),
    }
    return d


def private_estimate(info, page=None):
    """Bytes each process pays privately for this object: pages its relocations dirty (a floor);
    None where the relocations could not be read (a truncated file)."""
    from toolkit.elf.headers import RUNTIME_PAGE

    pages = [s.reloc_pages for s in info.loads()]
    return None if None in pages or not info.loadable else sum(pages) * (page or RUNTIME_PAGE)


UNKNOWN = "unknown: the dynamic section lies past the end of the (truncated) file"


def _align(n: int) -> str:
    """readelf -lW prints the alignment with C's %#lx, which writes 0 as "0", not "0x0" (a GNU_STACK);
    its narrow form (-l alone) writes "0x0"."""
    return f"0x{n:x}" if n else "0"


def _fmt_row(s, is64):
    if is64:
        return (f"  {s.type:<14} 0x{s.offset:06x} 0x{s.vaddr:016x} 0x{s.paddr:016x} 0x{s.filesz:06x} "
                f"0x{s.memsz:06x} {s.flags:<3} {_align(s.align)}")
    return (f"  {s.type:<14} 0x{s.offset:06x} 0x{s.vaddr:08x} 0x{s.paddr:08x} 0x{s.filesz:05x} "
            f"0x{s.memsz:05x} {s.flags:<3} {_align(s.align)}")


def _fmt_row_narrow(s):
    """readelf -l (not -W) for a 64-bit file: two lines per header, 76 columns."""
    return (f"  {s.type:<14} 0x{s.offset:016x} 0x{s.vaddr:016x} 0x{s.paddr:016x}\n"
            f"                 0x{s.filesz:016x} 0x{s.memsz:016x}  {s.flags:<6} 0x{s.align:x}")  # "0x0" here


WIDE = 104  # readelf -lW's program header lines for a 64-bit file


def _fill(text: str, width: int, indent: str, more: str) -> str:
    """Greedy wrap at spaces, words never broken: textwrap.fill's result for this prose, at a fifth of its
    cost (it was half of `elf` over 500 files; bench/elf_speed.py)."""
    if len(indent) + len(text) <= width:
        return indent + text
    lines, line = [], indent
    started = bool(indent.strip())  # a word is on the line (not only the indent): kept, not recomputed per word
    for word in text.split(" "):
        if started and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = more + word
            started = bool(more.strip() or word.strip())
        else:
            line = line + " " + word if started else line + word
            started = started or bool(word.strip())
    lines.append(line)
    return "\n".join(lines)


def render_elf(info, out, width: int | None = None) -> None:
    """One file, in the spirit of readelf -e: header summary, program headers, mapping, sharing. Below
    104 columns the program headers take readelf -l's two-line form, and prose wraps."""
    if not width:
        from toolkit.report.view import terminal_width

        width = terminal_width()
    # one write per file: with PYTHONUNBUFFERED (common in containers) each write is a system call, and
    # 38 of them a file were a fifth of `elf` over 507 libraries (bench/elf_speed.py)
    parts = []
    w = parts.append

    def para(text, indent, more):
        w(_fill(text, max(40, width - 1), indent, more) + "\n")

    # the path, the interpreter and section names are anyone's bytes: escaped, so that none can fake a
    # line or send the terminal a control sequence
    w(f"{escape(info.path)}\n")
    para(f"ELF{info.elf_class}, {info.endianness}-endian, {info.machine}, {info.type_description}"
         f"{', PIE' if info.pie else ''}", "  ", "  ")
    w(f"  Entry point 0x{info.entry:x}; {len(info.segments)} program headers at offset {info.phoff}\n")
    if info.interpreter:
        w(f"  Interpreter: {escape(info.interpreter)}\n")

    def finish():
        for n in info.notes:
            para(f"note: {n}", "  ", "    ")
        w("\n")
        out.write("".join(parts))

    if not info.segments:  # a .o: readelf's words, and nothing to map sections to
        w("\nThere are no program headers in this file.\n\n")
        para(f"Layout: {info.layout}", "", "  ")
        return finish()
    w("\nProgram Headers:\n")
    narrow = info.elf_class == 64 and width < WIDE
    if narrow:
        w("  Type           Offset             VirtAddr           PhysAddr\n"
          "                 FileSiz            MemSiz              Flags  Align\n")
    elif info.elf_class == 64:
        w("  Type           Offset   VirtAddr           PhysAddr           FileSiz  MemSiz   Flg Align\n")
    else:
        w("  Type           Offset   VirtAddr   PhysAddr   FileSiz MemSiz  Flg Align\n")
    for s in info.segments:
        w((_fmt_row_narrow(s) if narrow else _fmt_row(s, info.elf_class == 64)) + "\n")
    w("\n Section to Segment mapping:\n  Segment Sections...\n")
    for s in info.segments:
        para(escape(" ".join(s.sections)), f"   {s.index:02d}     ", " " * 10) if s.sections else w(f"   {s.index:02d}     \n")
    w("\n")
    para(f"Layout: {info.layout}", "", "  ")
    if not info.loadable:
        para("Sharing and hazards: not applicable (the loader maps executables and shared objects only)", "", "  ")
        return finish()
    w("Sharing of each LOAD in a process:\n")
    for s in info.loads():
        rel = (f"  [{counted(s.relocations, 'dynamic relocation')} dirty {counted(s.reloc_pages, 'page')}]"
               if s.relocations else "")
        para(f"{s.index:02d} LOAD {s.flags:<3} {human_bytes(s.memsz):>10}: {s.sharing}{rel}", "  ", " " * 6)
    for s in info.segments:
        if s.type == "GNU_RELRO":
            para(f"{s.index:02d} GNU_RELRO {human_bytes(s.memsz):>9}: {s.sharing}", "  ", " " * 6)
    w("Hazards:\n")
    para("text relocations: " + (UNKNOWN if info.textrel is None else 'YES: code pages are written at load and not '
                                 'shared' if info.textrel else 'none'), "  ", "    ")
    para("position independent: " + (UNKNOWN if info.pic is None else 'yes' if info.pic else 'NO: ' + (
        'an executable at a fixed address' if info.type == 'EXEC' else 'text relocations')), "  ", "    ")
    para("RELRO: " + (UNKNOWN if info.relro is None else info.relro + {
        "full": " (BIND_NOW: the GOT is read-only after start-up)",
        "partial": " (lazy binding: .got.plt stays writable)",
        "none": " (no GNU_RELRO: relocated data stays writable)"}[info.relro]), "  ", "    ")
    est = private_estimate(info)
    para("private memory per process from relocations: "
         + ("unknown (the relocation tables may lie past the end of the file)" if est is None
            else f"at least {human_bytes(est)}"), "  ", "    ")
    finish()


def join_to_json(info, joined) -> dict:
    return {"path": escape(joined.path), "path_hex": raw_hex(joined.path), "pid": joined.pid, "base": joined.base,
            "privileged": joined.privileged, "deleted": joined.deleted, "note": joined.note or None,
            "mappings": [m._asdict() for m in joined.mappings],
            "elf": {"layout": info.layout, "relro": info.relro, "textrel": info.textrel}}


def _kpc(joined):
    def get(m):
        if m.kpagecount_min is not None:
            return f"{m.kpagecount_min}/{m.kpagecount_median}/{m.kpagecount_max}"
        return "unavailable" if not joined.privileged else None
    return get


def join_view(joined):
    from toolkit.report.view import Column, View

    hb = human_bytes
    cols = (
        Column("LOAD", lambda m: f"{m.segment:02d} {m.load_flags}", key="segment"),
        Column("p_offset", lambda m: m.load_offset, hex, right=True, optional=6),
        Column("mapping", lambda m: f"{m.start:#x}-{m.end:#x}", key="range"),
        Column("perms", lambda m: m.perms),
        Column("offset", lambda m: 0 if m.anonymous else m.map_offset, hex, key="map_offset", right=True, optional=5),
        Column("Rss", lambda m: m.rss, hb, key="rss", right=True),
        Column("Pss", lambda m: m.pss, hb, key="pss", right=True),
        Column("Sh_Clean", lambda m: m.shared_clean, hb, key="shared_clean", right=True, optional=4),
        Column("Sh_Dirty", lambda m: m.shared_dirty, hb, key="shared_dirty", right=True, optional=3),
        Column("Pr_Clean", lambda m: m.private_clean, hb, key="private_clean", right=True, optional=2),
        Column("Pr_Dirty", lambda m: m.private_dirty, hb, key="private_dirty", right=True, optional=1),
        Column("mapped by", _kpc(joined), key="kpagecount", right=True, optional=7),
        Column("fate", lambda m: m.sharing, text=True, key="sharing"),
    )
    notes = () if joined.privileged else ("'mapped by' (kpagecount min/median/max) needs root: unavailable",)
    notes += (joined.note,) if joined.note else ()
    title = f"{escape(joined.path)}{' (deleted)' if joined.deleted else ''} in process {joined.pid}, loaded at 0x{joined.base:x}"
    return View(title, cols, list(joined.mappings), notes)


def render_join(info, joined, console) -> None:
    from toolkit.report.view import render

    render(join_view(joined), console)


def render_pic(result, out, width: int | None = None) -> None:
    """`elf --aslr`: each peer's load address, and whether the text-to-data distance is the same; folded at
    the width like the other views (addresses are never cut: lines break at spaces)."""
    if not width:
        from toolkit.report.view import terminal_width

        width = terminal_width()
    width = max(40, width - 1)
    lines = [_fill(f"{escape(result.library)} in {len(result.peers)} peers:", width, "", "  ")]
    for p in result.peers:
        lines.append(_fill(f"pid {p.pid:>7}: loaded at 0x{p.base:x}, text 0x{p.text_start:x}, data "
                           f"0x{p.data_start:x}, text->data 0x{p.text_to_data:x}", width, "  ", "      "))
    same = ("the same in every peer: the code reaches its data by relative addressing (PIC)" if result.same_distance
            else "NOT the same")
    lines.append(_fill(f"{result.distinct_bases} different load addresses (ASLR); the text->data distance is {same}",
                       width, "  ", "  "))
    out.write("\n".join(lines) + "\n")
