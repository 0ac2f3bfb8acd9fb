"""The one gateway to /proc: every reader opens files through a ProcFS.

Rooted at a configurable path so that parser tests can point it at recorded text.
errno is translated here, and only here, into the library's errors.
"""
from __future__ import annotations

import errno
import os

from toolkit.errors import AccessDenied, NoSuchProcess, NotFound


class ProcFS:
    def __init__(self, root: str = "/proc"):
        self.root = root.rstrip("/") or "/"

    def path(self, *parts) -> str:
        return os.path.join(self.root, *(str(p) for p in parts))

    def _translate(self, err: OSError, rel: tuple):
        pid = rel[0] if rel and str(rel[0]).isdigit() else None
        where = self.path(*rel)
        if isinstance(err, PermissionError) or err.errno == errno.EACCES:
            return AccessDenied(where, f"permission denied reading {where}")
        if pid is not None and (isinstance(err, (FileNotFoundError, ProcessLookupError)) or err.errno == errno.ESRCH):
            return NoSuchProcess(int(pid))
        if isinstance(err, FileNotFoundError):
            return NotFound(f"{where} does not exist")
        return err

    def read_text(self, *rel) -> str:
        try:
            with open(self.path(*rel), encoding="utf-8", errors="surrogateescape") as f:
                return f.read()
        except OSError as err:
            raise self._translate(err, rel) from err

    def read_bytes(self, *rel) -> bytes:
        """The whole file with raw reads: the fast path for the small files read once per process."""
        try:
            fd = os.open(self.path(*rel), os.O_RDONLY)
        except OSError as err:
            raise self._translate(err, rel) from err
        try:
            chunks = []
            while True:
                b = os.read(fd, 65536)
                if not b:
                    return b"".join(chunks)
                chunks.append(b)
        except OSError as err:
            raise self._translate(err, rel) from err
        finally:
            os.close(fd)

    def read_at(self, rel: tuple, runs) -> list:
        """Read several (offset, length) runs from one binary file with one open."""
        try:
            fd = os.open(self.path(*rel), os.O_RDONLY)
        except OSError as err:
            raise self._translate(err, rel) from err
        try:
            return [os.pread(fd, length, offset) for offset, length in runs]
        except OSError as err:
            raise self._translate(err, rel) from err
        finally:
            os.close(fd)

    def exists(self, *rel) -> bool:
        return os.path.exists(self.path(*rel))


_DEFAULT = ProcFS(os.environ.get("SHMKIT_PROCFS", "/proc"))


def default_fs() -> ProcFS:
    return _DEFAULT
