"""The one gateway to the files the system commands read: /proc, and the host's /sys, /etc, /run and
/dev/shm. Every reader opens files through a ProcFS.

Rooted at a configurable host root so that tests (and `--root`) can point it at a recorded host:
`ProcFS.at_host(DIR)` reads DIR/proc, DIR/etc/systemd, DIR/run, DIR/dev/shm. errno is translated here,
and only here, into the library's errors.
"""
from __future__ import annotations

import errno
import functools
import os

from toolkit.errors import (
    AccessDenied,
    BadInput,
    KernelThread,
    NoSuchProcess,
    NotFound,
    ShmkitError,
    ZombieProcess,
)

PF_KTHREAD = 0x00200000  # include/linux/sched.h: the task is a kernel thread


class ProcFS:
    def __init__(self, root: str = "/proc", host_root: str | None = None):
        self.root = root.rstrip("/") or "/"
        # the host's / : by default the parent of the proc root ("/" for /proc)
        self.host_root = host_root if host_root is not None else (os.path.dirname(self.root) or "/")
        self.recorded = os.path.realpath(self.root) != "/proc"

    @functools.cached_property
    def page_size(self) -> int:
        """The page size of the host this tree is from: a snapshot of a 64 KiB-page machine replayed on a
        4 KiB one must index its pagemap and count its PFNs in 64 KiB pages. Live: sysconf; recorded:
        snapshot.json's, else (a tree recorded without it) this machine's."""
        size = os.sysconf("SC_PAGE_SIZE")
        if self.recorded:
            import json

            try:
                with open(os.path.join(self.host_root, "snapshot.json")) as f:
                    size = int(json.load(f).get("page_size") or size)
            except (OSError, ValueError, TypeError, AttributeError):
                pass
        return size

    @classmethod
    def at_host(cls, root: str) -> "ProcFS":
        """A whole host (live "/" or a recorded tree): its proc is ROOT/proc."""
        return cls(os.path.join(root, "proc"), root)

    def path(self, *parts) -> str:
        # a plain join: the parts are a pid and names below it, never absolute (os.path.join took a
        # third of a scan's Python time over 1000 processes' descriptors)
        return "/".join((self.root, *map(str, parts)))

    def host_path(self, abspath: str) -> str:
        """/etc/systemd/logind.conf -> the file under this host's root."""
        return os.path.join(self.host_root, abspath.lstrip("/"))

    def _translate(self, err: OSError, rel: tuple, where: str | None = None):
        pid = rel[0] if rel and str(rel[0]).isdigit() else None
        where = where or self.path(*rel)
        if isinstance(err, PermissionError) or err.errno == errno.EACCES:
            return AccessDenied(where, f"permission denied reading {where}")
        if self.recorded and rel and isinstance(err, FileNotFoundError) and \
                "/".join(("/proc", *map(str, rel))) in self._recorded_stat().get("denied", ()):
            return AccessDenied(where, f"permission denied reading {where} (when it was recorded)")
        if pid is not None and (isinstance(err, (FileNotFoundError, ProcessLookupError)) or err.errno == errno.ESRCH):
            # ESRCH from a file of a process that still exists: a zombie or a kernel thread (no address
            # space); only a /proc/PID that is really gone means the process is
            if os.path.isdir(self.path(pid)):
                state = self.task_state(pid)
                if state == "zombie":
                    return ZombieProcess(int(pid))
                if state == "kernel thread":
                    return KernelThread(int(pid))
            return NoSuchProcess(int(pid))
        if isinstance(err, FileNotFoundError):
            return NotFound(f"{where} does not exist")
        return err

    def _stat_fields(self, pid) -> list:
        """The fields of /proc/PID/stat after the command name (which may hold spaces and parentheses)."""
        try:
            with open(self.path(pid, "stat"), "rb") as f:
                return f.read().rpartition(b")")[2].split()
        except OSError:
            return []

    def state_letter(self, pid) -> str | None:
        """The kernel's one-letter state (R, S, D, T, t, Z, ...), or None when the process is gone."""
        fields = self._stat_fields(pid)
        return fields[0].decode() if fields else None

    def task_state(self, pid) -> str | None:
        """'zombie', 'kernel thread', 'running' (anything else), or None when the process is gone."""
        fields = self._stat_fields(pid)
        if not fields:
            return None
        if fields[0] in (b"Z", b"X"):
            return "zombie"
        if len(fields) > 6 and _number(fields[6], self.path(pid, "stat")) & PF_KTHREAD:
            return "kernel thread"
        return "running"

    def read_text(self, *rel) -> str:
        try:
            with open(self.path(*rel), encoding="utf-8", errors="surrogateescape") as f:
                return f.read()
        except OSError as err:
            raise self._translate(err, rel) from err

    def read_bytes(self, *rel) -> bytes:
        """The whole file with raw reads: the fast path for the small files read once per process."""
        return self._read_raw(rel, short_is_end=False)

    def read_whole(self, *rel) -> bytes:
        """A file the kernel hands over whole in one read when it fits: a one-record /proc file
        (smaps_rollup, stat, status) or cmdline, whose read fills the buffer as far as there is data. One
        read instead of a read and one more for the end (2000 system calls fewer in a scan of 1000
        processes); a full buffer reads on. Not for maps or smaps, which come a page at a time."""
        return self._read_raw(rel, short_is_end=True)

    def _read_raw(self, rel, short_is_end: bool) -> bytes:
        try:
            fd = os.open(self.path(*rel), os.O_RDONLY)
        except OSError as err:
            raise self._translate(err, rel) from err
        try:
            data = os.read(fd, 65536)
            if short_is_end and len(data) < 65536:
                return data
            chunks = [data]
            while data:
                data = os.read(fd, 65536)
                chunks.append(data)
            return b"".join(chunks)
        except OSError as err:
            raise self._translate(err, rel) from err
        finally:
            os.close(fd)

    def open_fd(self, *rel) -> int:
        """A descriptor on the file, for a reader that keeps it across scans (see reread)."""
        try:
            return os.open(self.path(*rel), os.O_RDONLY)
        except OSError as err:
            raise self._translate(err, rel) from err

    @staticmethod
    def reread(fd, whole: bool = False) -> bytes:
        """The file again from a kept descriptor: a /proc file is generated anew at offset 0. One read,
        enough for a one-record file (smaps_rollup); whole=True reads on to the end (maps). Raw OSError
        (ESRCH once the process has exited) for the caller, who knows what the descriptor was."""
        try:
            data = os.pread(fd, 65536, 0)
        except OSError as err:
            if err.errno != errno.ESPIPE:
                raise
            os.lseek(fd, 0, os.SEEK_SET)  # a file without pread
            data = os.read(fd, 65536)
            return data + b"".join(iter(lambda: os.read(fd, 65536), b"")) if whole else data
        if not whole or not data:
            return data
        chunks, at = [data], len(data)
        while data:
            data = os.pread(fd, 65536, at)
            chunks.append(data)
            at += len(data)
        return b"".join(chunks)

    def read_at(self, rel: tuple, runs) -> list:
        """Read several (offset, length) runs from one binary file with one open. A recorded host keeps
        the parts of pagemap, kpagecount and kpagecgroup that were read, as FILE.runs.json."""
        recorded_runs = (*rel[:-1], f"{rel[-1]}.runs.json")
        if self.recorded and not self.exists(*rel) and self.exists(*recorded_runs):
            cache = self.__dict__.setdefault("_runs_cache", {})
            key = self.path(*recorded_runs)
            try:
                if key not in cache:  # parsed once: the ledger reads a pid's pagemap once per mapping
                    cache[key] = _RecordedRuns(self.read_text(*recorded_runs))
                return cache[key].read(runs)
            except (ValueError, TypeError, KeyError) as err:  # a recording is anyone's file
                raise BadInput(f"{key}: malformed runs of a recording ({type(err).__name__})") from err
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

    def shows_a_host(self) -> bool:
        """A recorded tree (--root, a snapshot) has what every view reads first: who we are."""
        return os.path.isfile(self.path("self", "status"))

    def listdir(self, *rel) -> list:
        try:
            return os.listdir(self.path(*rel))
        except OSError as err:
            raise self._translate(err, rel) from err

    def uid(self, pid) -> int:
        """The owner of a process: the owner of /proc/PID (one stat), or in a recorded tree, whose files
        all belong to whoever unpacked it, the real uid in its status."""
        if self.recorded:
            for line in self.read_text(pid, "status").splitlines():
                if line.startswith("Uid:"):
                    return int(line.split()[1])
        try:
            return os.stat(self.path(pid)).st_uid
        except OSError as err:
            raise self._translate(err, (pid,)) from err

    def namespace(self, pid, kind: str):
        """'ipc:[4026531839]' for /proc/PID/ns/KIND, or None where we may not look."""
        try:
            return os.readlink(self.path(pid, "ns", kind))
        except OSError:
            return None

    def read_in_ipc_namespace(self, pid, rel: str) -> str:
        """A /proc file as a process in PID's IPC namespace sees it (/proc/sysvipc/shm shows the reader's
        namespace): a short-lived `cat` that setns()es there first. Needs CAP_SYS_ADMIN. In a recorded
        tree, the file recorded as proc/PID/ipcns/REL."""
        if self.recorded:
            return self.read_text(pid, "ipcns", *rel.split("/"))
        import ctypes
        import subprocess

        ns_path = self.path(pid, "ns", "ipc")

        def enter():
            fd = os.open(ns_path, os.O_RDONLY)
            if ctypes.CDLL(None, use_errno=True).setns(fd, 0x08000000) != 0:  # CLONE_NEWIPC
                os._exit(3)

        try:
            r = subprocess.run(["cat", os.path.join("/proc", rel)], preexec_fn=enter, capture_output=True, timeout=10)
        except subprocess.TimeoutExpired as err:  # a helper that never answers is given up on, and said
            raise NotFound(f"the reader of {rel} in the IPC namespace of process {pid} did not answer in 10 s") from err
        except OSError as err:  # fork refused (a pids limit), no cat: the namespace stays unread, and said
            raise NotFound(f"no reader could be started for the IPC namespace of process {pid}: "
                           f"{err.strerror or err}") from err
        if r.returncode != 0:
            raise AccessDenied(ns_path, f"cannot enter the IPC namespace of process {pid} (needs CAP_SYS_ADMIN)")
        return r.stdout.decode("utf-8", "surrogateescape")

    def fd_links(self, pid, prefix: str = "") -> list:
        """(fd, link target, stat of the open file) of a process's descriptors whose target starts with
        prefix (all by default; only those are stat'ed); [] where not readable. A recorded host keeps them
        as proc/PID/fd.json."""
        if self.recorded:
            import json

            try:
                return [(d["fd"], d["target"], _RecordedStat(**d["stat"]))
                        for d in json.loads(self.read_text(pid, "fd.json")) if d["target"].startswith(prefix)]
            except (ShmkitError, ValueError):
                return []
        folder = self.path(pid, "fd")
        try:
            names = os.listdir(folder)
        except OSError:
            return []
        return self._links(names, prefix, folder + "/", None)

    def map_file_stat(self, pid, mapping):
        """The stat of the file a mapping maps (/proc/PID/map_files: the kernel opens it for CAP_SYS_ADMIN
        only), or None where it cannot be read: a memfd's or an unlinked file's size, which maps does not
        give. A recorded host keeps them as proc/PID/map_files.json {"START-END": stat}."""
        rng = f"{mapping.start:x}-{mapping.end:x}"
        if self.recorded:
            import json

            cache = self.__dict__.setdefault("_map_files", {})  # one parse per process, not per mapping
            if pid not in cache:
                try:
                    cache[pid] = json.loads(self.read_text(pid, "map_files.json"))
                except (ShmkitError, ValueError):
                    cache[pid] = {}
            try:
                meta = cache[pid].get(rng)
                return _RecordedStat(**meta) if isinstance(meta, dict) else None
            except (TypeError, AttributeError):  # a recording is anyone's file: not a record, unknown
                return None
        try:
            return os.stat(self.path(pid, "map_files", rng))
        except OSError:
            return None

    @staticmethod
    def fd_links_at(folder_fd: int, prefix: str = "") -> list:
        """fd_links through a kept descriptor of /proc/PID/fd (see open_fd): no path to walk for the folder
        or each link. Raw OSError (ENOENT once the process is gone) for the caller, who keeps it."""
        return ProcFS._links(os.listdir(folder_fd), prefix, "", folder_fd)

    @staticmethod
    def _links(names, prefix, folder, folder_fd) -> list:
        out = []
        for n in names:
            try:
                target = os.readlink(folder + n, dir_fd=folder_fd)
                if not target.startswith(prefix):
                    continue
                st = os.stat(folder + n, dir_fd=folder_fd)
            except OSError:
                continue  # closed meanwhile
            out.append((int(n), target, st))
        return out

    # -------------------------------------------------------------- the host's other files

    def host_read_text(self, abspath: str) -> str:
        where = self.host_path(abspath)
        try:
            with open(where, encoding="utf-8", errors="surrogateescape") as f:
                return f.read()
        except OSError as err:
            raise self._translate(err, (), where) from err

    def mapped_file(self, pid, mapping) -> str:
        """A name that opens the very file `mapping` of process pid maps. Its path names a file in the
        process's mount namespace (a container's /usr/lib is not ours), so it is looked up through
        /proc/PID/root first and taken only where the inode is the mapping's; else (deleted, replaced,
        or hidden under a mount) through /proc/PID/map_files, which the kernel opens for CAP_SYS_ADMIN
        only. A recording has no files of its own: its host's path."""
        path = mapping.path
        if self.recorded:
            return self.host_path(path)
        if not mapping.deleted:
            for where in (self.path(pid, "root") + path, path):
                try:
                    if os.stat(where).st_ino == mapping.inode:
                        return where
                except OSError:
                    continue
        where = self.path(pid, "map_files", f"{mapping.start:x}-{mapping.end:x}")
        try:
            os.stat(where)
            return where
        except PermissionError as err:
            raise AccessDenied(where, f"{path}: the file process {pid} maps is not the one of that name now "
                                      f"(deleted, replaced or under another mount); reading it through "
                                      f"{where} needs CAP_SYS_ADMIN") from err
        except OSError as err:
            raise self._translate(err, (pid,), where) from err

    def build_id(self, pid, mapping):
        """The GNU build-id (hex) of the file `mapping` maps, or None where it has none; a recording
        gives what its snapshot read (it holds no libraries). ShmkitError where the file is unreachable."""
        if self.recorded:
            return self._recorded_stat().get("build_ids", {}).get(f"{mapping.device}:{mapping.inode}")
        from toolkit.elf.headers import read_build_id

        return read_build_id(self.mapped_file(pid, mapping))

    def host_listdir(self, abspath: str) -> list:
        """Names in a host folder, as bytes-faithful str (surrogateescape); [] when it does not exist. A
        recording says which folders its recorder could not list: those are refused as they were."""
        where = self.host_path(abspath)
        if self.recorded and abspath in self._recorded_stat().get("unlisted", ()):
            raise AccessDenied(abspath, f"permission denied reading {abspath} (when it was recorded)")
        try:
            return os.listdir(where)
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as err:
            raise self._translate(err, (), where) from err

    def host_lstat(self, abspath: str):
        """lstat of a host file; in a recorded tree, the recorded metadata (a checkout keeps neither
        owners nor device and inode numbers, which the maps of the recorded processes refer to)."""
        where = self.host_path(abspath)
        if self.recorded:
            meta = self._recorded_stat().get("/" + abspath.lstrip("/"))
            if meta is not None:
                return _RecordedStat(**{k: v for k, v in meta.items() if k in _STAT_FIELDS})
        try:
            return os.lstat(where)
        except OSError as err:
            raise self._translate(err, (), where) from err

    def _recorded_stat(self) -> dict:
        """The recording's metadata, its shape checked once: a snapshot is anyone's file, and a list where
        a number belongs must be one line of error, not a traceback in the middle of a report."""
        if not hasattr(self, "_stat_cache"):
            import json

            where = os.path.join(self.host_root, RECORDED_STAT)
            try:
                with open(where, "rb") as f:
                    meta = json.load(f)
            except FileNotFoundError:
                meta = {}
            except (OSError, ValueError) as err:
                raise BadInput(f"{RECORDED_STAT} of this recording cannot be read ({err})") from err
            self._stat_cache = _checked_stat(meta)
        return self._stat_cache

    def host_isdir(self, abspath: str) -> bool:
        return os.path.isdir(self.host_path(abspath))

    def user_name(self, uid: int) -> str:
        """The name of a uid on the host being read: this machine's (NSS) live; in a recording, the names
        it recorded (a snapshot's `users`, or its etc/passwd), never this machine's, whose uid 999 may be
        another user altogether; the number where there is none."""
        users = self._recorded_users() if self.recorded else None
        if users is None:
            from toolkit.units import owner_name

            return owner_name(uid)
        return users.get(uid, str(uid))

    def uid_of(self, name: str):
        """The uid of a user name on the host being read, or None."""
        users = self._recorded_users() if self.recorded else None
        if users is None:
            import pwd

            try:
                return pwd.getpwnam(name).pw_uid
            except KeyError:
                return None
        return next((uid for uid, n in sorted(users.items()) if n == name), None)

    def _recorded_users(self):
        """{uid: name} of a recording: its snapshot's `users`, else its etc/passwd; None where it has
        neither (a snapshot made before they were recorded): this machine's names, as before."""
        if not hasattr(self, "_users_cache"):
            meta = self._recorded_stat()
            users = {int(k): v for k, v in meta.get("users", {}).items()} if "users" in meta else None
            if users is None:  # a recorded tree (--root) keeps its etc/passwd
                try:
                    text = self.host_read_text("/etc/passwd")
                except ShmkitError:
                    text = None
                if text is not None:
                    users = {}
                    for line in text.splitlines():
                        f = line.split(":")
                        if len(f) >= 3 and f[2].isdigit():
                            users.setdefault(int(f[2]), f[0])
            self._users_cache = users
        return self._users_cache

    def host_statvfs(self, abspath: str):
        """statvfs of a host mount, or None where it cannot be had."""
        if self.recorded:
            meta = self._recorded_stat().get("statvfs", {}).get("/" + abspath.lstrip("/"))
            return _RecordedStatvfs(**{k: v for k, v in meta.items() if k in _STATVFS_FIELDS + _INODE_FIELDS}) \
                if meta else None
        try:
            return os.statvfs(self.host_path(abspath))
        except OSError:
            return None


RECORDED_STAT = "recorded-stat.json"  # in a recorded host's root: {"/dev/shm/NAME": {"st_mode": ..., ...}}
_STAT_FIELDS = ("st_mode", "st_ino", "st_dev", "st_uid", "st_size", "st_blocks", "st_gid", "st_ctime")
_STATVFS_FIELDS = ("f_blocks", "f_bfree", "f_bavail", "f_frsize")
_INODE_FIELDS = ("f_files", "f_ffree")  # recorded since the inode check; older recordings lack them


def _checked_stat(meta) -> dict:
    """recorded-stat.json as the readers expect it, or BadInput naming what is not."""
    def bad(what):
        return BadInput(f"{RECORDED_STAT} of this recording is malformed: {what}")

    def numbers(d, fields, what):
        # fields we do not read (a recorder's st_nlink, st_mtime) are left alone
        if not isinstance(d, dict) or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 0 for k, v in d.items() if k in fields):
            raise bad(f"{what} is not a record of whole numbers ({', '.join(fields)})")

    if not isinstance(meta, dict):
        raise bad("not an object")
    for key, value in meta.items():
        if key == "statvfs":
            if not isinstance(value, dict):
                raise bad("statvfs is not an object")
            for where, d in value.items():
                numbers(d, _STATVFS_FIELDS + _INODE_FIELDS, f"statvfs of {where}")
                if not set(_STATVFS_FIELDS) <= set(d):
                    raise bad(f"statvfs of {where} lacks a field")
        elif key == "cgroup_inodes":
            if not isinstance(value, dict) or not all(k.isdigit() and isinstance(v, str) for k, v in value.items()):
                raise bad("cgroup_inodes is not an object of inode -> cgroup path")
        elif key == "unlisted":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise bad("unlisted is not a list of folders")
        elif key == "denied":  # files of /proc the recorder was refused
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise bad("denied is not a list of files")
            meta[key] = frozenset(value)
        elif key == "users":
            if not isinstance(value, dict) or not all(k.isdigit() and isinstance(v, str) for k, v in value.items()):
                raise bad("users is not an object of uid -> user name")
        elif key == "build_ids":
            if not isinstance(value, dict) or not all(v is None or isinstance(v, str) for v in value.values()):
                raise bad("build_ids is not an object of device:inode -> build-id")
        elif key.startswith("/"):
            numbers(value, _STAT_FIELDS, key)
    return meta


class _RecordedStatvfs:
    def __init__(self, f_blocks, f_bfree, f_bavail, f_frsize, f_files=0, f_ffree=0):
        self.f_blocks, self.f_bfree, self.f_bavail, self.f_frsize = f_blocks, f_bfree, f_bavail, f_frsize
        self.f_files, self.f_ffree = f_files, f_ffree  # 0 and 0: not recorded (older snapshots)


def _number(field: bytes, where: str) -> int:
    """A decimal field of a /proc file; what no kernel writes (a recording's damage) is named as such."""
    if not field.isdigit():
        raise BadInput(f"{where}: malformed: {field[:20]!r} where a number belongs")
    return int(field)


class _RecordedRuns:
    """The recorded parts of a binary file, {"runs": [[offset, hex], ...]}, sorted by offset. A read finds
    the runs it overlaps by bisection: a scan of every run for every read took 70 s to replay what live
    took 0.16 s (21,000 kpagecgroup runs of two processes mapping libLLVM). Unrecorded bytes read as zeros
    (an absent page)."""

    def __init__(self, text: str):
        import json

        runs = sorted((int(off), bytes.fromhex(h)) for off, h in json.loads(text)["runs"])
        self.starts = [off for off, _ in runs]
        self.reach, end = [], 0  # the furthest any run up to this one reaches: runs may overlap or nest
        for off, data in runs:
            end = max(end, off + len(data))
            self.reach.append(end)
        self.runs = runs

    def read(self, wanted) -> list:
        import bisect

        out = []
        for offset, length in wanted:
            buf = bytearray(length)
            i = bisect.bisect_right(self.reach, offset)  # the first run that may reach past the offset
            while i < len(self.runs) and self.starts[i] < offset + length:
                off, data = self.runs[i]
                lo, hi = max(off, offset), min(off + len(data), offset + length)
                if lo < hi:
                    buf[lo - offset:hi - offset] = data[lo - off:hi - off]
                i += 1
            out.append(bytes(buf))
        return out


class _RecordedStat:
    def __init__(self, st_mode=0, st_ino=0, st_dev=0, st_uid=0, st_size=0, st_blocks=0, st_gid=0, st_ctime=0):
        self.st_mode, self.st_ino, self.st_dev, self.st_uid = st_mode, st_ino, st_dev, st_uid
        self.st_size, self.st_blocks, self.st_gid, self.st_ctime = st_size, st_blocks, st_gid, st_ctime


_DEFAULT = ProcFS()


def default_fs() -> ProcFS:
    return _DEFAULT
