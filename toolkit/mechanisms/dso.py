"""Implicit sharing: a shared library mapped by the dynamic loader (dlopen via ctypes).

Nobody creates or destroys it; its PT_LOAD segments are private file mappings of the library,
so clean pages are the page cache's pages (shared by everyone) and a written page becomes a copy.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import stat
import sys

from toolkit.errors import AccessDenied, NotELF, NotFound
from toolkit.mechanisms.base import (
    Attachment,
    Handle,
    Mechanism,
    mode_string,
    owner_name,
)
from toolkit.proc.maps import read_maps

_ELF_MAGIC = b"\x7fELF"
_dlclose = ctypes.CDLL(None).dlclose
_dlclose.argtypes = [ctypes.c_void_p]
ET_DYN = 3


def loaded_libc(pid="self") -> str:
    """The path of the C library this process runs on."""
    for m in read_maps(pid):
        base = os.path.basename(m.path)
        if base.startswith("libc.so") or (base.startswith("libc-") and base.endswith(".so")):
            return m.path
    found = ctypes.util.find_library("c")
    if not found:
        raise NotFound("cannot find the C library")
    return resolve_library(found)


def resolve_library(spec: str | None) -> str:
    """A path or a name ('libz.so.1', 'libz', 'z') -> the real path of a shared library (ET_DYN ELF)."""
    if not spec:
        return loaded_libc()
    path = spec
    if os.path.sep not in spec:
        path = _search_dirs(spec) or _search_dirs(f"lib{spec}.so")
        if path is None:
            found = ctypes.util.find_library(spec[3:].split(".so")[0] if spec.startswith("lib") else spec)
            if not found:
                raise NotFound(f"no shared library named {spec!r}")
            path = _search_dirs(found) or found
    try:
        st = os.stat(path)
    except FileNotFoundError as err:
        raise NotFound(f"{path}: no such file") from err
    except OSError as err:  # not a directory, a loop of links, a name too long
        raise NotELF(f"{path}: {err.strerror or err}") from err
    if stat.S_ISDIR(st.st_mode):
        raise NotELF(f"{path}: is a directory, not a shared library")
    if not stat.S_ISREG(st.st_mode):
        # opening a FIFO waits for a writer, and opening a device can act: neither is a library
        raise NotELF(f"{path}: not a regular file, so not a shared library")
    try:
        with open(path, "rb", opener=lambda p, flags: os.open(p, flags | os.O_NONBLOCK)) as f:
            head = f.read(18)
    except PermissionError as err:
        raise AccessDenied(path, f"{path}: permission denied") from err
    except OSError as err:
        raise NotELF(f"{path}: {err.strerror or err}") from err
    if head[:4] != _ELF_MAGIC:
        from toolkit.elf.headers import not_elf

        raise NotELF(f"{path}: {not_elf(head)}, so not a shared library")
    if len(head) < 18:
        raise NotELF(f"{path}: truncated ELF header")
    e_type = int.from_bytes(head[16:18], "little" if head[5] == 1 else "big")
    if e_type != ET_DYN:
        what = {1: ": a relocatable object (.o)", 2: ": an executable at a fixed address (ET_EXEC)",
                4: ": a core dump"}.get(e_type, "")
        raise NotELF(f"{path}: an ELF file but not a shared object (e_type {e_type}{what})")
    from toolkit.elf.headers import has_code

    if has_code(path) is False:  # each view of a library starts from its code: say so before any peer starts
        raise NotELF(f"{path}: a shared object with no code (no executable PT_LOAD): nothing of it is mapped "
                     "r-xp, so there is no code to share; name a library with code")
    return os.path.realpath(path)


def _library_dirs() -> tuple:
    """Where the loader looks by default: this interpreter's multiarch folders (x86_64-linux-gnu,
    aarch64-linux-gnu, ...) first, then the plain ones."""
    arch = getattr(sys.implementation, "_multiarch", None) or f"{os.uname().machine}-linux-gnu"
    return (f"/usr/lib/{arch}", f"/lib/{arch}", "/usr/lib64", "/lib64", "/usr/lib", "/lib")


def _search_dirs(name: str):
    for d in _library_dirs():
        p = os.path.join(d, name)
        if os.path.isfile(p):
            return p
    return None


def _mapping_of(path: str):
    """Whether a mapping maps this library's file (by path, or by inode where the path is a link)."""
    real = os.path.realpath(path)
    try:
        ino = os.stat(real).st_ino
    except OSError:
        ino = None
    base = os.path.basename(real)
    return lambda m: bool(m.path) and (m.path == real or m.path == path or (
        ino is not None and m.inode == ino and os.path.basename(m.path) == base))


def data_start(maps, path: str, data) -> int | None:
    """Where the library's data segment starts in this process: its first writable mapping, else (a RW
    segment that is all RELRO, read-only once relocated) its last mapping of the file."""
    if data:
        return data[0].start
    mine = _mapping_of(path)
    starts = [m.start for m in maps if mine(m)]
    return max(starts) if starts else None


def library_mappings(maps, path: str):
    """Split a library's mappings into (text, data): text is the executable one(s); data the
    writable file mapping(s) plus the anonymous .bss mapping the loader places right after them."""
    mine_of = _mapping_of(path)
    text, data = [], []
    prev = None
    for m in maps:
        mine = mine_of(m)
        if mine and "x" in m.perms:
            text.append(m)
        elif mine and "w" in m.perms:
            data.append(m)
        elif not m.path and m.inode == 0 and prev is not None and prev in data and prev.end == m.start and "w" in m.perms:
            data.append(m)  # .bss beyond the file: anonymous zero pages
        prev = m
    return text, data


class Dso(Mechanism):
    name = "dso"
    title = "shared library"
    creates_objects = False
    reach = "dlopen of the file: the loader maps its PT_LOADs from the page cache"

    def new_handle(self, size: int = 0, path: str | None = None) -> Handle:
        return Handle("dso", size, path=resolve_library(path))

    def create(self, handle: Handle, mode: int = 0o600) -> Handle:
        return handle  # the file exists; nobody creates a library's pages

    @staticmethod
    def dlopen(path: str):
        try:
            return ctypes.CDLL(path)
        except OSError as err:
            raise NotELF(f"{path}: the dynamic loader refused it: {err}") from err

    @staticmethod
    def dlclose(lib) -> None:
        _dlclose(lib._handle)

    def attach(self, handle: Handle) -> Attachment:
        lib = self.dlopen(handle.path)
        maps = read_maps("self")
        text, data = library_mappings(maps, handle.path)
        if not text:
            raise NotFound(f"{handle.path} loaded but no executable mapping of it is in /proc/self/maps")
        att = Attachment(handle, text[0].start, sum(m.size for m in text), lib)
        att.extra = {
            "text": [(m.start, m.end, m.offset) for m in text],
            "data": [(m.start, m.end, m.offset) for m in data],
            "data_file": [(m.start, m.end) for m in data if m.path],
            "data_start": data_start(maps, handle.path, data),
        }
        return att

    def _detach(self, att: Attachment) -> None:
        self.dlclose(att.obj)

    def exists(self, handle: Handle) -> bool:
        return os.path.exists(handle.path)

    def describe(self, handle: Handle) -> tuple:
        st = os.stat(handle.path)
        return mode_string(st.st_mode), owner_name(st.st_uid)

    def listed(self, handle: Handle) -> tuple:
        return ("/proc/PID/maps only",)
