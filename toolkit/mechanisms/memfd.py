"""Reference rows for the benchmark: memfd_create (anonymous file) and anonymous shared mmap."""
from __future__ import annotations

import os

from toolkit import vm
from toolkit.errors import LimitExceeded
from toolkit.mechanisms.base import (
    Attachment,
    FdBacked,
    Handle,
    Mechanism,
    owner_name,
    page_round,
)
from toolkit.units import size_words

MAP_HUGETLB = 0x40000


class Memfd(FdBacked):
    """memfd_create + ftruncate: a tmpfs file with no name; other processes reach it through
    /proc/PID/fd/N (or an fd passed over a socket). It goes with its last descriptor and mapping."""

    name = "memfd"
    title = "memfd"
    supports_huge = True
    reach = "/proc/OWNER/fd/N: the owner's open descriptor (it never had a name)"

    def new_handle(self, size: int, huge: bool = False) -> Handle:
        return Handle("memfd", size, huge=huge)

    def create(self, handle: Handle, mode: int = 0o600) -> Handle:
        flags = os.MFD_CLOEXEC | (os.MFD_HUGETLB if handle.huge else 0)
        try:
            fd = os.memfd_create("shmkit", flags)
        except OSError as err:
            raise LimitExceeded(f"memfd_create refused: {err.strerror}") from err
        try:
            os.ftruncate(fd, handle.size)
        except OSError as err:
            os.close(fd)
            raise LimitExceeded(f"memfd of {size_words(handle.size)} refused: {err.strerror}") from err
        self._hold(handle, fd)
        return handle

    def exists(self, handle: Handle) -> bool:
        return handle.owned_here()

    def outlives(self, handle: Handle) -> bool:
        return False  # nothing names it: it goes with the last descriptor

    def listed(self, handle: Handle) -> tuple:
        return ("/proc/PID/fd only",)


class AnonShared(Mechanism):
    """mmap(MAP_SHARED | MAP_ANONYMOUS): shared only with children made by fork."""

    name = "anon"
    title = "anonymous shared"
    supports_huge = True
    creates_objects = False
    second_process = False
    reach = "only children made by fork inherit it"

    def new_handle(self, size: int, huge: bool = False) -> Handle:
        return Handle("anon", size, huge=huge)

    def create(self, handle: Handle, mode: int = 0o600) -> Handle:
        return handle  # nothing exists apart from the mapping

    def attach(self, handle: Handle) -> Attachment:
        flags = vm.MAP_SHARED | vm.MAP_ANONYMOUS | (MAP_HUGETLB if handle.huge else 0)
        length = page_round(handle.size)
        try:
            addr = vm.mmap(length, vm.PROT_READ | vm.PROT_WRITE, flags)
        except OSError as err:
            raise LimitExceeded(f"anonymous shared mapping of {size_words(handle.size)} refused: {err.strerror}") from err
        return Attachment(handle, addr, length)

    def _detach(self, att: Attachment) -> None:
        vm.munmap(att.addr, att.length)

    def exists(self, handle: Handle) -> bool:
        return False

    def describe(self, handle: Handle) -> tuple:
        return "-", owner_name(os.getuid())

    def listed(self, handle: Handle) -> tuple:
        return ("/proc/PID/maps only",)
