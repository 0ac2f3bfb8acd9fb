"""Reference rows for the benchmark: memfd_create (anonymous file) and anonymous shared mmap."""
from __future__ import annotations

import errno
import os
import stat

from toolkit import vm
from toolkit.errors import AccessDenied, LimitExceeded, NotFound
from toolkit.mechanisms.base import Attachment, Handle, Mechanism, mode_string, owner_name, page_round

MAP_HUGETLB = 0x40000



class Memfd(Mechanism):
    """memfd_create + ftruncate: a tmpfs file with no name; other processes reach it through
    /proc/PID/fd/N (or an fd passed over a socket)."""

    name = "memfd"
    title = "memfd"
    supports_huge = True

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
            raise LimitExceeded(f"memfd of {handle.size} bytes refused: {err.strerror}") from err
        handle.fd = fd
        handle.path = f"/proc/{os.getpid()}/fd/{fd}"
        return handle

    def attach(self, handle: Handle) -> Attachment:
        own = handle.path == f"/proc/{os.getpid()}/fd/{handle.fd}"
        fd = handle.fd
        if not own:
            try:
                fd = os.open(handle.path, os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError as err:
                raise NotFound(f"no memfd at {handle.path}") from err
            except PermissionError as err:
                raise AccessDenied(handle.path, f"permission denied opening {handle.path}") from err
        try:
            length = page_round(os.fstat(fd).st_size)
            addr = vm.mmap(length, vm.PROT_READ | vm.PROT_WRITE, vm.MAP_SHARED, fd)
        finally:
            if not own:
                os.close(fd)
        return Attachment(handle, addr, length)

    def _detach(self, att: Attachment) -> None:
        vm.munmap(att.addr, att.length)

    def destroy(self, handle: Handle) -> None:
        if handle.fd is not None:
            try:
                os.close(handle.fd)
            except OSError as err:
                if err.errno != errno.EBADF:
                    raise
            handle.fd = None

    def exists(self, handle: Handle) -> bool:
        return handle.fd is not None

    def describe(self, handle: Handle) -> tuple:
        st = os.fstat(handle.fd)
        return mode_string(st.st_mode), owner_name(st.st_uid)

    def listed(self, handle: Handle) -> tuple:
        return ("/proc/PID/fd only",)


class AnonShared(Mechanism):
    """mmap(MAP_SHARED | MAP_ANONYMOUS): shared only with children made by fork."""

    name = "anon"
    title = "anonymous shared"
    supports_huge = True
    creates_objects = False
    second_process = False

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
            raise LimitExceeded(f"anonymous shared mapping of {handle.size} bytes refused: {err.strerror}") from err
        return Attachment(handle, addr, length)

    def _detach(self, att: Attachment) -> None:
        vm.munmap(att.addr, att.length)

    def destroy(self, handle: Handle) -> None:
        return None

    def exists(self, handle: Handle) -> bool:
        return False

    def describe(self, handle: Handle) -> tuple:
        return "-", owner_name(os.getuid())

    def listed(self, handle: Handle) -> tuple:
        return ("/proc/PID/maps only",)
