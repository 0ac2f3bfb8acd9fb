"""POSIX shared memory: shm_open + ftruncate, mmap(MAP_SHARED), shm_unlink."""
from __future__ import annotations

import errno
import os
import secrets

import posix_ipc

from toolkit.errors import AccessDenied, BadInput, LimitExceeded, NotFound
from toolkit.mechanisms.base import FdBacked, Handle, mode_string, owner_name  # noqa: F401
from toolkit.units import size_words

DEV_SHM = "/dev/shm"
PREFIX = "shmkit-"


def dev_shm_path(name: str) -> str:
    return os.path.join(DEV_SHM, name.lstrip("/"))


def _why_full(err: OSError) -> str:
    """ENOSPC from a tmpfs with bytes to spare: its inodes (nr_inodes) are all in use, which ENOSPC does
    not say."""
    if err.errno != errno.ENOSPC:
        return ""
    try:
        vfs = os.statvfs(DEV_SHM)
    except OSError:
        return ""
    if vfs.f_files and vfs.f_ffree == 0:
        return f": every inode of {DEV_SHM} is in use ({vfs.f_files}, its nr_inodes), with bytes to spare"
    return ""


class Posix(FdBacked):
    name = "posix"
    title = "POSIX"
    named = True

    def new_handle(self, size: int, huge: bool = False) -> Handle:
        if huge:
            raise BadInput("POSIX objects live on tmpfs (/dev/shm): huge pages need a hugetlbfs mount, not shm_open")
        # the pid in the name is how the janitor finds what a killed process left
        return Handle("posix", size, name=f"/{PREFIX}{os.getpid()}-{secrets.token_hex(6)}")

    def check_size(self, size: int, limits) -> None:
        if limits.dev_shm_free is not None and size > limits.dev_shm_free:
            raise LimitExceeded(f"a POSIX object of {size_words(size)} does not fit: {size_words(limits.dev_shm_free)} free on {DEV_SHM}")

    def create(self, handle: Handle, mode: int = 0o600) -> Handle:
        """shm_open(O_CREAT|O_EXCL) + ftruncate; the descriptor stays open on the handle."""
        try:
            shm = posix_ipc.SharedMemory(handle.name, posix_ipc.O_CREX, mode=mode, size=handle.size)
        except posix_ipc.ExistentialError as err:
            raise FileExistsError(errno.EEXIST, f"{handle.name} exists") from err
        except posix_ipc.PermissionsError as err:
            raise AccessDenied(handle.name, f"permission denied creating {handle.name}") from err
        except OSError as err:  # a read-only or missing /dev/shm, a full one: say where
            raise OSError(err.errno, f"cannot create a POSIX object in {DEV_SHM} "
                                     f"(shm_open {handle.name}): {err.strerror}{_why_full(err)}") from err
        self._hold(handle, shm.fd)
        if mode & 0o077:
            os.fchmod(shm.fd, mode)  # shm_open applies the umask; a demo that asks for 0666 means it
        return handle

    def _open_by_name(self, handle: Handle) -> int:
        try:
            return posix_ipc.SharedMemory(handle.name).fd
        except posix_ipc.ExistentialError as err:
            raise NotFound(f"no POSIX shared memory object {handle.name}") from err
        except posix_ipc.PermissionsError as err:
            raise AccessDenied(handle.name, f"permission denied opening {handle.name}") from err

    def mark(self, handle: Handle) -> None:
        """shm_unlink: the name goes at once; the pages stay while a descriptor or mapping holds them."""
        try:
            posix_ipc.unlink_shared_memory(handle.name)
        except posix_ipc.ExistentialError:
            pass
        except OSError:  # a read-only /dev/shm says EROFS even for a name that is not there
            if os.path.lexists(os.path.join(DEV_SHM, handle.name.lstrip("/"))):
                raise
        handle.marked = True

    def leftovers(self, creators, since: float) -> list:
        out = []
        try:
            names = os.listdir(DEV_SHM)
        except OSError:
            return out
        prefixes = tuple(f"{PREFIX}{pid}-" for pid in creators)
        for n in names:
            if not n.startswith(prefixes):
                continue
            try:
                st = os.stat(os.path.join(DEV_SHM, n))
            except OSError:
                continue
            # ours: this uid's, and made (or resized) since the creator started, not a pid's earlier life
            if st.st_uid == os.geteuid() and st.st_ctime >= since - 1:
                out.append(Handle("posix", st.st_size, name="/" + n))
        return out

    def exists(self, handle: Handle) -> bool:
        return os.path.exists(dev_shm_path(handle.name))

    def outlives(self, handle: Handle) -> bool:
        return self.exists(handle)

    def describe(self, handle: Handle) -> tuple:
        if handle.owned_here():
            return super().describe(handle)
        try:
            st = os.stat(dev_shm_path(handle.name))
        except OSError:
            return "?", "?"
        return mode_string(st.st_mode), owner_name(st.st_uid)

    def listed(self, handle: Handle) -> tuple:
        return (DEV_SHM,) if self.exists(handle) else ()

    @staticmethod
    def maps_name(name: str) -> str:
        return dev_shm_path(name)
