"""Memory cgroups through the gateway: which cgroup a process is in, the hierarchy's mount, what the
kernel charges a cgroup (memory.stat), and the cgroup directory behind an inode (/proc/kpagecgroup).

v1 and v2 differ in names (Documentation/admin-guide/cgroup-v1/memory.rst, cgroup-v2.rst): v1 `rss`,
`cache`, `shmem`, `mapped_file` (hierarchical as `total_*`); v2 `anon`, `file`, `shmem`, `file_mapped`.
"""
from __future__ import annotations

import os
from typing import Optional

from toolkit.errors import AccessDenied, NoSuchProcess, NotFound, ShmkitError
from toolkit.proc.fs import ProcFS, default_fs
from toolkit.records import Hierarchy

V1_FIELDS = ("rss", "cache", "shmem", "mapped_file")
V2_FIELDS = ("anon", "file", "shmem", "file_mapped")


def memory_hierarchy(fs: ProcFS | None = None) -> Optional[Hierarchy]:
    """The hierarchy that accounts memory here: the v1 memory controller if mounted, else cgroup2."""
    return controller_hierarchy("memory", fs)


def controller_hierarchy(controller: str, fs: ProcFS | None = None) -> Optional[Hierarchy]:
    """The hierarchy of a controller here: its v1 mount if there is one, else cgroup2."""
    from toolkit.proc.mounts import read_mounts

    v2 = None
    for m in read_mounts("self", fs or default_fs()):
        if m.fstype == "cgroup" and controller in m.super_options:
            return Hierarchy(1, m.point, m.root, controller)
        if m.fstype == "cgroup2" and v2 is None:
            v2 = Hierarchy(2, m.point, m.root, controller)
    return v2


def task_headroom(fs: ProcFS | None = None):
    """(how many more tasks this process's cgroup and its ancestors allow, what says so) under the pids
    controller (a container's pids limit); None where no limit applies or none can be read. A task is a
    thread: pids.current counts every thread of every process in the cgroup."""
    fs = fs or default_fs()
    h = controller_hierarchy("pids", fs)
    try:
        path = process_cgroup("self", h, fs) if h else None
    except ShmkitError:
        return None
    if path is None:
        return None
    best = None
    while True:
        d = cgroup_dir(path, h)
        if d is None:
            break
        try:
            limit = fs.host_read_text(os.path.join(d, "pids.max")).strip()
            current = int(fs.host_read_text(os.path.join(d, "pids.current")).strip())
        except (ShmkitError, ValueError):
            limit = None
        if limit and limit.isdigit():  # "max": no limit at this level
            room = int(limit) - current
            if best is None or room < best[0]:
                best = (room, f"pids.max of cgroup {path} is {limit} and {current} tasks run in it")
        if path in ("/", "") or path.rstrip("/") == h.root.rstrip("/"):
            break
        path = os.path.dirname(path.rstrip("/")) or "/"
    return best


def process_cgroup(pid, h: Hierarchy, fs: ProcFS | None = None) -> Optional[str]:
    """The process's cgroup in that hierarchy, from /proc/PID/cgroup ("/system.slice/x.service")."""
    fs = fs or default_fs()
    for line in fs.read_text(pid, "cgroup").splitlines():
        _hid, ctrls, path = line.split(":", 2)
        if (h.version == 1 and h.controller in ctrls.split(",")) or (h.version == 2 and _hid == "0" and ctrls == ""):
            return path
    return None


def cgroup_dir(path: str, h: Hierarchy) -> Optional[str]:
    """The host folder of a cgroup path (None where the mount does not show it)."""
    root = h.root.rstrip("/")
    if root and not (path == root or path.startswith(root + "/")):
        return None
    return os.path.join(h.mount, path[len(root):].lstrip("/"))


UNLIMITED_V1 = 1 << 62  # v1 reports "no limit" as the largest page-aligned long (9223372036854771712)


def memory_limit(pid="self", fs: ProcFS | None = None) -> Optional[tuple]:
    """(bytes, cgroup path) of the tightest memory limit on the process's cgroup and the ancestors the
    mount shows (v2 memory.max, v1 memory.limit_in_bytes); None where there is none, or it cannot be read.
    A container's limit is usually here, not in MemAvailable."""
    fs = fs or default_fs()
    h = memory_hierarchy(fs)
    if h is None:
        return None
    try:
        path = process_cgroup(pid, h, fs)
    except ShmkitError:
        return None
    name = "memory.max" if h.version == 2 else "memory.limit_in_bytes"
    best = None
    while path:
        d = cgroup_dir(path, h)
        if d is None:
            break
        try:
            text = fs.host_read_text(os.path.join(d, name)).strip()
        except (AccessDenied, NotFound, NoSuchProcess):
            text = ""
        if text.isdigit() and int(text) < UNLIMITED_V1 and (best is None or int(text) < best[0]):
            best = (int(text), path)
        if path == "/":
            break
        path = os.path.dirname(path.rstrip("/")) or "/"
    return best


def memory_stat(path: str, h: Hierarchy, fs: ProcFS | None = None) -> Optional[dict]:
    """What the kernel charges the cgroup, in bytes, by the hierarchy's own names; None if unreadable.
    v1 gives the hierarchical totals (as v2 does), under the plain names."""
    fs = fs or default_fs()
    d = cgroup_dir(path, h)
    if d is None:
        return None
    try:
        text = fs.host_read_text(os.path.join(d, "memory.stat"))
    except (AccessDenied, NotFound, NoSuchProcess):
        return None
    raw = {}
    for line in text.splitlines():
        k, _, v = line.partition(" ")
        if v.strip().isdigit():
            raw[k] = int(v)
    if h.version == 1:
        return {k: raw.get("total_" + k, raw.get(k)) for k in V1_FIELDS if ("total_" + k) in raw or k in raw}
    return {k: raw[k] for k in V2_FIELDS if k in raw}


def inode_paths(h: Hierarchy, fs: ProcFS | None = None) -> dict:
    """{inode of a cgroup's folder: its cgroup path}: what /proc/kpagecgroup's numbers name."""
    fs = fs or default_fs()
    if fs.recorded:
        return {int(k): v for k, v in fs._recorded_stat().get("cgroup_inodes", {}).items()}
    base = fs.host_path(h.mount)
    out = {}
    root = h.root.rstrip("/")
    for dirpath, _dirs, _files in os.walk(base):
        try:
            ino = os.stat(dirpath).st_ino
        except OSError:
            continue
        rel = os.path.relpath(dirpath, base)
        out[ino] = (root + "/" + rel) if rel != "." else (root or "/")
    return out
