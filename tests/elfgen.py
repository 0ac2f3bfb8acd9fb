"""Make small ELF files of any class, byte order and machine, for oracle tests against readelf."""
import struct

PT = {"LOAD": 1, "DYNAMIC": 2, "INTERP": 3, "NOTE": 4, "PHDR": 6, "TLS": 7, "GNU_STACK": 0x6474E551,
      "GNU_RELRO": 0x6474E552}


def make_elf(elf_class=32, little=True, machine=8, e_type=3, segments=None):
    """ELF header, program headers, three sections (.text, .data, .bss) and .shstrtab.

    segments: list of (type, offset, vaddr, filesz, memsz, flags, align); paddr = vaddr.
    """
    e = "<" if little else ">"
    is64 = elf_class == 64
    ehsize, phentsize, shentsize = (64, 56, 64) if is64 else (52, 32, 40)
    segments = segments if segments is not None else [
        ("LOAD", 0, 0, 0x1800, 0x1800, 5, 0x1000),
        ("LOAD", 0x1F00, 0x2F00, 0x200, 0x400, 6, 0x1000),
        ("GNU_STACK", 0, 0, 0, 0, 6, 0x10),
        ("GNU_RELRO", 0x1F00, 0x2F00, 0x100, 0x100, 4, 1),
    ]
    phoff = ehsize if segments else 0  # readelf calls an offset with no headers a corrupt header
    names = b"\0.text\0.data\0.bss\0.shstrtab\0"
    strtab_off = 0x2200
    shoff = (strtab_off + len(names) + 7) & ~7
    sections = [  # name, type, flags, addr, offset, size
        (0, 0, 0, 0, 0, 0),
        (1, 1, 6, 0x1000, 0x1000, 0x500),  # .text  PROGBITS ALLOC|EXEC
        (7, 1, 3, 0x2F00, 0x1F00, 0x200),  # .data  PROGBITS WRITE|ALLOC
        (13, 8, 3, 0x3100, 0x2100, 0x200),  # .bss  NOBITS WRITE|ALLOC
        (18, 3, 0, 0, strtab_off, len(names)),  # .shstrtab
    ]
    ident = b"\x7fELF" + bytes([2 if is64 else 1, 1 if little else 2, 1, 0]) + bytes(8)
    if is64:
        hdr = ident + struct.pack(e + "HHIQQQIHHHHHH", e_type, machine, 1, 0x1000, phoff, shoff, 0, ehsize,
                                  phentsize, len(segments), shentsize, len(sections), 4)
    else:
        hdr = ident + struct.pack(e + "HHIIIIIHHHHHH", e_type, machine, 1, 0x1000, phoff, shoff, 0, ehsize,
                                  phentsize, len(segments), shentsize, len(sections), 4)
    ph = b""
    for t, off, va, fs, ms, fl, al in segments:
        if is64:
            ph += struct.pack(e + "IIQQQQQQ", PT[t], fl, off, va, va, fs, ms, al)
        else:
            ph += struct.pack(e + "IIIIIIII", PT[t], off, va, va, fs, ms, fl, al)
    blob = bytearray(shoff + shentsize * len(sections))
    blob[0:len(hdr)] = hdr
    blob[phoff:phoff + len(ph)] = ph
    blob[strtab_off:strtab_off + len(names)] = names
    for i, (name, typ, flags, addr, off, size) in enumerate(sections):
        if is64:
            sh = struct.pack(e + "IIQQQQIIQQ", name, typ, flags, addr, off, size, 0, 0, 1, 0)
        else:
            sh = struct.pack(e + "IIIIIIIIII", name, typ, flags, addr, off, size, 0, 0, 1, 0)
        blob[shoff + i * shentsize: shoff + (i + 1) * shentsize] = sh
    return bytes(blob)
