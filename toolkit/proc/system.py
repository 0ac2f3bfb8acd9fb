"""/proc/sysvipc/shm, /proc/meminfo and the limits on shared-memory sizes."""
from __future__ import annotations

import os

from toolkit.errors import ShmkitError
from toolkit.proc.cgroup import memory_limit
from toolkit.proc.fs import ProcFS, default_fs
from toolkit.records import Limits, SysvShm


def parse_sysvipc_shm(text: str) -> list:
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return []
    header = lines[0].split()
    return [SysvShm.from_row(header, line.split()) for line in lines[1:]]


def read_sysvipc_shm(fs: ProcFS | None = None) -> list:
    return parse_sysvipc_shm((fs or default_fs()).read_text("sysvipc", "shm"))


def parse_meminfo(text: str) -> dict:
    out = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        words = rest.split()
        if words:
            out[key] = int(words[0]) * (1024 if len(words) > 1 and words[1] == "kB" else 1)
    return out


def read_meminfo(fs: ProcFS | None = None) -> dict:
    return parse_meminfo((fs or default_fs()).read_text("meminfo"))


def _read_int(fs: ProcFS, *rel) -> int:
    return int(fs.read_text(*rel).split()[0])


def dev_shm_free(fs: ProcFS | None = None):
    st = (fs or default_fs()).host_statvfs("/dev/shm")
    return None if st is None else st.f_bavail * st.f_frsize


def read_limits(fs: ProcFS | None = None) -> Limits:
    fs = fs or default_fs()
    mem = read_meminfo(fs)
    cgroup = memory_limit("self", fs)
    return Limits(
        shmmax=_read_int(fs, "sys", "kernel", "shmmax"),
        shmall=_read_int(fs, "sys", "kernel", "shmall"),
        shmmni=_read_int(fs, "sys", "kernel", "shmmni"),
        page_size=os.sysconf("SC_PAGE_SIZE"),
        dev_shm_free=dev_shm_free(fs),
        mem_available=mem.get("MemAvailable"),
        cgroup_limit=cgroup[0] if cgroup else None,
        cgroup=cgroup[1] if cgroup else None,
    )


HUGEPAGES = "/sys/kernel/mm/hugepages"


def hugepage_pools(fs: ProcFS | None = None):
    """{huge page size in bytes: pages in its pool (nr_hugepages + surplus_hugepages)} from
    /sys/kernel/mm/hugepages; None where that folder cannot be read (a recording made without it)."""
    fs = fs or default_fs()
    try:
        names = fs.host_listdir(HUGEPAGES)
    except ShmkitError:
        return None
    if not names and not fs.host_isdir(HUGEPAGES):
        return None
    pools = {}
    for name in names:
        if not (name.startswith("hugepages-") and name.endswith("kB")):
            continue
        try:
            size = int(name[len("hugepages-"):-2]) * 1024
            pools[size] = sum(int(fs.host_read_text(f"{HUGEPAGES}/{name}/{f}").split()[0])
                              for f in ("nr_hugepages", "surplus_hugepages"))
        except (ShmkitError, ValueError, IndexError):
            continue
    return pools


def oom_kills(fs: ProcFS | None = None):
    """Processes the OOM killer has killed since boot (/proc/vmstat oom_kill, Linux 4.13); None without it."""
    try:
        text = (fs or default_fs()).read_text("vmstat")
    except ShmkitError:
        return None
    for line in text.splitlines():
        if line.startswith("oom_kill "):
            return int(line.split()[1])
    return None


def memory_bound(nbytes: int, limits: Limits):
    """Where nbytes cannot fit, as the end of a refusal ("available memory (...)", a cgroup's limit);
    None where it fits both."""
    from toolkit.units import size_words

    if limits.mem_available is not None and nbytes > limits.mem_available:
        return f"available memory ({size_words(limits.mem_available)} MemAvailable)"
    if limits.cgroup_limit is not None and nbytes > limits.cgroup_limit:
        return (f"the memory limit of cgroup {limits.cgroup} ({size_words(limits.cgroup_limit)}): the OOM killer "
                "would end the run")
    return None


def raise_nofile(want: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE towards `want`, as far as the hard limit lets any process
    (systemd's advice for programs that hold many descriptors); the soft limit it has now."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= want:
        return want if soft == resource.RLIM_INFINITY else soft
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft
