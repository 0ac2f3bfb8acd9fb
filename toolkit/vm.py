"""Thin ctypes layer over mmap/madvise/prctl, so touches run at C speed with the addresses in hand."""
from __future__ import annotations

import ctypes
import errno
import os
import resource

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

PROT_NONE, PROT_READ, PROT_WRITE, PROT_EXEC = 0, 1, 2, 4
MAP_SHARED, MAP_PRIVATE, MAP_ANONYMOUS = 0x01, 0x02, 0x20
MADV_DONTNEED = 4
MADV_POPULATE_READ = 22  # Linux 5.14
MADV_POPULATE_WRITE = 23  # Linux 5.14
PR_SET_PDEATHSIG = 1
MAP_FAILED = ctypes.c_void_p(-1).value

# No use_errno: ctypes then saves and restores errno around every call, a microsecond each time on
# calls that take three. On failure errno is read straight from libc, before anything else can run.
_libc = ctypes.CDLL(None)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_libc.__errno_location.restype = ctypes.POINTER(ctypes.c_int)
_mmap, _munmap, _madvise = _libc.mmap, _libc.munmap, _libc.madvise


def last_errno() -> int:
    """errno of the libc call just made (call it first thing after the failure)."""
    return _libc.__errno_location()[0]


def _check(ret, what):
    if ret == -1 or (what == "mmap" and ret == MAP_FAILED):
        e = last_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}" + (_address_space_limit() if e == errno.ENOMEM else ""))
    return ret


def _address_space_limit() -> str:
    """ENOMEM from mmap is often not memory but RLIMIT_AS (ulimit -v): say so where it is set."""
    import resource

    soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    if soft == resource.RLIM_INFINITY:
        return ""
    return f" (this process's address space is limited to {soft >> 20} MiB: RLIMIT_AS, ulimit -v)"


def mmap(length: int, prot: int, flags: int, fd: int = -1, offset: int = 0) -> int:
    addr = _mmap(None, length, prot, flags, fd, offset)
    if addr == MAP_FAILED:
        _check(-1, "mmap")
    return addr


def munmap(addr: int, length: int) -> None:
    if _munmap(addr, length):
        _check(-1, "munmap")


def madvise(addr: int, length: int, advice: int) -> None:
    if _madvise(addr, length, advice):
        _check(-1, "madvise")


def mprotect(addr: int, length: int, prot: int) -> None:
    _check(_libc.mprotect(addr, length, prot), "mprotect")


def _probe_madvise(advice: int) -> bool:
    addr = mmap(PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
    try:
        madvise(addr, PAGE_SIZE, advice)
        return True
    except OSError as err:
        if err.errno in (errno.EINVAL, errno.ENOSYS):
            return False
        raise
    finally:
        munmap(addr, PAGE_SIZE)


_HAS = {}


def has_madvise(advice: int) -> bool:
    if advice not in _HAS:
        _HAS[advice] = _probe_madvise(advice)
    return _HAS[advice]


def touch_method() -> str:
    return "MADV_POPULATE_WRITE" if has_madvise(MADV_POPULATE_WRITE) else "memset"


# what SIGBUS on a shared mapping means; MADV_POPULATE_* reports the same case as EFAULT (madvise(2))
NO_PAGE = ("a page of a shared mapping could not be supplied (a full /dev/shm or other tmpfs, huge pages run "
           "out, or a file truncated under the mapping)")


def _populate(addr: int, length: int, advice: int) -> None:
    try:
        madvise(addr, length, advice)
    except OSError as err:
        if err.errno == errno.EFAULT:
            raise OSError(err.errno, f"madvise(MADV_POPULATE): {NO_PAGE}") from None
        raise


def populate_write(addr: int, length: int) -> None:
    """Fault in every page for writing, at C speed: one madvise, else one memset of the region."""
    if has_madvise(MADV_POPULATE_WRITE):
        _populate(addr, length, MADV_POPULATE_WRITE)
    else:
        ctypes.memset(addr, 0, length)


def populate_read(addr: int, length: int) -> None:
    """Fault in every page for reading: one madvise, else one copy of the region."""
    if has_madvise(MADV_POPULATE_READ):
        _populate(addr, length, MADV_POPULATE_READ)
    else:
        ctypes.string_at(addr, length)


def read(addr: int, length: int) -> bytes:
    return ctypes.string_at(addr, length)


def write(addr: int, data: bytes) -> None:
    ctypes.memmove(addr, data, len(data))


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def die_with_parent(sig: int = 9) -> None:
    """Ask the kernel to send sig to us when our parent exits."""
    _check(_libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0), "prctl")


def libc():
    return _libc
