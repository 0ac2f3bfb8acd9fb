"""POSIX shared memory: shm_open + ftruncate, mmap(MAP_SHARED), shm_unlink."""
from __future__ import annotations

import errno
import os
import secrets

import posix_ipc

from toolkit import vm
from toolkit.errors import AccessDenied, BadInput, LimitExceeded, NotFound
from toolkit.mechanisms.base import Attachment, Handle, Mechanism, mode_string, owner_name, page_round

DEV_SHM = "/dev/shm"
PREFIX = "shmkit-"


def dev_shm_path(name: str) -> str:
    return os.path.join(DEV_SHM, name.lstrip("/"))


class Posix(Mechanism):
    name = "posix"
    title = "POSIX"

    def new_handle(self, size: int, huge: bool = False) -> Handle:
        if huge:
            raise BadInput("POSIX objects live on tmpfs (/dev/shm): huge pages need a hugetlbfs mount, not shm_open")
        return Handle("posix", size, name=f"/{PREFIX}{os.getpid()}-{secrets.token_hex(6)}")

    def check_size(self, size: int, limits) -> None:
        if limits.dev_shm_free is not None and size > limits.dev_shm_free:
            raise LimitExceeded(f"a POSIX object of {size} bytes does not fit: {limits.dev_shm_free} bytes free on {DEV_SHM}")

    def create(self, handle: Handle, mode: int = 0o600, keep_fd: bool = False):
        """shm_open(O_CREAT|O_EXCL) + ftruncate; returns the open fd when keep_fd, else None."""
        try:
            shm = posix_ipc.SharedMemory(handle.name, posix_ipc.O_CREX, mode=mode, size=handle.size)
        except posix_ipc.ExistentialError as err:
            raise FileExistsError(errno.EEXIST, f"{handle.name} exists") from err
        except posix_ipc.PermissionsError as err:
            raise AccessDenied(handle.name, f"permission denied creating {handle.name}") from err
        if mode & 0o077:
            os.fchmod(shm.fd, mode)  # shm_open applies the umask; a demo that asks for 0666 means it
        if keep_fd:
            return shm.fd
        shm.close_fd()
        return None

    def attach(self, handle: Handle) -> Attachment:
        try:
            shm = posix_ipc.SharedMemory(handle.name)
        except posix_ipc.ExistentialError as err:
            raise NotFound(f"no POSIX shared memory object {handle.name}") from err
        except posix_ipc.PermissionsError as err:
            raise AccessDenied(handle.name, f"permission denied opening {handle.name}") from err
        length = page_round(shm.size)
        try:
            addr = vm.mmap(length, vm.PROT_READ | vm.PROT_WRITE, vm.MAP_SHARED, shm.fd)
        finally:
            shm.close_fd()
        return Attachment(handle, addr, length)

    def _detach(self, att: Attachment) -> None:
        vm.munmap(att.addr, att.length)

    def destroy(self, handle: Handle) -> None:
        try:
            posix_ipc.unlink_shared_memory(handle.name)
        except posix_ipc.ExistentialError:
            pass

    def exists(self, handle: Handle) -> bool:
        return os.path.exists(dev_shm_path(handle.name))

    def describe(self, handle: Handle) -> tuple:
        try:
            st = os.stat(dev_shm_path(handle.name))
        except OSError:
            return "?", "?"
        return mode_string(st.st_mode), owner_name(st.st_uid)

    def listed(self, handle: Handle) -> tuple:
        return (DEV_SHM,) if self.exists(handle) else ()

    def kernel_bytes(self, handle: Handle, owner_fd=None):
        try:
            st = os.fstat(owner_fd) if owner_fd is not None else os.stat(dev_shm_path(handle.name))
        except OSError:
            return None, ""
        return st.st_blocks * 512, "tmpfs blocks allocated"

    @staticmethod
    def maps_name(name: str) -> str:
        return dev_shm_path(name)
