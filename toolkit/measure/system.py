"""System-wide views: every shared object and who maps it; per-process memory with sharing counted.

Reads are system calls that the kernel does the work for (walking page tables for smaps), so they are
spread over a thread pool as wide as the machine.
"""
from __future__ import annotations

import os
import stat
from typing import Optional

from toolkit.errors import (
    AccessDenied,
    KernelThread,
    NoSuchProcess,
    NotFound,
    ShmkitError,
    ZombieProcess,
)
from toolkit.proc.access import USERNS_ROOT, hides_others, proc_mount_options, read_access, why_denied
from toolkit.proc.cgroup import memory_hierarchy, process_cgroup
from toolkit.proc.fs import ProcFS, default_fs
from toolkit.proc.maps import parse_maps, parse_rollup, read_rollup, read_smaps, rollup_from_smaps
from toolkit.proc.pagemap import distinct_pfns_of
from toolkit.proc.process import list_pids, processes_of, read_identity
from toolkit.proc.system import hugepage_pools, parse_sysvipc_shm, read_sysvipc_shm
from toolkit.records import (
    Attacher,
    DevShm,
    FootprintReport,
    LibraryUse,
    ProcessMemory,
    SegmentsReport,
    SharedObject,
)
from toolkit.units import counted, human_bytes, mode_string

DEV_SHM = "/dev/shm"
SYS_UID_MAX = 999  # login.defs default: uids above it are regular users, whose IPC logind may remove
NOBODY_UID = 65534  # above it too, but never logged in: logind has no session of its to end


def _pool_map(fn, items, progress=None, what="reading processes"):
    """fn over items in as many threads as cores: the kernel does the work of a /proc read (walking page
    tables) with the GIL released, so the reads run in parallel. One task per thread keeps the pool's own
    overhead out of the way; each takes every n-th item, since a contiguous share would give one thread
    all the kernel threads (nothing to read) and the other the busy processes started last. progress
    (what, done, total) is told by the first thread, every 32 of its items: the others keep its pace."""
    import threading

    items = list(items)
    n = max(1, min(os.cpu_count() or 1, len(items) // 16 or 1))
    out = [None] * len(items)
    failed = []  # what a thread raised: raised again here, as a plain loop would (a thread's own would
    # be printed by threading's hook and leave None in `out`)

    def work(first):
        try:
            for k, i in enumerate(range(first, len(items), n)):
                if progress is not None and first == 0 and k % 32 == 0:
                    progress(what, i, len(items))
                out[i] = fn(items[i])
        except BaseException as err:  # noqa: B036 - handed to the caller, not swallowed
            failed.append(err)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(1, n)]
    for t in threads:
        t.start()
    work(0)  # this thread takes the first share
    for t in threads:
        t.join()
    if failed:
        raise failed[0]
    return out


# ------------------------------------------------------------------ segments


def _re():
    import re

    return re


# logind reads its main file, then drop-ins (*.conf) from these folders in the order of their names; a
# drop-in in /etc hides one of the same name further down (systemd.unit(5), "drop-in")
LOGIND_MAIN = ("/etc/systemd/logind.conf", "/usr/lib/systemd/logind.conf")
LOGIND_DROPINS = ("/etc/systemd/logind.conf.d", "/run/systemd/logind.conf.d", "/usr/local/lib/systemd/logind.conf.d",
                  "/usr/lib/systemd/logind.conf.d")


def remove_ipc_policy(fs: ProcFS | None = None) -> Optional[bool]:
    """True where systemd-logind runs with RemoveIPC=yes (its default), None where there is no systemd."""
    fs = fs or default_fs()
    if not fs.host_isdir("/run/systemd/system"):
        return None
    files = [next((p for p in LOGIND_MAIN if _readable(fs, p)), None)]
    dropins = {}
    for folder in reversed(LOGIND_DROPINS):  # /etc last, so that its files win by name
        for name in fs.host_listdir(folder):
            if name.endswith(".conf"):
                dropins[name] = os.path.join(folder, name)
    files += [dropins[name] for name in sorted(dropins)]
    value = "yes"
    for path in files:
        if path is None:
            continue
        try:
            text = fs.host_read_text(path)
        except (AccessDenied, NotFound, IsADirectoryError):
            continue
        section = None
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("["):
                section = line
            m = _re().match(r"RemoveIPC\s*=\s*(\S+)", line)
            if m and section in (None, "[Login]"):
                value = m.group(1).lower()
    return value in ("yes", "true", "1", "on")


def _readable(fs, path) -> bool:
    try:
        fs.host_lstat(path)
        return True
    except (AccessDenied, NotFound):
        return False


_INTERESTING = (b"/SYSV", b"/dev/shm/", b"/memfd:", b" (deleted)")


def _interesting_maps(data: bytes) -> list:
    """The shared-memory-looking mappings (System V, /dev/shm, memfd, deleted files) of a maps text."""
    if not any(s in data for s in _INTERESTING):
        return []
    lines = [ln for ln in data.decode("utf-8", "surrogateescape").splitlines()
             if "/SYSV" in ln or "/dev/shm/" in ln or "/memfd:" in ln or ln.endswith(" (deleted)")]
    return parse_maps("\n".join(lines))


def _is_interesting(m) -> bool:
    """_interesting_maps' test for one Mapping."""
    return m.deleted or "/SYSV" in m.path or "/dev/shm/" in m.path or "/memfd:" in m.path


def _process_view(fs, pid):
    """(pid, [Mapping] or None, error kind or None, memfd descriptors, IPC namespace, mount namespace) of
    one process: what scan_segments needs of it."""
    try:
        data = fs.read_bytes(pid, "maps")
    except AccessDenied:
        return pid, None, "denied", (), None, None
    except (NoSuchProcess, NotFound):
        return pid, None, "vanished", (), None, None  # a zombie's or kernel thread's maps are empty, not an error
    if not data:  # a kernel thread or a zombie: no address space, nothing it sees in a namespace
        return pid, [], None, (), None, None
    return (pid, _interesting_maps(data), None, fs.fd_links(pid, "/memfd:"), fs.namespace(pid, "ipc"),
            fs.namespace(pid, "mnt"))


class HeldMaps:
    """The maps and descriptor folder of every process kept open across the scans of `segments --watch`.
    Where the kernel answers PROCMAP_QUERY (Linux 6.11), a scan asks it for each process's shared
    mappings only, with no maps text made: at 1000 processes and a 1 s interval that took the watch from
    7.4% to 4.5% of a core (bench/watch_cost.py). Private mappings of a memfd or /dev/shm object (a memfd
    binary's code, a copy-on-write view) and the namespaces are taken from a whole read of maps, made
    when a process is first seen, when it execs, and again every FULL_EVERY scans, staggered over the
    processes: a private mapping, or a move to another namespace without an exec, shows up to FULL_EVERY
    scans late (as does the exec of a child first seen between vfork and exec, whose descriptor shows the
    parent's address space, still alive). On an older kernel each scan reads the whole maps through the
    kept descriptor."""

    FULL_EVERY = 10

    def __init__(self):
        from toolkit.proc.maps import SharedMapsQuery

        self.limit = _room_for_descriptors() // 2  # two per process
        self.query = SharedMapsQuery() if SharedMapsQuery.supported() else None
        # pid -> [maps fd (None: no address space), fd folder fd, private mappings, ipc, mnt, scans left]
        self.entries = {}
        self.first_scan = True

    def scan(self, fs, pids) -> list:
        """_process_view of every pid, from the kept descriptors where it can; one thread, as for the
        rollups (a watch is judged by its CPU time)."""
        for gone in set(self.entries).difference(pids):
            self.drop(gone)
        out = [self.read(fs, pid) for pid in pids]
        self.first_scan = False
        return out

    def read(self, fs, pid):
        e = self.entries.get(pid)
        if e is not None:
            e[5] -= 1
            if e[5] > 0:
                got = self._again(fs, pid, e)
                if got is not None:
                    return got
            self.drop(pid)
        return self._first(fs, pid)

    def _again(self, fs, pid, e):
        maps_fd, folder_fd, private, ipc, mnt, _ = e
        try:
            links = fs.fd_links_at(folder_fd, "/memfd:")  # fails once the process is gone
            if maps_fd is None:
                maps = []
            elif self.query is not None:
                maps = private + [m for m in self.query.shared(maps_fd) if _is_interesting(m)]
            else:
                data = fs.reread(maps_fd, whole=True)
                if not data:
                    return None  # exec'd: the kept descriptor shows the old address space
                maps = _interesting_maps(data)
        except OSError:
            return None  # exited, exec'd (ESRCH), or a name too long to ask for: read anew
        return pid, maps, None, links, ipc, mnt

    def _first(self, fs, pid):
        if len(self.entries) >= self.limit or fs.recorded:
            return _process_view(fs, pid)
        try:
            folder_fd = fs.open_fd(pid, "fd")
        except (ShmkitError, OSError):
            return _process_view(fs, pid)  # its own words for why
        maps_fd = None
        try:
            maps_fd = fs.open_fd(pid, "maps")  # opened before the read: nothing mapped between is missed
            data = fs.reread(maps_fd, whole=True)
        except (ShmkitError, OSError):
            for fd in (folder_fd, maps_fd):
                if fd is not None:
                    os.close(fd)
            return _process_view(fs, pid)
        maps = _interesting_maps(data)
        ipc, mnt = fs.namespace(pid, "ipc"), fs.namespace(pid, "mnt")
        if not data:  # a kernel thread or a zombie: no address space to ask again, nor to see a /dev/shm with
            os.close(maps_fd)
            maps_fd = None
            ipc = mnt = None
        try:
            links = fs.fd_links_at(folder_fd, "/memfd:")
        except OSError:
            links = []
        self.entries[pid] = [maps_fd, folder_fd, [m for m in maps if not m.shared], ipc, mnt,
                             # staggered from the first scan on: a tenth of the processes are read whole each time
                             1 + int(pid) % self.FULL_EVERY if self.first_scan else self.FULL_EVERY]
        return pid, maps, None, links, ipc, mnt

    def drop(self, pid):
        e = self.entries.pop(pid, None)
        if e is not None:
            for fd in e[:2]:
                if fd is not None:
                    os.close(fd)

    def close(self):
        for pid in list(self.entries):
            self.drop(pid)


def _cgroup_or_none(fs, hierarchy, pid):
    """Which container (cgroup) an attacher is in, for segments; None where it cannot be said."""
    if hierarchy is None:
        return None
    try:
        return process_cgroup(pid, hierarchy, fs)
    except (ShmkitError, OSError, ValueError):
        return None


def _command(fs, pid):
    try:
        return read_identity(pid, fs)[1]
    except (NoSuchProcess, AccessDenied, NotFound):
        return "?"


def _completeness(fs, access, denied_pids, processes) -> tuple:
    """(complete, notes): whether every process could be listed and read, and if not, why."""
    notes = []
    if hides_others(access):
        seen = f"{counted(processes, 'process', 'processes')} {'was' if processes == 1 else 'were'} seen"
        notes.append(f"/proc is mounted with hidepid={access.hidepid}: other users' processes are invisible here, "
                     f"so only {seen} (run as root to see all)")
    if denied_pids:
        notes.append(f"{counted(len(denied_pids), 'process', 'processes')} not readable ({why_denied(fs, access, denied_pids)}): "
                     f"what {'it maps' if len(denied_pids) == 1 else 'they map'} is not shown")
    return not notes, tuple(notes)


FULL_AT = 0.9  # a /dev/shm this full is flagged: the next shm_open + ftruncate may fail with ENOSPC or SIGBUS


def _rss_bound(fs):
    """The most a segment of SIZE bytes can have resident: SIZE rounded up to the largest page size in use
    (a huge page pool with pages in it), as a function; None where the pools cannot be read. Linux 6.x
    gives a 4 MiB segment of 2 MiB pages an rss of 2 GiB (the huge pages counted once per base page)."""
    pools = hugepage_pools(fs)
    if pools is None:
        return None
    page = max([size for size, pages in pools.items() if pages] + [fs.page_size])
    return lambda size: -(-size // page) * page


def _not_an_object(mode):
    """What an entry of /dev/shm that is neither a file nor a folder is: not shared memory (glibc's
    shm_open refuses a symlink; a FIFO, socket or device node holds no pages of its own)."""
    for test, name in ((stat.S_ISLNK, "symlink"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"),
                       (stat.S_ISCHR, "device"), (stat.S_ISBLK, "device")):
        if test(mode):
            return name
    return None


FOLDER_DEPTH, FOLDER_ENTRIES = 8, 10000  # a walk of folders in /dev/shm stays short whatever is there


def _folder_usage(fs, where, acc, dev, depth=0) -> None:
    """Add the regular files below `where` and what they have allocated to acc ([files, bytes, folders
    that could not be read]), through the gateway (a recording replays it), at most FOLDER_DEPTH deep and
    FOLDER_ENTRIES entries, on device `dev` only (a file system mounted inside is not this tmpfs's)."""
    try:
        names = fs.host_listdir(where)
    except AccessDenied:  # another user's folder, unprivileged: its files are unknown, not none
        acc[2].append(where)
        return
    for name in names:
        if acc[0] >= FOLDER_ENTRIES:
            return
        try:
            st = fs.host_lstat(os.path.join(where, name))
        except (NotFound, AccessDenied, NoSuchProcess):
            continue
        if st.st_dev != dev:
            continue
        if stat.S_ISDIR(st.st_mode) and depth < FOLDER_DEPTH:
            _folder_usage(fs, os.path.join(where, name), acc, dev, depth + 1)
        elif stat.S_ISREG(st.st_mode):
            acc[0] += 1
            acc[1] += st.st_blocks * 512


def _fstype(fs, pid, path="/dev/shm"):
    """The file system type of the mount that holds `path` in pid's mount namespace (its mountinfo),
    or None where it cannot be read."""
    from toolkit.proc.mounts import read_mounts

    best, fstype = "", None
    for m in read_mounts(pid, fs):
        if (path == m.point or path.startswith(m.point.rstrip("/") + "/")) and len(m.point) >= len(best):
            best, fstype = m.point, m.fstype  # the last of equal mount points is the one on top
    return fstype


def _dev(st_dev) -> str:
    return f"{os.major(st_dev):02x}:{os.minor(st_dev):02x}"


def scan_segments(fs: ProcFS | None = None, held: HeldMaps | None = None) -> SegmentsReport:
    """Every System V segment of every IPC namespace in use, every POSIX object of every /dev/shm mount,
    memfd and deleted-file mappings, pinned memory nobody lists, and who maps each now. `held` keeps
    each process's maps open from one scan to the next (--watch)."""
    fs = fs or default_fs()
    access = read_access(fs)  # read once: who we are, hidepid, Yama
    me = access.uid
    policy = remove_ipc_policy(fs)
    pids = list_pids(fs)
    if held is not None and not fs.recorded:
        results = held.scan(fs, pids)
    else:
        results = _pool_map(lambda p: _process_view(fs, p), pids)
    denied = [pid for pid, _, err, *_ in results if err == "denied"]
    complete, notes = _completeness(fs, access, denied, len(pids))
    notes = list(notes)
    own_ipc, own_mnt = fs.namespace("self", "ipc"), fs.namespace("self", "mnt")
    ipc_of = {pid: ipc for pid, _, err, _, ipc, _ in results if err is None}
    mnt_of = {pid: mnt for pid, _, err, _, _, mnt in results if err is None}
    by_shmid, by_devino, memfd, deleted, shm_deleted, sysv_vmas = {}, {}, {}, {}, {}, {}
    sample = {}  # (device, inode) of a memfd or deleted file -> (pid, mapping): where its file can be stat'ed
    for pid, maps, err, *_ in results:
        if not maps:
            continue
        for m in maps:
            if m.path.startswith("/SYSV"):
                key = (ipc_of.get(pid) or own_ipc, m.inode)
                by_shmid.setdefault(key, set()).add(pid)
                sysv_vmas[key] = sysv_vmas.get(key, 0) + 1  # nattch counts mappings, not processes
            elif m.path.startswith("/dev/shm/"):
                by_devino.setdefault((m.device, m.inode), set()).add(pid)
                if m.deleted:
                    shm_deleted.setdefault((m.device, m.inode), [m.path, 0])[1] = max(
                        shm_deleted.get((m.device, m.inode), [m.path, 0])[1], m.size)
                    sample.setdefault((m.device, m.inode), (pid, m))
            elif m.path.startswith("/memfd:"):
                memfd.setdefault((m.device, m.inode, m.path), set()).add(pid)
                sample.setdefault((m.device, m.inode), (pid, m))
            elif m.deleted and m.shared:
                deleted.setdefault((m.device, m.inode, m.path), set()).add(pid)
                sample.setdefault((m.device, m.inode), (pid, m))
    commands, hierarchy = {}, []  # the memory hierarchy is looked up once, when an object has an attacher

    def attachers(pids_):
        out = []
        for p in sorted(pids_):
            if p not in commands:
                if not hierarchy:
                    hierarchy.append(memory_hierarchy(fs))
                commands[p] = (_command(fs, p), _cgroup_or_none(fs, hierarchy[0], p))
            out.append(Attacher(p, *commands[p]))
        return tuple(out)

    def flags(mode, uid):
        return dict(world_readable=bool(mode & 0o004), world_writable=bool(mode & 0o002), other_user=uid != me,
                    remove_ipc=(None if policy is None else bool(policy and SYS_UID_MAX < uid != NOBODY_UID)))

    # System V: ours, then one reader per other IPC namespace in use
    namespaces = {own_ipc: None}
    for pid, ns in sorted(ipc_of.items()):
        if ns and ns not in namespaces:
            namespaces[ns] = pid
    sysv, unread_ns, unlisted, impossible = [], 0, [], []
    rss_bound = _rss_bound(fs)
    for ns, pid in namespaces.items():
        try:
            segs = read_sysvipc_shm(fs) if pid is None else parse_sysvipc_shm(fs.read_in_ipc_namespace(pid, "sysvipc/shm"))
        except (AccessDenied, NotFound, NoSuchProcess) as err:
            if pid is not None and isinstance(err, NotFound) and not fs.recorded and fs.exists(pid):
                notes.append(f"System V segments of another IPC namespace not read: {err}")  # not a matter of root
            elif pid is not None:
                unread_ns += 1
            else:  # our own listing: not "no segments", but unknown (and never a 0 in export)
                unlisted.append("sysv")
                why = str(err)
                if isinstance(err, NotFound):
                    why = ("/proc/sysvipc/shm is not there: /proc is mounted with subset=pid (as in some containers), "
                           "which shows the processes only" if "subset=pid" in proc_mount_options(fs) else
                           "/proc/sysvipc/shm is not there: a kernel built without System V IPC, or a recording "
                           "made without it")
                notes.append(f"System V segments could not be listed ({why}); their count is unknown")
            continue
        for seg in segs:
            who = attachers(by_shmid.get((ns, seg.shmid), ()))
            orphan = seg.nattch == 0 and not seg.marked_for_removal  # the kernel's own count
            rss = seg.rss
            if rss is not None and rss_bound is not None and rss > rss_bound(seg.size):
                impossible.append((seg.shmid, rss, seg.size))
                rss = None  # a figure the segment cannot hold is unknown, not shown
            sysv.append(SharedObject(
                kind="sysv", name=f"0x{seg.key & 0xFFFFFFFF:08x}", size_bytes=seg.size, owner=fs.user_name(seg.uid),
                mode=mode_string(seg.mode), attachers=who, orphan=orphan, **flags(seg.mode, seg.uid),
                key=seg.key, shmid=seg.shmid, nattch=seg.nattch, rss_bytes=rss, swap_bytes=seg.swap,
                cpid=seg.cpid, lpid=seg.lpid, atime=seg.atime, dtime=seg.dtime, ctime=seg.ctime,
                marked_for_removal=seg.marked_for_removal, locked=seg.locked, namespace=ns,
                pinned="no process attached and not marked for removal" if orphan else None, via_pid=pid,
                mappings_seen=sysv_vmas.get((ns, seg.shmid), 0),
            ))
    if unread_ns:
        notes.append(f"{counted(unread_ns, 'other IPC namespace')} not read: entering one needs root (CAP_SYS_ADMIN)")
    if impossible:
        shmid, rss, size = impossible[0]
        notes.append(f"rss unknown for {counted(len(impossible), 'System V segment')} (shmid {shmid}"
                     f"{', ...' if len(impossible) > 1 else ''}): the kernel gives {human_bytes(rss)} for a "
                     f"segment of {human_bytes(size)}, more than it can hold in the page sizes in use here (some "
                     "kernels count a segment of huge pages, SHM_HUGETLB, once per base page: ipcs -u says the same)")

    # POSIX: our /dev/shm, then /proc/PID/root/dev/shm of one process per other mount namespace
    mounts = {}  # st_dev -> (where, mount namespace, [pids])
    mnt_pids = {}
    for pid, ns in mnt_of.items():
        mnt_pids.setdefault(ns, []).append(pid)
    places = [(DEV_SHM, own_mnt, mnt_pids.get(own_mnt, []), None)] + [
        (f"/proc/{ps[0]}/root/dev/shm", ns, ps, ps[0])
        for ns, ps in sorted(mnt_pids.items(), key=lambda kv: str(kv[0])) if ns and ns != own_mnt]
    posix, dev_shm, inode_views = [], [], []
    for where, ns, holders, via in places:
        try:
            root_st = fs.host_lstat(where)
        except (NotFound, AccessDenied, NoSuchProcess) as err:
            if via is None and fs.recorded:
                unlisted.append("posix")
                notes.append(f"POSIX objects could not be listed ({DEV_SHM} is not in this recording); their "
                             "count is unknown")
            elif via is None:
                notes.append(f"{DEV_SHM} cannot be read here ({err}): no POSIX object is listed")
                if not isinstance(err, NotFound):
                    unlisted.append("posix")
            continue
        if root_st.st_dev in mounts:
            mounts[root_st.st_dev][2].extend(holders)
            continue
        mounts[root_st.st_dev] = (where, ns, list(holders))
        vfs = fs.host_statvfs(where)
        inode_views.append((where, ns, vfs))
        fstype = _fstype(fs, via if via is not None else "self")
        if fstype is not None and fstype != "tmpfs":  # shm_open works on any file system mounted there
            notes.append(f"{where} (mount namespace {ns}) is not a tmpfs but {fstype}: POSIX objects there are "
                         f"files of that file system, in the page cache and written back to it, and the size "
                         f"and fill shown are that file system's")
        size = vfs.f_blocks * vfs.f_frsize if vfs else None
        used = (vfs.f_blocks - vfs.f_bfree) * vfs.f_frsize if vfs else None
        dev_shm.append(DevShm(where, ns, _dev(root_st.st_dev), size, used,
                              (used / size) if size else None, bool(size) and used / size >= FULL_AT, ()))
        folders, in_folders, others = [], [0, 0, []], []
        for name in sorted(fs.host_listdir(where)):
            try:
                st = fs.host_lstat(os.path.join(where, name))
            except (NotFound, AccessDenied, NoSuchProcess):
                continue  # removed since the listing
            if stat.S_ISDIR(st.st_mode) and st.st_dev == root_st.st_dev:
                folders.append(name)
                _folder_usage(fs, os.path.join(where, name), in_folders, root_st.st_dev)
            if not stat.S_ISREG(st.st_mode):
                kind = _not_an_object(st.st_mode)
                if kind:  # not memory, but a user who lists /dev/shm sees it (a symlink there is a hazard)
                    others.append((name, kind))
                continue
            dev = _dev(st.st_dev)
            who = attachers(by_devino.get((dev, st.st_ino), ()))
            posix.append(SharedObject(
                kind="posix", name=name, size_bytes=st.st_size, owner=fs.user_name(st.st_uid),
                mode=mode_string(st.st_mode),
                # nothing we could see maps it; unknown unless we saw every process
                attachers=who, orphan=(not who) if (who or complete) else None, **flags(st.st_mode, st.st_uid),
                allocated_bytes=st.st_blocks * 512, device=dev, inode=st.st_ino, namespace=ns, via_pid=via,
                semaphore=name.startswith("sem."),
            ))
        if others:
            dev_shm[-1] = dev_shm[-1]._replace(others=tuple(others))
        if folders:  # the fill counts their files; no listing of objects would
            known = not in_folders[2]
            dev_shm[-1] = dev_shm[-1]._replace(folders=tuple(folders),
                                               folder_files=in_folders[0] if known else None,
                                               folder_bytes=in_folders[1] if known else None,
                                               unreadable_folders=tuple(in_folders[2]))
    # hard links: one object under several names, its memory counted once (export, notes)
    names_of = {}
    for o in posix:
        names_of.setdefault((o.device, o.inode), []).append(o.name)
    posix = [o._replace(also_named=tuple(n for n in names_of[o.device, o.inode] if n != o.name))
             if len(names_of[o.device, o.inode]) > 1 else o for o in posix]
    dev_shm = [d._replace(processes=tuple(sorted(mounts[_st(d.device)][2])[:8])) for d in dev_shm]
    for where, ns, vfs in inode_views:
        if vfs is not None and vfs.f_files and vfs.f_ffree == 0:  # ENOSPC with bytes to spare
            notes.append(f"{where} (mount namespace {ns}) has no inode left: all {vfs.f_files} (nr_inodes) are "
                         f"in use, so the next shm_open fails with ENOSPC whatever its size")
    for d in dev_shm:
        if d.full:
            notes.append(f"{d.where} (mount namespace {d.namespace}) is {100 * d.fill:.0f}% full: "
                         f"{human_bytes(d.used_bytes)} of {human_bytes(d.size_bytes)}")

    # pinned memory nobody lists: /dev/shm files unlinked but still mapped, memfds held only by a descriptor
    listed = {(o.device, o.inode) for o in posix}
    pinned = []
    held_stat = {}
    for _pid, _maps, err, links, *_ in results:
        for _fd, _target, st in (links if err is None else ()):
            held_stat[(_dev(st.st_dev), st.st_ino)] = st

    def file_of(dev, ino):
        """(size, owner, allocated) of a mapped memfd or deleted file: from a descriptor a process holds,
        else through map_files (root); unknown (None, "?", None) where neither can be read: never 0."""
        st = held_stat.get((dev, ino))
        if st is None and (dev, ino) in sample:
            st = fs.map_file_stat(*sample[(dev, ino)])
        if st is None:
            return dict(size_bytes=None, owner="?", allocated_bytes=None)
        return dict(size_bytes=st.st_size, owner=fs.user_name(st.st_uid), allocated_bytes=st.st_blocks * 512)

    for (dev, ino), (path, size) in sorted(shm_deleted.items()):
        if (dev, ino) in listed:
            continue
        known = file_of(dev, ino)
        if known["size_bytes"] is None:  # what the mappings cover: at least that much
            known = dict(size_bytes=size, owner="?", allocated_bytes=None)
        pinned.append(SharedObject(
            kind="posix", name=os.path.basename(path), mode=None, **known,
            attachers=attachers(by_devino[(dev, ino)]), orphan=False, world_readable=None, world_writable=None,
            other_user=None, remove_ipc=None, device=dev, inode=ino,
            pinned="removed from /dev/shm but still mapped: its pages stay until the last unmap"))
    mapped_memfds = {(dev, ino) for dev, ino, _ in memfd}
    fd_only = {}
    for pid, maps, err, links, *_ in results:
        if err is not None:
            continue
        for _fd, target, st in links:
            if (_dev(st.st_dev), st.st_ino) not in mapped_memfds:
                o = fd_only.setdefault((_dev(st.st_dev), st.st_ino), [target, st, set()])
                o[2].add(pid)
    for (dev, ino), (target, st, holders) in sorted(fd_only.items()):
        pinned.append(SharedObject(
            kind="memfd", name=target, size_bytes=st.st_size, owner=fs.user_name(st.st_uid), mode=None,
            attachers=attachers(holders), orphan=False, world_readable=None, world_writable=None, other_user=None,
            remove_ipc=None, allocated_bytes=st.st_blocks * 512, device=dev, inode=ino,
            pinned="held only by a descriptor (no mapping): its pages stay until the last close"))
    mem = [SharedObject(kind="memfd", name=path, mode=None, attachers=attachers(p),
                        orphan=None, world_readable=None, world_writable=None, other_user=None, remove_ipc=None,
                        device=dev, inode=ino, **file_of(dev, ino)) for (dev, ino, path), p in sorted(memfd.items())]
    # mmap(MAP_SHARED | MAP_ANONYMOUS) shows in maps as "/dev/zero (deleted)": shared anonymous memory (a
    # parent's with its forked children: PostgreSQL's shared buffers), not a file someone deleted
    dele = [SharedObject(kind="anonymous" if path in ANON_SHARED else "deleted",
                         name=ANON_SHARED.get(path, path), mode=None, attachers=attachers(p), orphan=None,
                         world_readable=None, world_writable=None, other_user=None, remove_ipc=None, device=dev,
                         inode=ino, **file_of(dev, ino))
            for (dev, ino, path), p in sorted(deleted.items())]
    return SegmentsReport(tuple(sysv), tuple(posix), tuple(mem), tuple(o for o in dele if o.kind == "deleted"),
                          len(pids), len(denied), None if policy is None else ("yes" if policy else "no"),
                          tuple(notes), complete, tuple(dev_shm), tuple(pinned), tuple(unlisted),
                          tuple(o for o in dele if o.kind == "anonymous"))


def _st(device: str) -> int:
    major, minor = (int(x, 16) for x in device.split(":"))
    return os.makedev(major, minor)


# ------------------------------------------------------------------ footprint


KINDS = ("sysv", "posix", "memfd", "shared anonymous", "library text", "library data", "other file", "anonymous", "heap",
         "stack", "other")
# what maps calls a MAP_SHARED | MAP_ANONYMOUS region (with " (deleted)"), in base and in huge pages
ANON_SHARED = {"/dev/zero": "shared anonymous (MAP_SHARED|MAP_ANONYMOUS)",
               "/anon_hugepage": "shared anonymous huge pages (MAP_SHARED|MAP_ANONYMOUS|MAP_HUGETLB)"}


def classify(entries) -> list:
    """The kind of each smaps entry (see KINDS): what the memory is, not how it was mapped."""
    return classify_rows([e.mapping.path for e in entries], [e.mapping.perms for e in entries],
                         [e.get("Anonymous", 0) for e in entries])


_WRITABLE = ("w", ord("w"))  # perms' second letter, from a str or from bytes


def classify_rows(paths, perms, anonymous) -> list:
    """classify() over columns: each mapping's path (str), perms (str or bytes) and Anonymous bytes."""
    kinds = []
    prev_lib_data = False
    for p, mode, anon in zip(paths, perms, anonymous):
        if not p:
            # .bss right after a library's data
            k = "library data" if prev_lib_data and mode[1] in _WRITABLE else "anonymous"
            prev_lib_data = False
        elif p[0] == "/":
            if p.startswith("/SYSV"):
                k = "sysv"
            elif p.startswith("/dev/shm/"):
                k = "posix"
            elif p.startswith("/memfd:"):
                k = "memfd"
            elif p.removesuffix(" (deleted)") in ANON_SHARED:
                k = "shared anonymous"  # shmem of a parent and its forked children, not a file
            elif ".so" in p[p.rfind("/"):]:
                # written pages (the data, RELRO after relocation) are the process's own; the rest is shared
                # text (Anonymous, not Private_Dirty: smaps counts a page-cache page dirty in the cache, a file
                # just written, as Private_Dirty although it is still the file's, shared)
                k = "library data" if (mode[1] in _WRITABLE or anon) else "library text"
            else:
                k = "other file"
            prev_lib_data = k == "library data"
        else:
            k = "heap" if p == "[heap]" else "stack" if p.startswith("[stack") else "other" if p[0] == "[" else "other file"
            prev_lib_data = False
        kinds.append(k)
    return kinds


def _room_for_descriptors() -> int:
    """How many descriptors a watch may keep: up to 65536, less room for everything else."""
    from toolkit.proc.system import raise_nofile

    return max(0, raise_nofile(1 << 16) - 64)


# what a process row shows (a third of the rollup's lines: converting only these saves 3 ms per 1000 processes)
ROLLUP_FIELDS = ("Rss", "Pss", "Private_Clean", "Private_Dirty", "Swap", "SwapPss", "Shared_Hugetlb",
                 "Private_Hugetlb")
SMAPS_FIELDS = ROLLUP_FIELDS + ("Anonymous",)  # per mapping, for the kinds: classify() reads Anonymous


class HeldRollups:
    """The smaps_rollup of every process kept open across the scans of `--watch`, with the user and the
    command line read when the process first appeared. A scan then costs one pread per process, and a
    rollup that reads back the same bytes is not parsed again: at 1000 processes and a 1 s interval that
    took the watch from 8.1% to ~5% of a core (bench/watch_cost.py); the rest is the kernel's own walk of
    the page tables. A descriptor follows its process, never a later one given the same pid: once the
    process has exited the read fails with ESRCH and the pid is looked at anew. A kernel thread (no
    rollup to read) is remembered by a descriptor of its /proc/PID, which fails the same way once it has
    exited: one stat a scan instead of eight system calls to find it is one again."""

    KERNEL_THREAD = "kernel thread"

    def __init__(self):
        self.limit = _room_for_descriptors()
        self.entries = {}  # pid -> [fd, last bytes, fields, uid, command]
        self.kernel = {}  # pid -> descriptor of /proc/PID of a kernel thread

    def read(self, fs, pid):
        """(uid, command, fields, None), KERNEL_THREAD, or None: look at the pid anew."""
        e = self.entries.get(pid)
        if e is None:
            k = self.kernel.get(pid)
            if k is None:
                return None
            try:
                os.stat("stat", dir_fd=k)  # ESRCH or ENOENT once the thread has exited
                return self.KERNEL_THREAD
            except OSError:
                self.drop(pid)
                return None
        try:
            data = fs.reread(e[0])
        except OSError:
            data = b""
        if not data:  # exited (a zombie now, or gone): the caller looks at the pid anew
            self.drop(pid)
            return None
        if data != e[1]:
            e[1], e[2] = data, parse_rollup(pid, data, ROLLUP_FIELDS).fields
        return e[3], e[4], e[2], None

    def keep(self, fs, pid, uid, cmd):
        if len(self.entries) >= self.limit:
            return
        try:
            fd = fs.open_fd(pid, "smaps_rollup")
        except (AccessDenied, NoSuchProcess, NotFound, ZombieProcess, KernelThread):
            return
        self.entries[pid] = [fd, None, None, uid, cmd]

    def keep_kernel_thread(self, fs, pid):
        if len(self.entries) + len(self.kernel) >= self.limit:
            return
        try:
            self.kernel[pid] = fs.open_fd(pid)
        except (ShmkitError, OSError):
            pass

    def drop(self, pid):
        e = self.entries.pop(pid, None)
        if e is not None:
            os.close(e[0])
        k = self.kernel.pop(pid, None)
        if k is not None:
            os.close(k)

    def close(self):
        for pid in list(self.entries) + list(self.kernel):
            self.drop(pid)


def _one(fs, pid, need_smaps, held=None):
    if held is not None:
        got = held.read(fs, pid)
        if got is HeldRollups.KERNEL_THREAD:
            return pid, None, "kernel"
        if got is not None:
            return pid, got, None
    found = _look(fs, pid, need_smaps, held)
    if held is not None and found[2] == "kernel":
        held.keep_kernel_thread(fs, pid)
    return found


def _look(fs, pid, need_smaps, held):
    uid = None
    try:
        uid = fs.uid(pid)
        if need_smaps:
            # only what the kinds and totals use: a fifth of smaps' fields, parsed by columns (300 processes
            # with 400 mappings each: export took 5.0 s, 3.4 of them parsing every field)
            entries = read_smaps(pid, fs, SMAPS_FIELDS)
            fields = rollup_from_smaps(pid, entries).fields
        else:
            fields, entries = read_rollup(pid, fs, ROLLUP_FIELDS).fields, None
        if not fields:
            state = fs.task_state(pid)  # no address space: which kind of process is it?
            return pid, None, {"zombie": "zombie", "kernel thread": "kernel", None: "vanished"}.get(state, "vanished")
        cmd = fs.read_whole(pid, "cmdline").replace(b"\0", b" ").strip().decode("utf-8", "replace")
        if not cmd:
            cmd = "[" + fs.read_bytes(pid, "comm").strip().decode("utf-8", "replace") + "]"
        if held is not None:
            held.keep(fs, pid, uid, cmd)
    except AccessDenied:
        return pid, (uid, None, None, None), "denied"  # whose it is: --user leaves out what it does not ask for
    except ZombieProcess:
        return pid, None, "zombie"
    except KernelThread:
        return pid, None, "kernel"
    except (NoSuchProcess, NotFound):
        return pid, None, "vanished"
    return pid, (uid, cmd, fields, entries), None


def scan_footprint(pids=(), user=None, match=None, by="process", privileged=None,
                   fs: ProcFS | None = None, held: HeldRollups | None = None, progress=None) -> FootprintReport:
    """Per-process Rss, Pss, USS, swap (smaps_rollup); with by kind or library, per mapping (smaps).
    privileged (PFNs readable) defaults to what /proc/self/status says of CAP_SYS_ADMIN. `held` keeps the
    rollups open from one scan to the next (--watch on this machine). progress(what, done, total): told
    how the reads go (thousands of processes' smaps take seconds)."""
    fs = fs or default_fs()
    access = read_access(fs)  # read once for the reasons and the privilege
    candidates = processes_of(pids, fs) if pids else list_pids(fs)
    want_uid = None
    if user is not None:
        want_uid = int(user) if str(user).isdigit() else fs.uid_of(user)
        if want_uid is None:
            raise NotFound(f"no user named {user!r}" + (" on the recorded host" if fs.recorded else ""))
    pattern = _re().compile(match) if match else None
    me = os.getpid() if not fs.recorded else None
    need_smaps = by in ("kind", "library")
    if need_smaps or fs.recorded:
        held = None
    elif held is not None:
        for gone in set(held.entries).union(held.kernel).difference(candidates):
            held.drop(gone)
    todo = [p for p in candidates if p != me]
    if held is not None:
        # one thread: a watch is judged by the CPU it takes, and the handing of the GIL between threads
        # cost 9 ms of CPU per scan of 1000 processes (47 ms against 56 ms), for a wall time nobody waits on
        results = [_one(fs, p, need_smaps, held) for p in todo]
    else:
        results = _pool_map(lambda p: _one(fs, p, need_smaps, held), todo, progress)
    procs, denied, vanished, kthreads, zombies = [], [], 0, 0, 0
    lib_maps = {}
    for pid, data, err in results:
        if err == "denied":
            if pids:
                raise AccessDenied(pid, f"process {pid}: {why_denied(fs, access, [pid])}")
            # a process the filters leave out is not missing from the answer; one they cannot judge is
            uid = data[0]
            if want_uid is not None and uid is not None and uid != want_uid:
                continue
            if pattern:  # its command line is readable where its memory is not (read only when asked)
                cmd = _command(fs, pid)
                if cmd != "?" and not pattern.search(cmd):
                    continue
            denied.append(pid)
            continue
        if err == "vanished":
            if pids:
                raise NoSuchProcess(pid)
            vanished += 1
            continue
        if err == "kernel":
            # counted only where the filters would take it: kernel threads are root's, named [comm]
            if want_uid not in (None, 0) or (pattern and not pattern.search(_command(fs, pid))):
                continue
            kthreads += 1
            continue
        if err == "zombie":
            zombies += 1
            continue
        uid, cmd, fields, entries = data
        if want_uid is not None and uid != want_uid:
            continue
        if pattern and not pattern.search(cmd):
            continue
        by_kind = None
        if entries is not None:
            by_kind = {}
            for e, k in zip(entries, classify(entries)):
                d = by_kind.setdefault(k, {"rss": 0, "pss": 0, "uss": 0, "hugetlb": 0})
                d["rss"] += e.get("Rss", 0)
                d["pss"] += e.get("Pss", 0)
                d["uss"] += e.get("Private_Clean", 0) + e.get("Private_Dirty", 0)
                # huge pages (hugetlb) are not in Rss: a SHM_HUGETLB segment read "sysv 0 B"
                d["hugetlb"] += e.get("Shared_Hugetlb", 0) + e.get("Private_Hugetlb", 0)
                if by == "library" and k in ("library text", "library data") and e.mapping.path:
                    # the old copy of an upgraded library is another object than the new file of that name
                    # and two files of one name (a container's libc and ours) are two objects, not one
                    m = e.mapping
                    lib_maps.setdefault((m.path, m.deleted, m.device, m.inode), []).append((pid, e))
        procs.append(ProcessMemory(
            pid=pid, command=cmd, user=fs.user_name(uid), rss=fields.get("Rss", 0), pss=fields.get("Pss", 0),
            uss=fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0), swap=fields.get("Swap", 0),
            swap_pss=fields.get("SwapPss", 0), by_kind=by_kind,
            hugetlb=fields.get("Shared_Hugetlb", 0) + fields.get("Private_Hugetlb", 0),
        ))
    if privileged is None:
        privileged = access.privileged
    libraries = ()
    if by == "library":
        names = {}
        for path, deleted, _dev, _ino in lib_maps:
            names[path, deleted] = names.get((path, deleted), 0) + 1
        pfns_of = {}
        if privileged:
            groups = {key: [(pid, e.mapping.start, e.mapping.end) for pid, e in maps] for key, maps in lib_maps.items()}
            pfns_of = distinct_pfns_of(groups, fs, progress or (lambda *a: None))
        uses = [_library_use(key, maps, pfns_of.get(key), privileged, fs, names[key[:2]] > 1)
                for key, maps in lib_maps.items()]
        libraries = tuple(sorted(uses, key=lambda u: -u.pss_sum))
    complete, notes = _completeness(fs, access, denied, len(candidates)) if not pids else (True, ())
    if by == "library" and not privileged and access.root_in_userns_only:
        notes += (f"physical: {USERNS_ROOT}",)
    return FootprintReport(tuple(procs), len(denied), vanished, kthreads, libraries, privileged, zombies, notes,
                           complete)


def _library_use(key, uses, pfns, privileged, fs, same_name=False) -> LibraryUse:
    path, deleted, device, inode = key
    physical = len(pfns) * fs.page_size if privileged and pfns is not None else None
    return LibraryUse(path, len({pid for pid, _ in uses}), sum(e.get("Rss", 0) for _, e in uses),
                      sum(e.get("Pss", 0) for _, e in uses), physical, deleted, device, inode, same_name)
