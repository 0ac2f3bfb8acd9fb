"""`shmkit snapshot FILE` and `--from FILE`: what footprint, segments and export read, captured into one
compressed file (a recorded host tree, as smem's smemcap does) and replayed through the same gateway on
any machine.

The tree is what `ProcFS.at_host` reads: proc/PID/{maps,smaps,smaps_rollup,status,stat,cmdline,comm,
cgroup,mountinfo,fd.json,ns/*}, proc/sysvipc/shm (and one per other IPC namespace as
proc/PID/ipcns/sysvipc/shm), proc/self/*, the cgroups' memory.stat, the logind configuration,
/dev/shm names (one per mount namespace), and recorded-stat.json for what a tar cannot keep (owners,
devices and inodes, statvfs, cgroup inodes). As root it adds the pagemap, kpagecount and kpagecgroup
runs the ledger reads (FILE.runs.json).
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import stat
import tarfile
import tempfile
import time

from toolkit.errors import AccessDenied, BadInput, NoSuchProcess, NotFound, ShmkitError
from toolkit.outfile import replacing
from toolkit.proc.fs import RECORDED_STAT, ProcFS, default_fs
from toolkit.proc.system import HUGEPAGES

PER_PID = ("maps", "smaps", "smaps_rollup", "status", "stat", "cmdline", "comm", "cgroup", "mountinfo")
SELF = ("status", "mountinfo", "cgroup", "stat", "uid_map")  # uid_map: a rootless container's root reads no PFNs
FORMAT = "shmkit-snapshot 1"


class _Tar:
    def __init__(self, tar):
        self.tar = tar

    def add(self, rel: str, data: bytes, mode=0o644):
        info = tarfile.TarInfo("host/" + rel)
        info.size, info.mode, info.mtime = len(data), mode, int(time.time())
        self.tar.addfile(info, io.BytesIO(data))

    def link(self, rel: str, target: str):
        info = tarfile.TarInfo("host/" + rel)
        info.type, info.linkname = tarfile.SYMTYPE, target
        self.tar.addfile(info)

    def folder(self, rel: str):
        info = tarfile.TarInfo("host/" + rel)
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        self.tar.addfile(info)


def _read(path: str, denied: list | None = None):
    """The file's bytes, or None; a file the kernel refused is added to `denied`, so that replay refuses
    it too instead of taking the process for gone."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except PermissionError:
        if denied is not None:
            denied.append(path)
        return None
    except OSError:
        return None


def _map_files(fs: ProcFS, pid, maps_text) -> dict:
    """{"START-END": stat} of the files behind a process's memfd and unlinked shared mappings (as root):
    their sizes, which maps does not give, for replay."""
    from toolkit.proc.maps import parse_maps

    out = {}
    if not maps_text:
        return out
    for m in parse_maps(maps_text.decode("utf-8", "surrogateescape")):
        if m.shared and (m.path.startswith("/memfd:") or m.deleted):
            st = fs.map_file_stat(pid, m)
            if st is not None:
                out[f"{m.start:x}-{m.end:x}"] = _stat_meta(st)
    return out


def _stat_meta(st) -> dict:
    return dict(st_mode=st.st_mode, st_ino=st.st_ino, st_dev=st.st_dev, st_uid=st.st_uid, st_size=st.st_size,
                st_blocks=st.st_blocks)


# the compression a snapshot's name asks for; any other name gets gzip
_TAR_MODES = (((".xz", ".txz"), "w:xz"), ((".bz2", ".tbz2", ".tbz"), "w:bz2"), ((".tar",), "w"))


def tar_mode(path: str) -> str:
    """tarfile's write mode for a snapshot named PATH; a name that promises another format is refused."""
    lower = path.lower()
    if lower.endswith((".zip", ".7z", ".zst", ".lz4", ".rar")):
        raise BadInput(f"{path}: a snapshot is a tar archive (.tar.gz, .tar.xz, .tar.bz2 or .tar), "
                       f"not {lower.rsplit('.', 1)[-1]}")
    return next((mode for ends, mode in _TAR_MODES if lower.endswith(ends)), "w:gz")


def take_snapshot(path: str, fs: ProcFS | None = None, progress=lambda *a: None) -> dict:
    """Capture this host into PATH (a tar compressed as its name says: tar_mode); returns a summary."""
    from toolkit.proc.access import read_access
    from toolkit.proc.cgroup import (
        cgroup_dir,
        inode_paths,
        memory_hierarchy,
        process_cgroup,
    )
    from toolkit.proc.process import list_pids

    fs = fs or default_fs()
    mode = tar_mode(path)
    stat_meta = {"statvfs": {}}
    pids = list_pids(fs)
    h = memory_hierarchy(fs)
    captured, cgroups, uids = 0, set(), set()
    build_ids = stat_meta["build_ids"] = {}  # the libraries are not in the archive: their build-ids are
    # 0600 for a new file: it holds every process's command line and address space layout
    with replacing(path, 0o600) as out:
        with tarfile.open(fileobj=out, mode=mode) as raw:
            t = _Tar(raw)
            t.add("snapshot.json", json.dumps({"format": FORMAT, "time": time.time(), "kernel": os.uname().release,
                                               "machine": os.uname().machine, "page_size": fs.page_size,
                                               "host": os.uname().nodename}).encode())
            for rel in ("sysvipc/shm", "meminfo", "sys/kernel/shmmax", "sys/kernel/shmall", "sys/kernel/shmmni",
                        "sys/kernel/yama/ptrace_scope", "cpuinfo"):
                data = _read(fs.path(*rel.split("/")))
                if data is not None:
                    t.add("proc/" + rel, data)
            for name in SELF:
                t.add(f"proc/self/{name}", _read(fs.path("self", name)) or b"")
            for kind in ("ipc", "mnt"):
                ns = fs.namespace("self", kind)
                if ns:
                    t.link(f"proc/self/ns/{kind}", ns)
            ipc_seen, mnt_seen = {fs.namespace("self", "ipc")}, {fs.namespace("self", "mnt")}
            for i, pid in enumerate(pids):
                if i % 50 == 0:
                    progress("capturing processes", i, len(pids))
                refused = []
                files = {n: _read(fs.path(pid, n), refused) for n in PER_PID}
                if files["stat"] is None:
                    continue  # gone
                if refused:  # as the host names them: /proc/PID/NAME
                    stat_meta.setdefault("denied", []).extend(f"/proc/{pid}/{p.rsplit('/', 1)[1]}" for p in refused)
                captured += 1
                uids.update(_status_uids(files["status"]))
                for n, data in files.items():
                    if data is not None:
                        t.add(f"proc/{pid}/{n}", data)
                _build_ids(fs, pid, files["maps"], build_ids)
                for kind in ("ipc", "mnt"):
                    ns = fs.namespace(pid, kind)
                    if ns:
                        t.link(f"proc/{pid}/ns/{kind}", ns)
                fds = [{"fd": fd, "target": target, "stat": _stat_meta(st)} for fd, target, st in fs.fd_links(pid)
                       if target.startswith("/memfd:") or target.startswith("/dev/shm/")]
                t.add(f"proc/{pid}/fd.json", json.dumps(fds).encode())
                files_behind = _map_files(fs, pid, files["maps"])
                if files_behind:
                    t.add(f"proc/{pid}/map_files.json", json.dumps(files_behind).encode())
                ipc = fs.namespace(pid, "ipc")
                if ipc and ipc not in ipc_seen:
                    ipc_seen.add(ipc)
                    with contextlib.suppress(AccessDenied, NotFound):  # unread, as live: replay says so
                        t.add(f"proc/{pid}/ipcns/sysvipc/shm", fs.read_in_ipc_namespace(pid, "sysvipc/shm").encode())
                mnt = fs.namespace(pid, "mnt")
                if mnt and mnt not in mnt_seen:
                    mnt_seen.add(mnt)
                    _dev_shm(t, fs, f"/proc/{pid}/root/dev/shm", stat_meta)
                if h:
                    with contextlib.suppress(ShmkitError):
                        cgroups.add(process_cgroup(pid, h, fs))
            _dev_shm(t, fs, "/dev/shm", stat_meta)
            for rel in ("etc/systemd/logind.conf", "usr/lib/systemd/logind.conf"):
                data = _read(fs.host_path("/" + rel))
                if data is not None:
                    t.add(rel, data)
            for folder in ("etc/systemd/logind.conf.d", "run/systemd/logind.conf.d", "usr/lib/systemd/logind.conf.d"):
                for name in fs.host_listdir("/" + folder):
                    data = _read(fs.host_path(f"/{folder}/{name}"))
                    if data is not None:
                        t.add(f"{folder}/{name}", data)
            if fs.host_isdir("/run/systemd/system"):
                t.folder("run/systemd/system")
            # the huge page pools: what bounds a System V segment's rss on replay, as live
            for name in fs.host_listdir(HUGEPAGES):
                for f in ("nr_hugepages", "surplus_hugepages"):
                    data = _read(fs.host_path(f"{HUGEPAGES}/{name}/{f}"))
                    if data is not None:
                        t.add(f"{HUGEPAGES}/{name}/{f}".lstrip("/"), data)
            if h:
                for cg in sorted(c for c in cgroups if c is not None):
                    d = cgroup_dir(cg, h)
                    data = _read(fs.host_path(os.path.join(d, "memory.stat"))) if d else None
                    if data is not None:
                        t.add(os.path.join(d, "memory.stat").lstrip("/"), data)
                stat_meta["cgroup_inodes"] = {str(k): v for k, v in inode_paths(h, fs).items()}
            if read_access(fs).privileged:
                progress("capturing physical pages", None, None)
                _pfn_runs(t, fs)
            stat_meta["users"] = _user_names(fs, uids, stat_meta)
            t.add(RECORDED_STAT, json.dumps(stat_meta, indent=0, sort_keys=True).encode())
        try:  # a pipe has no size, and a device's position (/dev/null's) is not one
            size = out.tell() if stat.S_ISREG(os.fstat(out.fileno()).st_mode) else None
        except OSError:
            size = None
    return {"processes": captured, "file": path, "bytes": size}


def _build_ids(fs: ProcFS, pid, maps: bytes | None, out: dict) -> None:
    """The build-id of each file pid runs code from, by 'device:inode', read once per file: what the
    ledger groups library copies by."""
    from toolkit.proc.maps import parse_maps

    if not maps:
        return
    for m in parse_maps(maps.decode("utf-8", "surrogateescape")):
        key = f"{m.device}:{m.inode}"
        if "x" in m.perms and m.path.startswith("/") and key not in out:
            try:
                out[key] = fs.build_id(pid, m)
            except ShmkitError:
                out[key] = None


def _status_uids(status) -> set:
    """The real and effective uids of a captured status file."""
    from toolkit.proc.process import parse_status

    words = parse_status((status or b"").decode("ascii", "replace")).get("Uid", "").split()
    return {int(w) for w in words[:2] if w.isdigit()}


def _user_names(fs: ProcFS, uids: set, stat_meta: dict) -> dict:
    """{uid: name} of every uid the snapshot holds (processes, segments, /dev/shm owners), named as this host
    names them: replayed elsewhere, the same uid may be another user or none."""
    from toolkit.proc.system import read_sysvipc_shm

    uids = set(uids)
    with contextlib.suppress(ShmkitError):
        for seg in read_sysvipc_shm(fs):
            uids.update((seg.uid, seg.cuid))
    uids.update(m["st_uid"] for k, m in stat_meta.items() if k.startswith("/") and "st_uid" in m)
    names = {}
    for uid in sorted(uids):
        name = fs.user_name(uid)
        if name != str(uid):  # a uid with no name stays a number on replay too
            names[str(uid)] = name
    return names


def _dev_shm(t: _Tar, fs: ProcFS, where: str, meta: dict) -> None:
    try:
        root = fs.host_lstat(where)
    except (AccessDenied, NotFound, NoSuchProcess):
        return
    meta[where] = _stat_meta(root)
    vfs = fs.host_statvfs(where)
    if vfs is not None:
        meta["statvfs"][where] = dict(f_blocks=vfs.f_blocks, f_bfree=vfs.f_bfree, f_bavail=vfs.f_bavail,
                                      f_frsize=vfs.f_frsize, f_files=vfs.f_files, f_ffree=vfs.f_ffree)
    _shm_entries(t, fs, where, meta, [0])


def _shm_entries(t: _Tar, fs: ProcFS, where: str, meta: dict, seen: list, depth: int = 0) -> None:
    """The names in a /dev/shm, their folders' too (as deep and as many as segments walks), empty, with
    their metadata: what segments lists and counts."""
    from toolkit.measure.system import FOLDER_DEPTH, FOLDER_ENTRIES

    t.folder(where.lstrip("/"))
    try:
        names = fs.host_listdir(where)
    except AccessDenied:  # another user's folder: recorded as one we could not list, so replay says so
        meta.setdefault("unlisted", []).append(where)
        return
    for name in names:
        path = os.path.join(where, name)
        try:
            st = fs.host_lstat(path)
        except (AccessDenied, NotFound, NoSuchProcess):
            continue
        meta[path] = _stat_meta(st)
        if stat.S_ISDIR(st.st_mode):
            if depth < FOLDER_DEPTH and seen[0] < FOLDER_ENTRIES:
                _shm_entries(t, fs, path, meta, seen, depth + 1)
            continue
        seen[0] += 1
        t.add(path.lstrip("/"), b"")


def _pfn_runs(t: _Tar, fs: ProcFS) -> None:
    """The pagemap words of every shared object's mappings, and kpagecount/kpagecgroup of their PFNs."""
    from toolkit.proc.pagemap import _runs, decode_pagemap, read_pagemap_words

    ranges, pfns = {}, set()
    for pid, start, end in _shared_ranges(fs):
        ranges.setdefault(pid, []).append((start, end))
    for pid, spans in ranges.items():  # one open of each process's pagemap, as the ledger reads it
        try:
            words = read_pagemap_words(pid, spans, fs)
        except (AccessDenied, NoSuchProcess, NotFound):
            continue
        t.add(f"proc/{pid}/pagemap.runs.json",
              json.dumps({"runs": [[first * 8, raw.hex()] for first, raw in words]}).encode())
        pfns.update(decode_pagemap(pid, 0, b"".join(raw for _first, raw in words), fs.page_size).pfn_array())
    pfns.discard(0)  # absent pages (or all of them, where PFNs are hidden)
    spans = [(start * 8, count * 8) for start, count in _runs(sorted(pfns))]
    for name in ("kpagecount", "kpagecgroup"):
        try:  # one open for every run (21,000 runs of two processes mapping libLLVM)
            runs = [[off, blob.hex()] for (off, _n), blob in zip(spans, fs.read_at((name,), spans))]
        except (OSError, ShmkitError):  # keep what can be read, run by run
            runs = []
            for span in spans:
                with contextlib.suppress(OSError, ShmkitError):
                    (blob,) = fs.read_at((name,), [span])
                    runs.append([span[0], blob.hex()])
        t.add(f"proc/{name}.runs.json", json.dumps({"runs": runs}).encode())


def _shared_ranges(fs):
    """(pid, start, end) of every mapping the ledger would read PFNs of."""
    from toolkit.measure.ledger import _FROM_CLASSIFY, SHARED_KINDS
    from toolkit.measure.system import classify
    from toolkit.proc.maps import read_smaps
    from toolkit.proc.process import list_pids

    for pid in list_pids(fs):
        try:
            entries = read_smaps(pid, fs)
        except (AccessDenied, NoSuchProcess, NotFound):
            continue
        for e, k in zip(entries, classify(entries)):
            kind = _FROM_CLASSIFY.get(k, "anon")
            if (kind in SHARED_KINDS or (kind == "other_file" and e.mapping.shared)) and (
                    kind == "sysv" or e.mapping.inode):  # shmid 0 is a segment (the ledger's rule)
                yield pid, e.mapping.start, e.mapping.end


def _inside(name: str) -> bool:
    """A member path that stays inside host/ once normalised."""
    norm = os.path.normpath(name)
    return norm == "host" or norm.startswith("host/")


def _safe_members(members):
    """Only what a snapshot holds: folders, files, and links that point inside host/. A crafted archive
    cannot write outside the private folder, even on a Python without tarfile's data filter."""
    for m in members:
        if not _inside(m.name) or not (m.isfile() or m.isdir() or m.issym()):
            continue
        if m.issym() and (m.linkname.startswith("/")
                          or not _inside(os.path.join(os.path.dirname(m.name), m.linkname))):
            continue
        yield m


STDIN_SILENCE_S = 60.0  # how long standard input may stay silent (ssh asking for a password) before we give up


def _spool_stdin(into: str, silence_s: float | None = None) -> None:
    """Standard input copied to a private file, so that the archive can be read like any other (tarfile
    detects its compression by seeking). A writer that stops sending is given up on, named."""
    import select
    import sys

    silence_s = STDIN_SILENCE_S if silence_s is None else silence_s
    try:
        fd = sys.stdin.fileno()
        os.fstat(fd)
    except (AttributeError, ValueError, OSError) as err:  # started with standard input closed
        raise BadInput("-: there is no standard input to read a snapshot from") from err
    if os.isatty(fd):
        raise BadInput("-: standard input is a terminal; pipe a snapshot in (shmkit snapshot - | shmkit ... --from -)")
    with open(into, "wb") as out:
        while True:
            ready, _, _ = select.select([fd], [], [], silence_s)
            if not ready:
                raise BadInput(f"-: nothing came on standard input for {silence_s:g} s: the process writing "
                               "the snapshot into the pipe is stuck or waiting")
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return
            out.write(chunk)


@contextlib.contextmanager
def opened(path: str):
    """The snapshot unpacked into a private folder, as a ProcFS to read it through. '-' is standard input
    (the other end of `shmkit snapshot -`)."""
    with tempfile.TemporaryDirectory(prefix="shmkit-snapshot-") as tmp:
        source = path
        if path == "-":
            source = os.path.join(tmp, "stdin")
            _spool_stdin(source)
        yield _unpack(source, path, tmp)


def _unpack(source: str, path: str, tmp: str) -> ProcFS:
    """`source` unpacked under tmp; errors name `path`, what the user gave."""
    try:
        mode = os.stat(source).st_mode
    except FileNotFoundError as err:
        raise NotFound(f"{path}: no such snapshot file") from err
    except OSError as err:
        raise BadInput(f"{path}: {err.strerror or err}") from err
    if not stat.S_ISREG(mode):  # a FIFO would block the read, a folder is not an archive
        raise BadInput(f"{path}: not a regular file, so not a snapshot")
    try:
        with tarfile.open(source) as tar:
            members = list(_safe_members(tar.getmembers()))
            if not any(m.name == "host/snapshot.json" and m.isfile() for m in members):
                raise BadInput(f"{path}: not a shmkit snapshot (no snapshot.json)")
            # the 'data' filter where this Python has it (3.11.4, 3.12); before, _safe_members alone
            # (Debian 12's 3.11.2 has no filter argument at all: passing filter=None was a TypeError)
            extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(tmp, members=members, **extra)
    except tarfile.ReadError as err:
        raise BadInput(f"{path}: not a readable shmkit snapshot (not a tar archive, plain or compressed)") from err
    except (tarfile.TarError, EOFError, OSError) as err:
        first = (str(err).splitlines() or [type(err).__name__])[0]
        raise BadInput(f"{path}: not a readable shmkit snapshot ({first})") from err
    root = os.path.join(tmp, "host")
    try:
        with open(os.path.join(root, "snapshot.json"), "rb") as f:
            meta = json.load(f)
    except ValueError as err:  # not JSON, or not UTF-8
        raise BadInput(f"{path}: not a shmkit snapshot (snapshot.json is not JSON)") from err
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise BadInput(f"{path}: a snapshot of another format")
    fs = ProcFS.at_host(root)
    try:
        fs._recorded_stat()  # checked here, so that a malformed one is named with the file
    except BadInput as err:
        raise BadInput(f"{path}: not a readable shmkit snapshot ({err})") from err
    if not fs.shows_a_host():
        raise BadInput(f"{path}: an incomplete snapshot (it has no proc/self/status)")
    return fs
