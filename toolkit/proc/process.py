"""Processes: the list of pids, who owns each, what it is called."""
from __future__ import annotations

from toolkit.errors import ShmkitError
from toolkit.proc.fs import ProcFS, default_fs


def list_pids(fs: ProcFS | None = None) -> list:
    fs = fs or default_fs()
    return sorted(int(d) for d in fs.listdir() if d.isdigit())


def parse_status(text: str) -> dict:
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def read_status(pid, fs: ProcFS | None = None) -> dict:
    return parse_status((fs or default_fs()).read_text(pid, "status"))


def read_cmdline(pid, fs: ProcFS | None = None) -> str:
    raw = (fs or default_fs()).read_text(pid, "cmdline")
    return raw.replace("\0", " ").strip()


def read_identity(pid, fs: ProcFS | None = None) -> tuple:
    """(uid, command): the real uid from status, the command line or [name] for kernel threads."""
    status = read_status(pid, fs)
    uid = int(status.get("Uid", "0").split()[0])
    cmd = read_cmdline(pid, fs) or f"[{status.get('Name', '?')}]"
    return uid, cmd


def processes_of(pids, fs: ProcFS | None = None) -> list:
    """The PIDs a user named, each once, in their order; a thread's id (which /proc also answers to,
    with its process's memory) becomes its process's, so that nothing is counted twice."""
    fs = fs or default_fs()
    out, seen = [], set()
    for pid in pids:
        try:
            tgid = int(read_status(pid, fs).get("Tgid", pid))
        except (ShmkitError, ValueError):
            tgid = pid  # gone or unreadable: the scan says which, for this number
        if tgid not in seen:
            seen.add(tgid)
            out.append(tgid)
    return out
