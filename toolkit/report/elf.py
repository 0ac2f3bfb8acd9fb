"""Render ELF views: readelf -lW's columns, the sharing fate of each LOAD, the live join."""
from __future__ import annotations

from toolkit.units import human_bytes


def elf_to_json(info) -> dict:
    d = {
        "path": info.path, "elf_class": info.elf_class, "endianness": info.endianness, "machine": info.machine,
        "type": info.type, "pie": info.pie, "entry": info.entry, "layout": info.layout,
        "textrel": info.textrel, "relro": info.relro, "bind_now": info.bind_now, "pic": info.pic,
        "interpreter": info.interpreter,
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


def private_estimate(info, page=4096):
    """Bytes each process pays privately for this object: pages its relocations dirty (a floor);
    None where the relocations could not be read (a truncated file)."""
    pages = [s.reloc_pages for s in info.loads()]
    return None if None in pages else sum(pages) * page


UNKNOWN = "unknown: the dynamic section lies past the end of the (truncated) file"


def _fmt_row(s, is64):
    if is64:
        return (f"  {s.type:<14} 0x{s.offset:06x} 0x{s.vaddr:016x} 0x{s.paddr:016x} 0x{s.filesz:06x} "
                f"0x{s.memsz:06x} {s.flags:<3} 0x{s.align:x}")
    return (f"  {s.type:<14} 0x{s.offset:06x} 0x{s.vaddr:08x} 0x{s.paddr:08x} 0x{s.filesz:05x} "
            f"0x{s.memsz:05x} {s.flags:<3} 0x{s.align:x}")


def render_elf(info, out) -> None:
    """One file, in the spirit of readelf -e: header summary, program headers, mapping, sharing."""
    w = out.write
    w(f"{info.path}\n")
    w(f"  ELF{info.elf_class}, {info.endianness}-endian, {info.machine}, {info.type_description}"
      f"{', PIE' if info.pie else ''}\n")
    w(f"  Entry point 0x{info.entry:x}; {len(info.segments)} program headers at offset {info.phoff}\n")
    if info.interpreter:
        w(f"  Interpreter: {info.interpreter}\n")
    w("\nProgram Headers:\n")
    if info.elf_class == 64:
        w("  Type           Offset   VirtAddr           PhysAddr           FileSiz  MemSiz   Flg Align\n")
    else:
        w("  Type           Offset   VirtAddr   PhysAddr   FileSiz MemSiz  Flg Align\n")
    for s in info.segments:
        w(_fmt_row(s, info.elf_class == 64) + "\n")
    w("\n Section to Segment mapping:\n  Segment Sections...\n")
    for s in info.segments:
        w(f"   {s.index:02d}     {' '.join(s.sections)}\n")
    w(f"\nLayout: {info.layout}\n")
    w("Sharing of each LOAD in a process:\n")
    for s in info.loads():
        rel = (f"  [{s.relocations} dynamic relocations dirty {s.reloc_pages} page(s)]" if s.relocations else "")
        w(f"  {s.index:02d} LOAD {s.flags:<3} {human_bytes(s.memsz):>10}: {s.sharing}{rel}\n")
    for s in info.segments:
        if s.type == "GNU_RELRO":
            w(f"  {s.index:02d} GNU_RELRO {human_bytes(s.memsz):>9}: {s.sharing}\n")
    w("Hazards:\n")
    w("  text relocations: " + (UNKNOWN if info.textrel is None else 'YES: code pages are written at load and not shared'
                                if info.textrel else 'none') + "\n")
    w("  position independent: " + (UNKNOWN if info.pic is None else 'yes' if info.pic else 'NO: ' + (
        'an executable at a fixed address' if info.type == 'EXEC' else 'text relocations')) + "\n")
    w("  RELRO: " + (UNKNOWN if info.relro is None else info.relro + {
        "full": " (BIND_NOW: the GOT is read-only after start-up)",
        "partial": " (lazy binding: .got.plt stays writable)",
        "none": " (no GNU_RELRO: relocated data stays writable)"}[info.relro]) + "\n")
    est = private_estimate(info)
    w("  private memory per process from relocations: "
      + ("unknown (the relocation tables may lie past the end of the file)" if est is None
         else f"at least {human_bytes(est)}") + "\n")
    for n in info.notes:
        w(f"  note: {n}\n")
    w("\n")


def join_to_json(info, joined) -> dict:
    return {"path": joined.path, "pid": joined.pid, "base": joined.base, "privileged": joined.privileged,
            "mappings": [m._asdict() for m in joined.mappings],
            "elf": {"layout": info.layout, "relro": info.relro, "textrel": info.textrel}}


def render_join(info, joined, out) -> None:
    w = out.write
    w(f"{joined.path} in process {joined.pid}, loaded at 0x{joined.base:x}\n")
    w(f"  {'LOAD':<8} {'p_offset':>10} {'mapping':<27} {'perms':5} {'offset':>9} {'Rss':>9} {'Pss':>9} "
      f"{'Sh_Clean':>9} {'Sh_Dirty':>9} {'Pr_Clean':>9} {'Pr_Dirty':>9} {'mapped by':>11}  fate\n")
    for m in joined.mappings:
        k = (f"{m.kpagecount_min}/{m.kpagecount_median}/{m.kpagecount_max}" if m.kpagecount_min is not None
             else ("unavailable" if not joined.privileged else "-"))
        w(f"  {m.segment:02d} {m.load_flags:<5} {m.load_offset:>#10x} {m.start:#x}-{m.end:#x} {m.perms:5} "
          f"{m.map_offset if not m.anonymous else 0:>#9x} {human_bytes(m.rss):>9} {human_bytes(m.pss):>9} "
          f"{human_bytes(m.shared_clean):>9} {human_bytes(m.shared_dirty):>9} {human_bytes(m.private_clean):>9} "
          f"{human_bytes(m.private_dirty):>9} {k:>11}  {m.sharing}\n")
    if not joined.privileged:
        w("  'mapped by' (kpagecount min/median/max) needs root: unavailable\n")
    w("\n")


def render_pic(result, out) -> None:
    w = out.write
    w(f"{result.library} in {len(result.peers)} peers:\n")
    for p in result.peers:
        w(f"  pid {p.pid:>7}: loaded at 0x{p.base:x}, text 0x{p.text_start:x}, data 0x{p.data_start:x}, "
          f"text->data 0x{p.text_to_data:x}\n")
    w(f"  {result.distinct_bases} different load addresses (ASLR); the text->data distance is "
      f"{'the same in every peer: the code reaches its data by relative addressing (PIC)' if result.same_distance else 'NOT the same'}\n")
