"""What every mechanism offers, in the order of an object's life:

create (the object exists, named) -> attach (mapped here) -> mark (the name is removed: the object now
goes with its last user, whatever is killed) -> detach -> release (the owner's last reference).

`create_marked` does the first three at once: the way shmkit makes everything it measures, so that an
object is unnamed within microseconds of its birth. Peers reach a marked object through the handle
(`shmat` by shmid, or the owner's descriptor at /proc/OWNER/fd/N).
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Optional

from toolkit import vm
from toolkit.units import mode_string, owner_name  # noqa: F401  (re-exported for the mechanisms)


@dataclass
class Handle:
    """How another process finds an object: JSON-able, so it can be sent to a peer."""

    mechanism: str
    size: int
    key: Optional[int] = None  # System V
    shmid: Optional[int] = None  # System V
    name: Optional[str] = None  # POSIX, '/shmkit-PID-...'
    path: Optional[str] = None  # shared library; POSIX, memfd: /proc/OWNER/fd/N
    fd: Optional[int] = None  # POSIX, memfd: the owner's descriptor (valid in the owner only)
    owner: Optional[int] = None  # pid that holds fd
    huge: bool = False  # huge pages (SHM_HUGETLB, MFD_HUGETLB, MAP_HUGETLB)
    marked: bool = False  # IPC_RMID / shm_unlink done

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "Handle":
        return cls(**d)

    def by_name(self) -> "Handle":
        """The same object reached by its name only (a process that may not read the owner's fds)."""
        return replace(self, fd=None, owner=None, path=None)

    def owned_here(self) -> bool:
        return self.fd is not None and self.owner == _PID[0]


# this process's pid, kept right across fork: getpid() is a system call (0.15 µs) in a 3 µs attach
_PID = [os.getpid()]
os.register_at_fork(after_in_child=lambda: _PID.__setitem__(0, os.getpid()))


@dataclass(slots=True)
class Attachment:
    """A region mapped into this process."""

    handle: Handle
    addr: int
    length: int
    obj: Any = field(default=None, repr=False)
    extra: dict = field(default_factory=dict)
    detached: bool = False  # set by detach(), so that a second detach (cleanup after a signal) is a no-op


_PAGE = os.sysconf("SC_PAGE_SIZE")
_RW = vm.PROT_READ | vm.PROT_WRITE


def page_round(n: int) -> int:
    return (n + _PAGE - 1) // _PAGE * _PAGE


class Mechanism:
    """Subclasses fill in the OS calls. Names follow the field: shmget/shmat, shm_open/mmap, dlopen."""

    name = "?"
    title = "?"
    creates_objects = True  # something exists apart from the mapping (a create phase to time)
    named = False  # has a name that outlives every process until removed (a mark phase)
    holds_fd = False  # the owner keeps a descriptor; closing it (release) can free the pages
    supports_huge = False
    second_process = True  # can another, unrelated process attach it?
    reach = ""  # how a peer reaches an object this process made and marked

    def new_handle(self, size: int, huge: bool = False) -> Handle:
        raise NotImplementedError

    def check_size(self, size: int, limits) -> None:
        """Refuse (LimitExceeded) a size that cannot fit, before anything is created."""

    def create(self, handle: Handle, mode: int = 0o600) -> Handle:
        raise NotImplementedError

    def attach(self, handle: Handle) -> Attachment:
        raise NotImplementedError

    def mark(self, handle: Handle) -> None:
        """Remove the name: the object goes once its last user is gone. A no-op without a name."""
        handle.marked = True

    def release(self, handle: Handle) -> None:
        """Drop the owner's own reference (its descriptor). A no-op where there is none."""

    def create_marked(self, handle: Handle, mode: int = 0o600) -> Attachment:
        """Create, attach (untouched) and mark at once; returns the owner's mapping, which keeps the
        object alive until peers hold it. No kill after this returns can leave the object behind."""
        self.create(handle, mode)
        try:
            att = self.attach(handle)
            self.mark(handle)
        except BaseException:
            self.destroy(handle)
            raise
        return att

    def detach(self, att: Attachment) -> None:
        """Unmap; a no-op when already done, so that cleanup after an interruption cannot unmap twice
        (a second munmap of the range could hit a mapping made there since)."""
        if not att.detached:
            # marked first: a signal landing right after the unmap must not lead cleanup to unmap again;
            # a signal landing before it leaves a mapping in a process that is exiting anyway
            att.detached = True
            self._detach(att)

    def _detach(self, att: Attachment) -> None:
        raise NotImplementedError

    def destroy(self, handle: Handle) -> None:
        """Mark and release: idempotent, for cleanup paths (an object already gone is fine). A handle
        marked once is never marked again: its shmid may belong to a newer segment by now."""
        if not handle.marked:
            self.mark(handle)
        self.release(handle)

    def leftovers(self, creators, since: float) -> list:
        """Objects that processes `creators` made at or after `since` (epoch seconds) and did not mark:
        what the janitor removes, and what destroy looks up when a signal cut create short."""
        return []

    def exists(self, handle: Handle) -> bool:
        raise NotImplementedError

    def outlives(self, handle: Handle) -> Optional[bool]:
        """Once its creator has exited (and nothing maps it), is the object still there? None where
        there is no object to outlive anything."""
        return None

    def describe(self, handle: Handle) -> tuple:
        """(mode '0600', owner name) of the object."""
        raise NotImplementedError

    def listed(self, handle: Handle) -> tuple:
        """The places where the object can be found right now."""
        return ()

    def kernel_bytes(self, handle: Handle):
        """The kernel's own count of the object's resident memory: (bytes or None, source)."""
        return None, ""


class FdBacked(Mechanism):
    """A tmpfs file the owner holds open (POSIX object, memfd): peers open the owner's descriptor
    through /proc/OWNER/fd/N, which works after the name is gone; closing the last descriptor and the
    last mapping frees the pages."""

    holds_fd = True
    reach = "/proc/OWNER/fd/N: the owner's open descriptor (the name is unlinked)"

    def _hold(self, handle: Handle, fd: int) -> None:
        handle.fd, handle.owner = fd, _PID[0]
        handle.path = f"/proc/{handle.owner}/fd/{fd}"

    def _open_by_name(self, handle: Handle) -> int:
        from toolkit.errors import NotFound

        raise NotFound(f"no {self.title} object reachable through {handle.path}")

    def attach(self, handle: Handle) -> Attachment:
        if handle.owned_here():
            # the owner knows the size it made: one mmap, as C would (a 4 KiB attach is 2-3 µs)
            length = page_round(handle.size)
            return Attachment(handle, vm.mmap(length, _RW, vm.MAP_SHARED, handle.fd), length)
        from toolkit.errors import AccessDenied, NotFound

        try:
            if handle.path is None:
                raise FileNotFoundError
            fd = os.open(handle.path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            if handle.name is None:
                raise NotFound(f"no {self.title} object at {handle.path}") from None
            fd = self._open_by_name(handle)  # the owner has gone: the name, while it lasts
        except PermissionError as err:
            raise AccessDenied(handle.path, f"permission denied opening {handle.path}") from err
        try:
            length = page_round(os.fstat(fd).st_size)
            addr = vm.mmap(length, _RW, vm.MAP_SHARED, fd)
        finally:
            os.close(fd)
        return Attachment(handle, addr, length)

    def _detach(self, att: Attachment) -> None:
        vm.munmap(att.addr, att.length)

    def release(self, handle: Handle) -> None:
        if handle.owned_here():
            fd, handle.fd = handle.fd, None  # forgotten first: never close a number reused since
            os.close(fd)

    def describe(self, handle: Handle) -> tuple:
        try:
            st = os.fstat(handle.fd) if handle.owned_here() else os.stat(handle.path)
        except (OSError, TypeError):
            return "?", "?"
        return mode_string(st.st_mode), owner_name(st.st_uid)

    def kernel_bytes(self, handle: Handle):
        try:
            st = os.fstat(handle.fd) if handle.owned_here() else os.stat(handle.path)
        except (OSError, TypeError):
            return None, ""
        return st.st_blocks * 512, "tmpfs blocks allocated"
