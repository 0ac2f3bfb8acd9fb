"""Write what the user asked for into the file they named: whole or not at all, and never over a device."""
from __future__ import annotations

import contextlib
import os
import secrets
import stat


def _umask() -> int:
    old = os.umask(0o022)
    os.umask(old)
    return old


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
        with open(path, "wb") as f:
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
