"""Write what the user asked for into the file they named: whole or not at all, and never over a device."""
from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import time

FIFO_WAIT_S = 10.0  # how long a FIFO may go without a reader before we give up on it


def _umask() -> int:
    old = os.umask(0o022)
    os.umask(old)
    return old


def _open_fifo(path: str, wait_s: float = FIFO_WAIT_S):
    """A FIFO (or /dev/stdout that is a pipe) opened for writing. A plain open waits for a reader with
    no end; here the wait is limited, and the error says what was missing."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as err:
            if err.errno != errno.ENXIO:
                raise
            if time.monotonic() >= deadline:
                raise OSError(errno.ENXIO, f"a FIFO, and no process opened it for reading in {wait_s:g} s") from None
            time.sleep(0.02)
            continue
        os.set_blocking(fd, True)  # from here on a slow reader is waited for, as by any writer to a pipe
        return os.fdopen(fd, "wb")


@contextlib.contextmanager
def replacing(path: str, mode: int = 0o644):
    """A binary file to write; on success it takes the place of `path` in one rename, so that a reader
    (a collector, a browser) never sees half of it, and on failure `path` is as it was.

    A path that is not a regular file (/dev/stdout, a FIFO, /dev/full) is written in place: a rename
    would put a plain file where the device node was. A symbolic link is followed, so that it survives.
    A file that exists keeps its mode (and, for root, its owner); a new one gets `mode` less the umask.
    """
    try:
        st = os.stat(path)  # through any link: /dev/stdout is a link to a pipe, which has no folder
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        opened = _open_fifo(path) if stat.S_ISFIFO(st.st_mode) else open(path, "wb")
        with opened as f:
            yield f
        return
    folder, name = os.path.split(os.path.realpath(path))
    tmp = os.path.join(folder, f".{name}.{secrets.token_hex(4)}.part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            if st is not None:
                os.fchmod(f.fileno(), stat.S_IMODE(st.st_mode))
                if os.geteuid() == 0:
                    os.fchown(f.fileno(), st.st_uid, st.st_gid)
            else:
                os.fchmod(f.fileno(), mode & ~_umask())
        os.replace(tmp, os.path.join(folder, name))
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
