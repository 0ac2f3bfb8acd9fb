"""What every mechanism offers: create (owner), attach by handle (any process), detach, destroy."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from toolkit.units import mode_string, owner_name  # noqa: F401  (re-exported for the mechanisms)


@dataclass
class Handle:
    """How another process finds an object: JSON-able, so it can be sent to a peer."""

    mechanism: str
    size: int
    key: Optional[int] = None  # System V
    shmid: Optional[int] = None  # System V
    name: Optional[str] = None  # POSIX, '/shmkit-...'
    path: Optional[str] = None  # shared library; memfd: /proc/PID/fd/N
    fd: Optional[int] = None  # memfd: the owner's descriptor
    huge: bool = False  # huge pages (SHM_HUGETLB, MFD_HUGETLB, MAP_HUGETLB)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "Handle":
        return cls(**d)


@dataclass
class Attachment:
    """A region mapped into this process."""

    handle: Handle
    addr: int
    length: int
    obj: Any = field(default=None, repr=False)
    extra: dict = field(default_factory=dict)
    detached: bool = False  # set by detach(), so that a second detach (cleanup after a signal) is a no-op


_PAGE = os.sysconf("SC_PAGE_SIZE")


def page_round(n: int) -> int:
    return (n + _PAGE - 1) // _PAGE * _PAGE


class Mechanism:
    """Subclasses fill in the OS calls. Names follow the field: shmget/shmat, shm_open/mmap, dlopen."""

    name = "?"
    title = "?"
    creates_objects = True

    def new_handle(self, size: int) -> Handle:
        raise NotImplementedError

    supports_huge = False
    second_process = True  # can another, unrelated process attach it?

    def check_size(self, size: int, limits) -> None:
        """Refuse (LimitExceeded) a size that cannot fit, before anything is created."""

    def create(self, handle: Handle, mode: int = 0o600) -> Handle:
        raise NotImplementedError

    def attach(self, handle: Handle) -> Attachment:
        raise NotImplementedError

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
        """Mark for removal: the object goes once the last process unmaps it."""
        raise NotImplementedError

    def exists(self, handle: Handle) -> bool:
        raise NotImplementedError

    def describe(self, handle: Handle) -> tuple:
        """(mode '0600', owner name) of the object."""
        raise NotImplementedError

    def listed(self, handle: Handle) -> tuple:
        """The places where the object can be found right now."""
        raise NotImplementedError

    def kernel_bytes(self, handle: Handle, owner_fd: Optional[int] = None):
        """The kernel's own count of the object's resident memory: (bytes or None, source)."""
        return None, ""
