"""Write what the user asked for into the file they named: whole or not at all, and never over a device."""
from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import sys
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
        if is_stdout(path):
            # our own standard output: written through its descriptor, not opened anew (another user's pipe,
            # as under sudo -u, refuses an open of /dev/stdout with EACCES where the descriptor is ours)
            opened = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
        else:
            opened = _open_fifo(path) if stat.S_ISFIFO(st.st_mode) else open(path, "wb")
        with opened as f:
            yield f
        return
    folder, name = os.path.split(os.path.realpath(path))
    tmp = os.path.join(folder, f".{name}.{secrets.token_hex(4)}.part")
    fd, unnamed = _unnamed_file(folder)
    if fd is None:
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
            f.flush()
            if unnamed:  # named only now, for the rename: a kill before this leaves nothing in the folder
                _name(f.fileno(), tmp)
        os.replace(tmp, os.path.join(folder, name))
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def is_stdout(path) -> bool:
    """The file is where stdout goes (/dev/stdout, or the file it is redirected to): a summary line must
    not land in it, its reader going away is a closed pipe like any other, and it is written through the
    descriptor we have."""
    try:
        return os.path.samestat(os.stat(path), os.fstat(sys.stdout.fileno()))
    except (OSError, ValueError):  # no such file; a closed stdout
        return False


def _name(fd: int, where: str) -> None:
    """linkat(2) of an O_TMPFILE through /proc/self/fd with AT_SYMLINK_FOLLOW (AT_EMPTY_PATH would need
    CAP_DAC_READ_SEARCH). os.link takes linkat only when given a folder descriptor: without one it calls
    link(2), which links the /proc symlink itself and fails with EXDEV."""
    procfd = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.link(str(fd), where, src_dir_fd=procfd, follow_symlinks=True)
    finally:
        os.close(procfd)


def _unnamed_file(folder: str):
    """(fd, True) of a file in `folder` with no name yet (O_TMPFILE: a process killed while writing
    leaves no .part behind), or (None, False) where the file system or kernel has none, or /proc is not
    there to name it through."""
    flag = getattr(os, "O_TMPFILE", 0)
    if not flag or not os.path.isdir("/proc/self/fd"):
        return None, False
    try:
        return os.open(folder, flag | os.O_WRONLY | os.O_CLOEXEC, 0o600), True
    except OSError as err:
        if err.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT):
            return None, False  # not here (NFS, some FUSE): a named .part file, removed on any failure
        raise
