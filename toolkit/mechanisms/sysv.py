"""System V shared memory: shmget / shmat / shmdt / shmctl(IPC_RMID)."""
from __future__ import annotations

import ctypes
import errno
import os
import secrets
import shutil
import subprocess

import sysv_ipc

from toolkit import vm
from toolkit.errors import AccessDenied, LimitExceeded, NotFound
from toolkit.mechanisms.base import (
    Attachment,
    Handle,
    Mechanism,
    mode_string,
    owner_name,
    page_round,
)
from toolkit.proc.system import read_limits, read_sysvipc_shm
from toolkit.units import size_words

IPC_CREAT, IPC_EXCL, SHM_HUGETLB = 0o1000, 0o2000, 0o4000

_libc = ctypes.CDLL(None)  # no use_errno: see toolkit.vm
_libc.shmget.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.c_int]
_shmget = _libc.shmget


def random_key() -> int:
    return secrets.randbelow(0x7FFFFFFF - 1) + 1


def find_by_id(shmid: int):
    return next((s for s in read_sysvipc_shm() if s.shmid == shmid), None)


def unmarked_segments(creators, since: float, key: int | None = None) -> list:
    """Segments made by `creators` at or after `since` and not marked for removal (the one lookup of a
    segment whose shmid we may not know: the janitor's sweep and destroy after an interrupted create).
    ctime is the creation time (IPC_RMID, the only shmctl we make, also sets it, but marks)."""
    return [s for s in read_sysvipc_shm()
            if s.cpid in creators and not s.marked_for_removal and s.ctime >= int(since) - 1
            and (key is None or s.key == key)]


class SysV(Mechanism):
    name = "sysv"
    title = "System V"
    named = True
    supports_huge = True
    reach = "shmat by shmid (Linux attaches a segment already marked with IPC_RMID)"

    def new_handle(self, size: int, huge: bool = False) -> Handle:
        return Handle("sysv", size, key=random_key(), huge=huge)

    def check_size(self, size: int, limits) -> None:
        if size > limits.shmmax:
            raise LimitExceeded(f"a System V segment of {size_words(size)} is past shmmax ({size_words(limits.shmmax)})")
        used = sum(-(-s.size // limits.page_size) for s in read_sysvipc_shm())
        if -(-size // limits.page_size) + used > limits.shmall:
            raise LimitExceeded(
                f"a System V segment of {size_words(size)} is past shmall ({limits.shmall} pages, {used} in use)")

    def create(self, handle: Handle, mode: int = 0o600, flags: int = 0) -> Handle:
        # shmget directly: sysv_ipc.SharedMemory(IPC_CREX) also attaches and memsets every byte,
        # which would put a full first touch inside "create".
        if handle.huge:
            flags |= SHM_HUGETLB
        shmid = _shmget(handle.key, handle.size, IPC_CREAT | IPC_EXCL | mode | flags)
        if shmid == -1:
            e = vm.last_errno()
            if e == errno.EEXIST:
                raise FileExistsError(e, f"System V key {handle.key:#x} is taken")
            if e in (errno.EINVAL, errno.ENOSPC, errno.ENOMEM):
                lim = read_limits()
                if e == errno.ENOSPC and len(read_sysvipc_shm()) >= lim.shmmni:  # ENOSPC names no limit
                    raise LimitExceeded(f"System V segment of {size_words(handle.size)} refused: its IPC namespace "
                                        f"holds kernel.shmmni={lim.shmmni} segments already")
                raise LimitExceeded(
                    f"System V segment of {size_words(handle.size)} refused ({os.strerror(e)}): "
                    f"shmmax={size_words(lim.shmmax)}, shmall={lim.shmall} pages, shmmni={lim.shmmni}"
                )
            if e == errno.EPERM:
                raise AccessDenied("shmget", f"shmget refused: {os.strerror(e)}")
            raise OSError(e, f"shmget: {os.strerror(e)}")
        handle.shmid = shmid
        return handle

    def create_fresh(self, size: int, mode: int = 0o600) -> Handle:
        while True:
            try:
                return self.create(self.new_handle(size), mode)
            except FileExistsError:
                continue

    def attach(self, handle: Handle) -> Attachment:
        shmid = handle.shmid
        try:
            # by key: shmget without IPC_CREAT, then shmat; never memsets an existing segment
            shm = sysv_ipc.SharedMemory(handle.key) if shmid is None else sysv_ipc.attach(shmid)
        except sysv_ipc.PermissionsError as err:
            raise AccessDenied(f"System V segment {shmid}", f"permission denied attaching System V segment {shmid}") from err
        except (sysv_ipc.ExistentialError, ValueError) as err:
            raise NotFound(f"no System V segment with {'id ' + str(shmid) if shmid is not None else 'key %#x' % handle.key}") from err
        # the size we created it with saves an IPC_STAT; attaching by key alone asks the kernel
        return Attachment(handle, shm.address, page_round(handle.size or shm.size), shm)

    def _detach(self, att: Attachment) -> None:
        try:
            att.obj.detach()
        except sysv_ipc.NotAttachedError:
            pass  # already detached

    def mark(self, handle: Handle) -> None:
        """IPC_RMID. Without a shmid (a signal cut create short), the segment this process made under
        the handle's key; nothing when there is none. Unattached, the segment goes at once."""
        shmid = handle.shmid
        if shmid is None:
            mine = unmarked_segments({os.getpid()}, 0, handle.key)
            if not mine:
                handle.marked = True
                return
            shmid = mine[0].shmid
        try:
            sysv_ipc.remove_shared_memory(shmid)
        except sysv_ipc.ExistentialError:
            pass
        handle.marked = True

    def leftovers(self, creators, since: float) -> list:
        return [Handle("sysv", s.size, key=s.key, shmid=s.shmid) for s in unmarked_segments(creators, since)]

    def exists(self, handle: Handle) -> bool:
        return find_by_id(handle.shmid) is not None

    def outlives(self, handle: Handle) -> bool:
        seg = find_by_id(handle.shmid)
        return seg is not None and seg.nattch == 0

    def describe(self, handle: Handle) -> tuple:
        seg = find_by_id(handle.shmid)
        if seg is None:
            return "?", "?"
        return mode_string(seg.mode), owner_name(seg.uid)

    def listed(self, handle: Handle) -> tuple:
        where = []
        if find_by_id(handle.shmid) is not None:
            where.append("/proc/sysvipc/shm")
        ipcs = shutil.which("ipcs")
        if ipcs:
            try:  # a witness, not a need: one that does not answer is left out, never waited on for ever
                out = subprocess.run([ipcs, "-m"], capture_output=True, text=True, timeout=10).stdout
            except subprocess.TimeoutExpired:
                out = ""
            if any(line.split()[1:2] == [str(handle.shmid)] for line in out.splitlines()):
                where.append("ipcs -m")
        return tuple(where)

    def kernel_bytes(self, handle: Handle):
        seg = find_by_id(handle.shmid)
        return (seg.rss if seg else None), "/proc/sysvipc/shm rss"

    @staticmethod
    def maps_name(key: int) -> str:
        return f"/SYSV{key:08x}"
