"""The shared-memory ledger: who uses it (Pss, by cgroup and by object) and who pays for it (the cgroup
the kernel charged each page to: the one that first faulted it in, Documentation/admin-guide/cgroup-v2.rst,
"Memory Ownership").

One pass over every readable process's smaps gives both views: `--by cgroup` (Pss split by kind, beside
the cgroup's memory.stat and, as root, the bytes of shared objects charged to it) and `--by object` (each
System V segment, POSIX object, memfd, other tmpfs file, and each library's text and data, with who maps
it, its physical pages and who is charged for them).
"""
from __future__ import annotations

import os
from collections import Counter

from toolkit.errors import AccessDenied, NoSuchProcess, NotFound, ShmkitError
from toolkit.measure.system import ANON_SHARED, _completeness, _pool_map, classify_rows
from toolkit.proc.access import pfns_need, read_access, why_denied
from toolkit.proc.cgroup import (
    cgroup_dir,
    inode_paths,
    memory_hierarchy,
    memory_stat,
    process_cgroup,
)
from toolkit.proc.fs import ProcFS, default_fs
from toolkit.proc.maps import read_smaps_table
from toolkit.proc.pagemap import distinct_pfns_of, read_kpagecgroup
from toolkit.proc.system import read_sysvipc_shm
from toolkit.report.view import escape  # a cgroup's name can hold any byte but '/'
from toolkit.units import counted
from toolkit.records import CgroupUse, Ledger, LedgerObject, LibraryCopies

KINDS = ("anon", "sysv", "posix", "memfd", "tmpfs", "library_text", "library_data", "other_file", "hugetlb")
SHARED_KINDS = ("sysv", "posix", "memfd", "tmpfs", "library_text", "library_data")
# what the ledger and classify() read of smaps: a fifth of its fields
FIELDS = ("Rss", "Pss", "Private_Dirty", "Anonymous", "Shared_Hugetlb", "Private_Hugetlb")
_FROM_CLASSIFY = {"sysv": "sysv", "posix": "posix", "memfd": "memfd", "library text": "library_text",
                  "library data": "library_data", "other file": "other_file",
                  "shared anonymous": "tmpfs"}  # shmem, billed as shmem: with the other shmem files


def _tmpfs_devices(fs: ProcFS, pid) -> set:
    """Device numbers ("00:1b", as maps prints them) of the tmpfs mounts the process sees."""
    from toolkit.proc.mounts import read_mounts

    out = set()
    for m in read_mounts(pid, fs):
        if m.fstype == "tmpfs":
            major, _, minor = m.device.partition(":")
            out.add(f"{int(major):02x}:{int(minor):02x}")
    return out


def _ns(fs: ProcFS, pid, kind) -> str | None:
    try:
        return os.readlink(fs.path(pid, "ns", kind))
    except OSError:
        return None


def _cgroup_of(fs: ProcFS, h, pid):
    """The process's memory cgroup; None where there is no hierarchy, or where its cgroup file is missing
    while the process is there (a recorded host made without it): the process is still counted."""
    if not h:
        return None
    try:
        return process_cgroup(pid, h, fs)
    except (NoSuchProcess, NotFound):
        if not fs.exists(pid):
            raise
        return None


def _process(fs: ProcFS, h, pid, tmpfs_by_ns):
    """(pid, data or None, error kind) of one process: its cgroup, namespaces, Pss by kind and the mappings
    of shared objects. Runs in the scan's threads, so its Python work overlaps the other thread's smaps
    read in the kernel; it works on smaps' columns and builds a Mapping only for a shared object's
    mappings (35,000 mappings on 1000 processes: the Python work per mapping is the scan's cost)."""
    try:
        table = read_smaps_table(pid, fs, FIELDS)
        if not table.headers:
            return pid, None, "empty"  # a kernel thread or a zombie: no address space
        cg = _cgroup_of(fs, h, pid)
    except AccessDenied:
        return pid, None, "denied"
    except (NoSuchProcess, NotFound):
        return pid, None, "vanished"
    ipc_ns, mnt_ns = _ns(fs, pid, "ipc"), _ns(fs, pid, "mnt")
    tmpfs = tmpfs_by_ns.get(mnt_ns)
    if tmpfs is None:
        tmpfs = tmpfs_by_ns[mnt_ns] = _tmpfs_devices(fs, pid)  # two threads may both read it: same answer
    n = len(table.headers)
    col = table.columns
    zeros = [0] * n
    rss_col, pss_col = col.get("Rss", zeros), col.get("Pss", zeros)
    huge_col = [a + b for a, b in zip(col.get("Shared_Hugetlb", zeros), col.get("Private_Hugetlb", zeros))]
    paths = [hd[5].decode("utf-8", "surrogateescape") for hd in table.headers]
    perms = [hd[1] for hd in table.headers]
    pss = dict.fromkeys(KINDS, 0)
    pss["hugetlb"] = sum(huge_col)  # outside Rss and Pss
    shared = []
    for i, k in enumerate(classify_rows(paths, perms, col.get("Anonymous", zeros))):
        kind = _FROM_CLASSIFY.get(k, "anon")
        if kind == "other_file" and perms[i][3] == _SHARED and table.headers[i][3].decode() in tmpfs:
            kind = "tmpfs"  # a shared mapping of a file on some other tmpfs
        pss[kind] += pss_col[i]
        # a file's inode 0 is no object; but a System V mapping's inode is its shmid, and the first segment
        # of every new IPC namespace (each container's) is shmid 0
        if kind in SHARED_KINDS and (kind == "sysv" or table.headers[i][4] != b"0"):
            m = table.mapping(i)
            shared.append((kind, m, rss_col[i] + huge_col[i], pss_col[i] + huge_col[i]))
    return pid, (cg, ipc_ns, mnt_ns, pss, shared), None


_SHARED = ord("s")  # perms' fourth letter: MAP_SHARED


def _object_key(kind, m, ipc_ns):
    if kind == "sysv":
        return ("sysv", ipc_ns, m.inode)  # a shmid is unique only within its IPC namespace
    return (kind, m.device, m.inode)


def scan_ledger(fs: ProcFS | None = None, pids=None, pfns=None, progress=None) -> Ledger:
    """Every readable process, joined into cgroups and shared objects. Physical pages and charges are read
    where the process may (root); pfns=False leaves them out even then (a pagemap read per shared mapping).
    progress(what, done, total): told how the reads of the processes go."""
    from toolkit.proc.process import list_pids, processes_of

    fs = fs or default_fs()
    h = memory_hierarchy(fs)
    candidates = processes_of(pids, fs) if pids else list_pids(fs)
    me = os.getpid() if not fs.recorded else None
    tmpfs_by_ns = {}
    results = _pool_map(lambda p: _process(fs, h, p, tmpfs_by_ns), [p for p in candidates if p != me], progress)
    denied = [pid for pid, _, err in results if err == "denied"]
    access = read_access(fs)
    complete, notes = _completeness(fs, access, denied, len(candidates))
    notes += _skipped(fs, access, results, bool(pids))
    pfns = access.privileged if pfns is None else (pfns and access.privileged)
    groups, objects = {}, {}
    for pid, data, err in results:
        if data is None:
            continue
        cg, ipc_ns, mnt_ns, pss, shared = data
        g = groups.get(cg)
        if g is None:
            g = groups[cg] = {"pids": set(), "pss": dict.fromkeys(KINDS, 0)}
        g["pids"].add(pid)
        total = g["pss"]
        for k, v in pss.items():
            total[k] += v
        for kind, m, rss, pss_bytes in shared:
            key = _object_key(kind, m, ipc_ns)
            o = objects.get(key)
            if o is None:
                name = ANON_SHARED.get(m.path, m.path) if m.deleted else m.path
                o = objects[key] = {"kind": kind, "name": name, "maps": [], "ipc_ns": ipc_ns, "mnt_ns": mnt_ns}
            o["maps"].append((pid, cg, m, rss, pss_bytes))
    charged = _charges(fs, h, objects, pfns, progress or (lambda *a: None))
    sysv_sizes = _sysv_sizes(fs)
    own_ipc = _ns(fs, "self", "ipc")
    out_objects = []
    for key, o in objects.items():
        procs = {pid for pid, *_ in o["maps"]}
        used = {}
        for _pid, cg, _m, _rss, pss in o["maps"]:
            used[cg] = used.get(cg, 0) + pss
        per_pid = {}
        for p, _c, m, *_ in o["maps"]:
            per_pid[p] = per_pid.get(p, 0) + m.size
        size = (sysv_sizes.get(key[2]) if o["kind"] == "sysv" and o["ipc_ns"] == own_ipc else max(per_pid.values()))
        if o["kind"] in FILE_KINDS:  # a file's own size, where its mappings cover part of it (as segments)
            st = fs.map_file_stat(o["maps"][0][0], o["maps"][0][2])
            size = st.st_size if st is not None else size
        phys = charged.get(key, {}).get("physical")
        rss_sum = sum(x[3] for x in o["maps"])
        out_objects.append(LedgerObject(
            kind=o["kind"], name=o["name"], shmid=key[2] if o["kind"] == "sysv" else None,
            size_bytes=size, processes=len(procs), rss_sum_bytes=rss_sum, pss_sum_bytes=sum(x[4] for x in o["maps"]),
            physical_bytes=phys, saved_bytes=(rss_sum - phys) if phys is not None else None,
            used_by=tuple(sorted(used.items(), key=lambda kv: -kv[1])),
            charged_to=(tuple(sorted(charged[key]["to"].items(), key=lambda kv: -kv[1]))
                        if charged.get(key, {}).get("to") is not None else None),
            device=None if o["kind"] == "sysv" else key[1], inode=key[2], ipc_namespace=o["ipc_ns"]))
    out_objects.sort(key=lambda o: -o.pss_sum_bytes)
    # one object whose charges are unknown could be charged to any cgroup: then no cgroup's sum is known
    unknown = sum(1 for c in charged.values() if c["to"] is None)
    cgroups = []
    for cg, g in groups.items():
        by_kind = {}
        if charged and not unknown:
            for key, c in charged.items():
                kind = objects[key]["kind"]
                if cg in c["to"]:
                    by_kind[kind] = by_kind.get(kind, 0) + c["to"][cg]
        cgroups.append(CgroupUse(
            cgroup=cg, processes=len(g["pids"]), pss_bytes=g["pss"],
            memory_stat=memory_stat(cg, h, fs) if (h and cg is not None) else None,
            charged_bytes=by_kind if pfns and charged is not None and not unknown else None))
    cgroups = _with_subtrees(cgroups)
    unseen = [c.cgroup for c in cgroups if h and c.cgroup is not None and cgroup_dir(c.cgroup, h) is None]
    if unseen:  # `unshare -C` without a mount of its own: /proc/PID/cgroup is relative to a root it cannot name
        notes = tuple(notes) + (
            f"what the kernel charges {counted(len(unseen), 'cgroup')} ({', '.join(map(escape, unseen[:3]))}"
            f"{', ...' if len(unseen) > 3 else ''}) is unknown: the cgroup file system at {h.mount} was mounted "
            f"outside this process's cgroup namespace (its root reads {h.root}), so "
            f"{'their folders' if len(unseen) > 1 else 'its folder'} cannot be found",)
    nameless = sum(g.processes for g in cgroups if g.cgroup is None)
    if h and nameless:
        notes = tuple(notes) + (f"the cgroup of {counted(nameless, 'process', 'processes')} is unknown ('?'): "
                                "/proc/PID/cgroup could not be read (or, in a recording, was not recorded)",)
    if unknown:
        notes = tuple(notes) + (f"physical pages or charges unknown for {counted(unknown, 'object')}: a pagemap "
                                "or /proc/kpagecgroup could not be read (or, in a recording, was not recorded)",)
    cgroups.sort(key=lambda c: -sum(v for k, v in c.pss_bytes.items() if k != "hugetlb"))
    if not access.privileged:
        notes += ("physical pages and the cgroup charged for them (pagemap PFNs, /proc/kpagecgroup) need "
                  + pfns_need(access),)
    elif not pfns:
        notes += ("physical pages and the cgroup charged for them were left out (--no-pfns)",)
    # a process and one of its mappings of each object: what its file is read through
    sources = {(o["kind"], key[1], key[2]): (o["maps"][0][0], o["maps"][0][2]) for key, o in objects.items()}
    return Ledger(h.version if h else None, tuple(cgroups), tuple(out_objects), library_copies(out_objects, fs, sources),
                  access.privileged, complete, notes)


def _skipped(fs, access, results, named) -> tuple:
    """What the scan passed over, as the process view says it. A process the user named that is gone or
    may not be read is an error there, and so here; a zombie or kernel thread has no memory: a note."""
    zombies = kernel = vanished = 0
    for pid, _data, err in results:
        if err == "empty":
            state = fs.task_state(pid)
            if state is None:
                err = "vanished"
            elif state == "zombie":
                zombies += 1
            elif state == "kernel thread":
                kernel += named  # every host has them: said only of one the user named
        if err == "vanished":
            if named:
                raise NoSuchProcess(pid)
            vanished += 1
        if err == "denied" and named:
            raise AccessDenied(pid, f"process {pid}: {why_denied(fs, access, [pid])}")
    return tuple(note for n, note in ((zombies, f"{counted(zombies, 'zombie')} skipped (exited, no memory left)"),
                                      (kernel, f"{counted(kernel, 'kernel thread')} skipped (no user memory)"),
                                      (vanished, f"{counted(vanished, 'process', 'processes')} exited during "
                                                 "the scan")) if n)


SHMEM_KINDS = ("sysv", "posix", "memfd", "tmpfs")
FILE_KINDS = ("posix", "memfd", "tmpfs")  # tmpfs files: their size is the file's, not the mapped part


def _with_subtrees(cgroups) -> list:
    """Each cgroup with the listed cgroups below it and, where the charges of mapped pages are known,
    the shmem it is charged for that is in no mapping: memory.stat counts a cgroup's descendants too, so
    its shmem is set against the charged pages of its whole subtree."""
    import bisect

    by_path = {c.cgroup: c for c in cgroups if c.cgroup}
    paths = sorted(by_path)  # a cgroup's descendants are one run of this order: bisect, not all pairs
    out = []
    for c in cgroups:
        if c.cgroup is None:
            out.append(c)
            continue
        prefix = c.cgroup.rstrip("/") + "/"
        run = paths[bisect.bisect_left(paths, prefix):bisect.bisect_left(paths, prefix + "\U0010ffff")]
        below = tuple(p for p in run if p != c.cgroup)
        subtree = [c] + [by_path[p] for p in below]
        shmem = (c.memory_stat or {}).get("shmem")
        unmapped = None
        if shmem is not None and all(d.charged_bytes is not None for d in subtree):
            mapped = sum(d.charged_bytes.get(k, 0) for d in subtree for k in SHMEM_KINDS)
            unmapped = max(0, shmem - mapped)
        out.append(c._replace(unmapped_shmem_bytes=unmapped, descendants=below))
    return out


def _file_size(fs, where):
    try:
        return os.stat(fs.mapped_file(*where)).st_size
    except (ShmkitError, OSError):
        return None


def _file_digest(fs, where):
    """SHA-256 of the file a mapping maps (hashlib reads it in C), or None where it cannot be read."""
    import hashlib

    try:
        with open(fs.mapped_file(*where), "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest() if hasattr(hashlib, "file_digest") else \
                hashlib.sha256(f.read()).hexdigest()
    except (ShmkitError, OSError):
        return None


def _sysv_sizes(fs) -> dict:
    try:
        return {s.shmid: s.size for s in read_sysvipc_shm(fs)}
    except ShmkitError:
        return {}


def _charges(fs, h, objects, wanted, progress):
    """{object key: {"physical": bytes, "to": {cgroup: bytes}}} from pagemap PFNs and /proc/kpagecgroup;
    {} where PFNs cannot be read."""
    if not wanted:
        return {}
    groups = {key: [(pid, m.start, m.end) for pid, _cg, m, _rss, _pss in o["maps"]] for key, o in objects.items()}
    pfns_of = distinct_pfns_of(groups, fs, progress)  # None: unknown, never a false 0
    every = set().union(*(p for p in pfns_of.values() if p)) if pfns_of else set()
    try:
        owner = read_kpagecgroup(every, fs) if every else {}
    except (AccessDenied, NotFound, NoSuchProcess):
        owner = None  # no charges known (kpagecgroup unreadable, or not recorded)
    paths = inode_paths(h, fs) if (h and owner) else {}
    out = {}
    for key, pfns in pfns_of.items():
        if pfns is None:
            out[key] = {"physical": None, "to": None}
            continue
        to = None
        if owner is not None:
            to = {}
            # pages per cgroup inode counted in C (Counter over map): a Python loop per page was a third
            # of the PFN work (bench/ledger_speed.py)
            for ino, pages in Counter(map(owner.get, pfns)).items():
                if ino:
                    cg = paths.get(ino, f"(cgroup inode {ino})")
                    to[cg] = to.get(cg, 0) + pages * fs.page_size
        out[key] = {"physical": len(pfns) * fs.page_size, "to": to}
    return out


def library_copies(objects, fs, sources) -> tuple:
    """Libraries with the same content mapped from different files, as two container images ship them:
    the sharing they lose. The same content is the same GNU build-id or, for a library built without one,
    the same bytes (size, then SHA-256, read only where two such files have one size). `sources`:
    (kind, device, inode) -> (pid, mapping) of a process that maps the object, through which its file is
    read (a container's path names another file here)."""
    by_id, no_id = {}, {}
    for o in objects:
        if o.kind != "library_text":
            continue
        where = sources[(o.kind, o.device, o.inode)]
        try:
            bid = fs.build_id(*where)
        except ShmkitError:
            continue  # unreachable without CAP_SYS_ADMIN: not claimed to be a copy of anything
        if bid:
            by_id.setdefault(bid, []).append(o)
        elif not fs.recorded:  # a recording holds build-ids, not the files
            no_id.setdefault(_file_size(fs, where), []).append((o, where))
    for size, group in no_id.items():
        if size is None or len({(o.device, o.inode) for o, _ in group}) < 2:
            continue
        for o, where in group:
            digest = _file_digest(fs, where)
            if digest:
                by_id.setdefault("sha256:" + digest, []).append(o)
    out = []
    for bid, copies in by_id.items():
        files = {(c.device, c.inode) for c in copies}
        if len(files) < 2:
            continue
        cost = [c.physical_bytes if c.physical_bytes is not None else max(c.rss_sum_bytes // max(c.processes, 1), 0)
                for c in copies]
        out.append(LibraryCopies(os.path.basename(copies[0].name), bid, len(files), sum(cost) - max(cost),
                                 tuple(c.name for c in copies)))
    return tuple(sorted(out, key=lambda c: -c.extra_bytes))
