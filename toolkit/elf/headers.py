"""Read an ELF file's headers, dynamic flags and relocations; say what sharing each PT_LOAD gets."""
from __future__ import annotations

import array
import bisect
import itertools
import mmap
import os
import stat
import struct
import sys

from toolkit.errors import AccessDenied, NotELF, NotFound
from toolkit.records import ElfInfo, Segment

# relocations dirty pages of the size this kernel maps: 4 KiB on x86_64, 4 or 64 KiB on aarch64
RUNTIME_PAGE = os.sysconf("SC_PAGE_SIZE")

# dynamic tags and flags (elf.h)
DT_NULL, DT_RELA, DT_RELASZ, DT_RELAENT, DT_REL, DT_RELSZ, DT_RELENT = 0, 7, 8, 9, 17, 18, 19
DT_PLTRELSZ, DT_PLTREL, DT_JMPREL, DT_TEXTREL, DT_BIND_NOW, DT_FLAGS = 2, 20, 23, 22, 24, 30
DT_RELRSZ, DT_RELR, DT_RELRENT, DT_FLAGS_1 = 35, 36, 37, 0x6FFFFFFB
DF_TEXTREL, DF_BIND_NOW = 0x4, 0x8
DF_1_NOW, DF_1_PIE = 0x1, 0x08000000
PF_X, PF_W, PF_R = 1, 2, 4


def _ptype_name(p_type, describe) -> str:
    if isinstance(p_type, str):
        name = describe(p_type)
        return name
    # numeric: readelf's spelling for unknown types
    if 0x60000000 <= p_type <= 0x6FFFFFFF:
        return f"LOOS+0x{p_type - 0x60000000:x}"
    if 0x70000000 <= p_type <= 0x7FFFFFFF:
        return f"LOPROC+0x{p_type - 0x70000000:x}"
    return f"<unknown>: 0x{p_type:x}"


def _flags(p_flags: int) -> str:
    return ("R" if p_flags & PF_R else " ") + ("W" if p_flags & PF_W else " ") + ("E" if p_flags & PF_X else " ")


_NOT_REGULAR = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _refuse_irregular(path, mode):
    what = next((name for test, name in _NOT_REGULAR if test(mode)), None)
    if what is not None:
        raise NotELF(f"{path}: is {what}, not a regular file: not read")


def read_elf(path: str) -> ElfInfo:
    """Read one file's headers. Anything but a regular file is refused before it is opened (opening a
    FIFO blocks until a writer comes; opening some devices does something); every failure is one
    library error naming the file, so that a batch goes on with the next."""
    try:
        _refuse_irregular(path, os.stat(path).st_mode)
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError as err:
        raise NotFound(f"{path}: no such file") from err
    except PermissionError as err:
        raise AccessDenied(path, f"{path}: permission denied") from err
    except OSError as err:  # not a directory, a loop of links, a name too long
        raise NotELF(f"{path}: {err.strerror or err}") from err
    try:
        st = os.fstat(fd)
        _refuse_irregular(path, st.st_mode)  # replaced between the stat and the open
        size = st.st_size
        head = os.pread(fd, 16, 0)
        if head[:4] != b"\x7fELF":
            raise NotELF(f"{path}: {not_elf(head)}")
        with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as m:
            return _read(path, m, size)
    except (struct.error, IndexError, ValueError, OverflowError) as err:
        # what hostile offsets and counts can do to the unpacking; anything else is a bug of ours and
        # escapes (so that the fuzz test can find it)
        raise NotELF(f"{path}: malformed ELF: {type(err).__name__}: {err}") from err
    except OSError as err:  # an I/O error reading the head, or a file the kernel will not map
        raise NotELF(f"{path}: {err.strerror or err}") from err
    finally:
        os.close(fd)


_OTHER_FORMATS = (
    (b"\x1f\x8b", "gzip-compressed"), (b"\xfd7zXZ\x00", "xz-compressed"), (b"\x28\xb5\x2f\xfd", "zstd-compressed"),
    (b"\xfe\xed\xfa\xce", "a Mach-O file (macOS)"),
    (b"\xfe\xed\xfa\xcf", "a Mach-O file (macOS)"), (b"\xce\xfa\xed\xfe", "a Mach-O file (macOS)"),
    (b"\xcf\xfa\xed\xfe", "a Mach-O file (macOS)"), (b"\xca\xfe\xba\xbe", "a universal Mach-O or Java class file"),
)


def not_elf(head: bytes) -> str:
    """What a file whose first bytes lack the ELF magic is, as far as they tell."""
    if head[:8] in (b"!<arch>\n", b"!<thin>\n"):  # ar's magic: printable, but no linker script
        return "an ar archive, not an ELF file (a static library: its objects are linked into programs, not mapped)"
    if head[:2] == b"#!":  # /usr/bin holds many: `elf /usr/bin/*` must not call them linker scripts
        return "a script (#!), not an ELF file"
    for magic, what in _OTHER_FORMATS:  # what a folder of libraries also holds: compressed, or another OS's
        if head.startswith(magic):
            return f"{what}, not an ELF file"
    if head and all(32 <= c < 127 or c in (9, 10, 13) for c in head):
        return "not an ELF file (text, perhaps a linker script)"
    if head[:2] == b"MZ":  # after the text test: only two letters
        return "a Windows (PE) file, not an ELF file"
    return "not an ELF file"


# Header layouts (elf.h): ELF header after e_ident, program header, section header
_EHDR = {32: "HHIIIIIHHHHHH", 64: "HHIQQQIHHHHHH"}
_PHDR = {32: "IIIIIIII", 64: "IIQQQQQQ"}
_SHDR = {32: "IIIIIIIIII", 64: "IIQQQQIIQQ"}
SHF_ALLOC, SHF_TLS, SHT_NOBITS = 0x2, 0x400, 8
PT_LOAD, PT_DYNAMIC, PT_INTERP, PT_TLS, PT_PHDR, PT_GNU_RELRO = 1, 2, 3, 7, 6, 0x6474E552


def _names():
    """Number -> name tables from pyelftools' enums, and its readelf-style descriptions."""
    global _NAMES
    if _NAMES is None:
        from elftools.elf import enums
        from elftools.elf.descriptions import (
            describe_e_machine,
            describe_e_type,
            describe_p_type,
        )

        rev = lambda d: {v: k for k, v in d.items() if not k.startswith("_")}  # noqa: E731
        ptypes = {None: rev(enums.ENUM_P_TYPE_BASE)}
        for mach, table in (("EM_ARM", enums.ENUM_P_TYPE_ARM), ("EM_AARCH64", enums.ENUM_P_TYPE_AARCH64),
                            ("EM_MIPS", enums.ENUM_P_TYPE_MIPS), ("EM_RISCV", enums.ENUM_P_TYPE_RISCV)):
            ptypes[mach] = rev(table)
        _NAMES = (rev(enums.ENUM_E_MACHINE), rev(enums.ENUM_E_TYPE), ptypes,
                  describe_e_machine, describe_e_type, describe_p_type)
    return _NAMES


_NAMES = None


def _truncated(path, what, size):
    return NotELF(f"{path}: truncated ELF: {what} lies beyond the end of the file ({size} bytes)")


def _read(path, m, size) -> ElfInfo:
    machines, etypes, ptypes, describe_e_machine, describe_e_type, describe_p_type = _names()
    if size < 16:
        raise _truncated(path, "the identification", size)
    cls = {1: 32, 2: 64}.get(m[4])
    if cls is None:
        raise NotELF(f"{path}: bad ELF class byte {m[4]}")
    little = {1: True, 2: False}.get(m[5])
    if little is None:
        raise NotELF(f"{path}: bad ELF data (byte order) byte {m[5]}")
    e = "<" if little else ">"
    ehdr = struct.Struct(e + _EHDR[cls])
    if size < 16 + ehdr.size:
        raise _truncated(path, "the ELF header", size)
    (e_type, e_machine, _ver, e_entry, e_phoff, e_shoff, _e_flags, _ehsize, e_phentsize, e_phnum,
     e_shentsize, e_shnum, e_shstrndx) = ehdr.unpack_from(m, 16)

    sstruct = struct.Struct(e + _SHDR[cls])
    sections, notes = [], []
    if e_shoff and (e_shnum or e_phnum == 0xFFFF or e_shstrndx == 0xFFFF):
        if e_shentsize < sstruct.size or e_shoff + sstruct.size > size:
            notes.append("section headers unreadable: no section to segment mapping")
        else:
            first = sstruct.unpack_from(m, e_shoff)
            shnum = e_shnum or first[5]  # more than 0xff00 sections: the count is in section 0
            if e_phnum == 0xFFFF:
                e_phnum = first[7]
            if e_shstrndx == 0xFFFF:
                e_shstrndx = first[6]
            if e_shoff + shnum * e_shentsize > size:
                notes.append("section header table truncated: no section to segment mapping")
            else:
                # one C loop over the table, and each name cut from one copy of the string table
                # (507 libraries: 40 us a file became 12; bench/elf_speed.py)
                table = m[e_shoff:e_shoff + shnum * e_shentsize]
                raw = (list(sstruct.iter_unpack(table)) if e_shentsize == sstruct.size
                       else [sstruct.unpack_from(table, i * e_shentsize) for i in range(shnum)])
                strtab = b""
                if e_shstrndx < shnum:
                    _n, _t, _f, _a, str_off, str_size = raw[e_shstrndx][:6]
                    strtab = m[str_off:min(size, str_off + str_size)]
                for sh in raw[1:]:
                    end = strtab.find(b"\0", sh[0])
                    name = strtab[sh[0]:end].decode("latin-1") if end >= 0 else ""
                    sections.append((name,) + sh[1:6])  # name, type, flags, addr, offset, size

    pstruct = struct.Struct(e + _PHDR[cls])
    if e_phnum and (e_phentsize < pstruct.size or e_phoff + e_phnum * e_phentsize > size):
        raise _truncated(path, "the program header table", size)
    phdrs = []
    for i in range(e_phnum):
        v = pstruct.unpack_from(m, e_phoff + i * e_phentsize)
        if cls == 64:
            p_type, p_flags, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_align = v
        else:
            p_type, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_flags, p_align = v
        phdrs.append((p_type, p_flags, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_align))

    mach_name = machines.get(e_machine, e_machine)
    ptype_names = ptypes.get(mach_name, ptypes[None])
    truncated = _truncation(phdrs, size, ptype_names, describe_p_type)
    # the verdicts below come from the dynamic section: past the end of the file they are unknown
    dyn_known = all(p[2] + p[5] <= size for p in phdrs if p[0] == PT_DYNAMIC)
    dyn = _dynamic(m, size, phdrs, cls, little) if dyn_known else {}
    flags = dyn.get(DT_FLAGS, 0)
    flags_1 = dyn.get(DT_FLAGS_1, 0)
    textrel = (DT_TEXTREL in dyn or bool(flags & DF_TEXTREL)) if dyn_known else None
    bind_now = (DT_BIND_NOW in dyn or bool(flags & DF_BIND_NOW) or bool(flags_1 & DF_1_NOW)) if dyn_known else None
    has_relro = any(p[0] == PT_GNU_RELRO for p in phdrs)
    relro = "none" if not has_relro else (None if bind_now is None else "full" if bind_now else "partial")
    type_name = etypes.get(e_type, e_type)
    type_short = type_name[3:] if isinstance(type_name, str) and type_name.startswith("ET_") else str(e_type)
    # what the loader maps: a .o's sections and a core dump's copies of memory share nothing as they are
    loadable = type_short in ("EXEC", "DYN")
    if not loadable:
        textrel = bind_now = relro = None
    pie = (type_short == "DYN" and bool(flags_1 & DF_1_PIE)) if dyn_known or type_short != "DYN" else None
    pic = (type_short == "DYN" and not textrel) if textrel is not None or type_short != "DYN" else None
    if not loadable:
        pie = pic = None
    # relocation pages of a truncated file: its tables may lie past the end, so unknown
    relocs = _reloc_offsets(m, size, dyn, phdrs, cls, little) if not truncated and loadable else None

    relro_ranges = [(p[3], p[3] + p[6]) for p in phdrs if p[0] == PT_GNU_RELRO]
    section_index = _SectionIndex(sections)
    segs = []
    for i, (p_type, p_flags, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_align) in enumerate(phdrs):
        kind = _ptype_name(ptype_names.get(p_type, p_type), describe_p_type)
        n_rel = n_pages = 0 if relocs is not None else None
        if p_type == PT_LOAD and relocs:
            n_rel, n_pages = _count_in(relocs, p_vaddr, p_vaddr + p_memsz)
        segs.append(Segment(
            index=i, type=kind, offset=p_offset, vaddr=p_vaddr, paddr=p_paddr, filesz=p_filesz, memsz=p_memsz,
            flags=_flags(p_flags).rstrip(), align=p_align,
            sections=section_index.in_segment(p_type, p_offset, p_vaddr, p_filesz, p_memsz),
            sharing=(describe_sharing(kind, p_flags, p_vaddr, p_filesz, p_memsz, relro_ranges, bool(textrel))
                     if loadable else ""),
            relocations=n_rel, reloc_pages=n_pages,
        ))
    interp = None
    for p in phdrs:
        if p[0] == PT_INTERP and p[2] + p[5] <= size:
            interp = bytes(m[p[2]:p[2] + p[5]]).split(b"\0", 1)[0].decode("latin-1")
    return ElfInfo(
        path=path, elf_class=cls, endianness="little" if little else "big",
        machine=describe_e_machine(mach_name) if isinstance(mach_name, str) else f"<unknown>: 0x{e_machine:x}",
        type=type_short,
        type_description=("DYN (Position-Independent Executable file)" if pie
                          else describe_e_type(type_name) if isinstance(type_name, str) else f"<unknown>: {e_type:x}"),
        pie=pie, entry=e_entry, phoff=e_phoff, segments=tuple(segs), textrel=textrel,
        relro=relro, bind_now=bind_now, pic=pic,
        layout=describe_layout(segs) if loadable else _not_loaded(type_short, segs),
        interpreter=interp, notes=tuple(notes), truncated=truncated, loadable=loadable,
    )


def _not_loaded(type_short, segs) -> str:
    """The layout line of a file the loader does not map."""
    if type_short == "REL":
        return "a relocatable object: the linker makes it part of a library or executable, which is what is mapped"
    if type_short == "CORE":
        loads = sum(1 for s in segs if s.type == "LOAD")
        return (f"a core dump: its {loads} LOAD{'s are copies' if loads != 1 else ' is a copy'} of the dumped "
                f"process's memory, not mapped by the loader")
    return f"type {type_short}: not an executable or shared object, so not mapped by the loader"


def _truncation(phdrs, size, ptype_names, describe_p_type):
    """'LOAD 03 ends at 0x1b4000, the file has 3000 bytes' for the first segment whose file bytes lie
    past the end of the file, or None."""
    past = [(p[0] != PT_LOAD, i, p) for i, p in enumerate(phdrs) if p[5] and p[2] + p[5] > size]
    if not past:
        return None
    _, i, p = min(past)  # a LOAD first: that is what the loader would map
    kind = _ptype_name(ptype_names.get(p[0], p[0]), describe_p_type)
    return f"{kind} {i:02d} ends at {p[2] + p[5]:#x}, the file has {size} bytes"


def _count_in(sorted_offsets, lo, hi):
    """(relocations in [lo, hi), distinct pages they touch): a bisect per touched page, not per entry."""
    i = bisect.bisect_left(sorted_offsets, lo)
    end = bisect.bisect_left(sorted_offsets, hi, i)
    n, pages = end - i, 0
    while i < end:
        pages += 1
        i = bisect.bisect_left(sorted_offsets, (sorted_offsets[i] // RUNTIME_PAGE + 1) * RUNTIME_PAGE, i, end)
    return n, pages


class _SectionIndex:
    """Sections sorted by address and by file offset, so that a segment tests only the sections that lie
    in its range (two bisects) instead of all of them: a section in a segment has its address inside the
    segment (SHF_ALLOC) or its file bytes inside it (the rest). 507 libraries: 122,000 tests became about
    10,000 (bench/elf_speed.py)."""

    def __init__(self, sections):
        self.sections = sections
        self.by_addr = sorted((sec[3], i) for i, sec in enumerate(sections) if sec[2] & SHF_ALLOC)
        self.by_off = sorted((sec[4], i) for i, sec in enumerate(sections) if not sec[2] & SHF_ALLOC)
        self.addrs = [a for a, _ in self.by_addr]
        self.offs = [o for o, _ in self.by_off]

    def in_segment(self, p_type, p_offset, p_vaddr, p_filesz, p_memsz) -> tuple:
        lo = bisect.bisect_left(self.addrs, p_vaddr)
        hi = bisect.bisect_right(self.addrs, p_vaddr + p_memsz)
        found = [i for _a, i in self.by_addr[lo:hi]]
        lo = bisect.bisect_left(self.offs, p_offset)
        hi = bisect.bisect_right(self.offs, p_offset + p_filesz)
        found += [i for _o, i in self.by_off[lo:hi]]
        secs = self.sections
        return tuple(secs[i][0] for i in sorted(found)
                     if _in_segment(p_type, p_offset, p_vaddr, p_filesz, p_memsz, secs[i]))


def _in_segment(p_type, p_offset, p_vaddr, p_filesz, p_memsz, sec) -> bool:
    """binutils' ELF_SECTION_IN_SEGMENT_STRICT, as readelf applies it for the mapping."""
    _name, sh_type, sh_flags, sh_addr, sh_offset, sh_size = sec
    tls = sh_flags & SHF_TLS
    if tls and p_type not in (PT_TLS, PT_GNU_RELRO, PT_LOAD):
        return False
    if not tls and p_type in (PT_TLS, PT_PHDR):
        return False
    # a .tbss takes no room outside the PT_TLS segment (ELF_TBSS_SPECIAL)
    if tls and sh_type == SHT_NOBITS and p_type != PT_TLS:
        return False
    alloc = sh_flags & SHF_ALLOC
    if not alloc and p_type in (PT_LOAD, PT_DYNAMIC, 0x6474E550, PT_GNU_RELRO, 0x6474E551):
        return False
    if alloc:
        if not (sh_addr >= p_vaddr and sh_addr - p_vaddr + sh_size <= p_memsz
                and (p_memsz == 0 or sh_addr - p_vaddr <= p_memsz - 1)):
            return False
    if sh_type == SHT_NOBITS:
        return True
    return (sh_offset >= p_offset and sh_offset - p_offset + sh_size <= p_filesz
            and (p_filesz == 0 or sh_offset - p_offset <= p_filesz - 1))


def describe_layout(segs) -> str:
    loads = [s.flags for s in segs if s.type == "LOAD"]
    if loads == ["R E", "RW"]:
        return "classic: two LOADs (code and read-only data R E, then data RW)"
    if loads == ["R", "R E", "R", "RW"]:
        return "separated code (-z separate-code): four LOADs (R, R E, R, RW), code alone in its own pages"
    if not loads:
        return "no LOAD segments (not mapped by the loader)"
    return f"{len(loads)} LOADs ({', '.join(loads)})"


def describe_sharing(kind, p_flags, vaddr, filesz, memsz, relro_ranges, textrel) -> str:
    """The fate of a segment's pages in a process, in one phrase."""
    if kind == "GNU_RELRO":
        return "RELRO: written by the dynamic linker during relocation, then read-only: private once written"
    if kind != "LOAD":
        return ""
    parts = []
    if p_flags & PF_X:
        parts.append("code with text relocations: written at load, so private in each process" if textrel
                     else "code, shared (the same physical pages in every process)")
    elif not p_flags & PF_W:
        parts.append("read-only data, shared (the same physical pages in every process)"
                     if not textrel else "read-only data; text relocations may write it at load")
    else:
        lo, hi = vaddr, vaddr + memsz
        if any(r_lo < hi and lo < r_hi for r_lo, r_hi in relro_ranges):
            parts.append("starts with RELRO (written during relocation, then read-only: private once written)")
        parts.append("data: private copy on first write, shared with the page cache until then")
        if memsz > filesz:
            parts.append(f".bss: {memsz - filesz} bytes of anonymous zero pages")
    return "; ".join(parts)


def _dynamic(m, size, phdrs, cls, little) -> dict:
    """Dynamic tags from PT_DYNAMIC (what the loader reads), the first value of each, up to DT_NULL."""
    for p in phdrs:
        if p[0] == PT_DYNAMIC:
            lo, n = p[2], p[5]
            if lo >= size:
                return {}
            words = _words(m, lo, min(size, lo + n) - lo, cls // 8, little)
            out = {}
            for i in range(0, len(words) - 1, 2):
                tag = words[i]
                if tag == DT_NULL:
                    break
                out.setdefault(tag, words[i + 1])
            return out
    return {}


def _vaddr_to_offset(phdrs, vaddr):
    for p in phdrs:
        if p[0] == PT_LOAD and p[3] <= vaddr < p[3] + p[5]:
            return vaddr - p[3] + p[2]
    return None


def _words(buf, off: int, n: int, width: int, little: bool) -> array.array:
    """The unsigned words of buf[off:off+n] at C speed, in host order, copied once (libLLVM's 9 MB
    relocation table: 6.5 ms of copies became 2; bench/elf_speed.py)."""
    a = array.array("Q" if width == 8 else "I")
    with memoryview(buf)[off:off + n - n % width] as part:
        a.frombytes(part)
    if little != (sys.byteorder == "little"):
        a.byteswap()
    return a


def _reloc_offsets(m, size, dyn, phdrs, cls, little) -> list:
    """r_offset of every dynamic relocation (REL, RELA, JMPREL, RELR), sorted; each table read in bulk
    and its offset column taken by a strided slice."""
    width = cls // 8
    columns = []

    def table(addr_tag, size_tag, step):
        if addr_tag not in dyn or not dyn.get(size_tag):
            return
        off = _vaddr_to_offset(phdrs, dyn[addr_tag])
        n = dyn[size_tag]
        if off is None or off + n > size:
            return
        words = _words(m, off, n, width, little)
        columns.append(words[0::step] if step else _decode_relr(words, width))

    table(DT_RELA, DT_RELASZ, 3)
    table(DT_REL, DT_RELSZ, 2)
    table(DT_JMPREL, DT_PLTRELSZ, 3 if dyn.get(DT_PLTREL) == DT_RELA else 2)
    table(DT_RELR, DT_RELRSZ, 0)
    return sorted(itertools.chain.from_iterable(columns))


def _decode_relr(words, width):
    """SHT_RELR: an address, then bitmaps for the (8*width - 1) words after it."""
    out = []
    where = 0
    bits = 8 * width - 1
    for w in words:
        if not w & 1:
            out.append(w)
            where = w + width
        else:
            bitmap = w >> 1
            i = 0
            while bitmap:
                if bitmap & 1:
                    out.append(where + i * width)
                bitmap >>= 1
                i += 1
            where += bits * width
    return out


PT_NOTE, NT_GNU_BUILD_ID = 4, 3


def _quick_phdrs(f):
    """(byte order, [(p_type, p_flags, p_offset, p_filesz)]) of an open ELF file, read with struct alone
    (no pyelftools, no mapping): for the quick questions below. None where it is not ELF."""
    head = f.read(64)
    if head[:4] != b"\x7fELF" or len(head) < 64:
        return None
    cls, e = (32 if head[4] == 1 else 64), ("<" if head[5] == 1 else ">")
    if cls == 64:
        phoff, phentsize, phnum = struct.unpack_from(e + "Q", head, 32)[0], *struct.unpack_from(e + "HH", head, 54)
    else:
        phoff, phentsize, phnum = struct.unpack_from(e + "I", head, 28)[0], *struct.unpack_from(e + "HH", head, 42)
    f.seek(phoff)
    table = f.read(phentsize * phnum)
    out = []
    for i in range(phnum):
        v = struct.unpack_from(e + _PHDR[cls], table, i * phentsize)
        out.append((v[0], v[1], v[2], v[5]) if cls == 64 else (v[0], v[6], v[1], v[4]))
    return e, out


def has_code(path: str):
    """Whether the file has an executable PT_LOAD (code a process maps r-xp); None where it cannot tell."""
    try:
        with open(path, "rb") as f:
            found = _quick_phdrs(f)
    except (OSError, struct.error):
        return None
    return None if found is None else any(t == PT_LOAD and flags & PF_X for t, flags, _o, _s in found[1])


def read_build_id(path: str, fs=None):
    """The GNU build-id of an ELF file (hex), from its PT_NOTE segments; None where there is none or the
    file cannot be read. Read through the gateway's host root, so a recorded host works too."""
    if fs is not None:
        path = fs.host_path(path)
    try:
        with open(path, "rb") as f:
            found = _quick_phdrs(f)
            if found is None:
                return None
            e, phdrs = found
            for p_type, _flags, off, size in phdrs:
                if p_type != PT_NOTE or size > 1 << 16:
                    continue
                f.seek(off)
                notes = f.read(size)
                pos = 0
                while pos + 12 <= len(notes):
                    namesz, descsz, ntype = struct.unpack_from(e + "III", notes, pos)
                    name_at = pos + 12
                    desc_at = name_at + (namesz + 3) // 4 * 4
                    if ntype == NT_GNU_BUILD_ID and notes[name_at:name_at + namesz] == b"GNU\0":
                        return notes[desc_at:desc_at + descsz].hex()
                    pos = desc_at + (descsz + 3) // 4 * 4
    except (OSError, struct.error):
        return None
    return None

