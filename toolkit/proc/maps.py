"""/proc/PID/maps, /proc/PID/smaps and /proc/PID/smaps_rollup."""
from __future__ import annotations

from toolkit.proc.fs import ProcFS, default_fs
from toolkit.records import Mapping, Rollup, SmapsEntry


def parse_maps(text: str) -> list:
    return [Mapping.from_line(line) for line in text.splitlines() if line.strip()]


def read_maps(pid, fs: ProcFS | None = None) -> list:
    return parse_maps((fs or default_fs()).read_text(pid, "maps"))


def _is_header(line: str) -> bool:
    # a header starts with 'lo-hi ' in hex; a field line starts with 'Name:'
    head = line.split(" ", 1)[0]
    return "-" in head and ":" not in head


def parse_smaps(text: str) -> list:
    entries, header, body = [], None, []
    for line in text.splitlines():
        if not line:
            continue
        if _is_header(line):
            if header is not None:
                entries.append(SmapsEntry.from_block(header, body))
            header, body = line, []
        else:
            body.append(line)
    if header is not None:
        entries.append(SmapsEntry.from_block(header, body))
    return entries


def read_smaps(pid, fs: ProcFS | None = None) -> list:
    return parse_smaps((fs or default_fs()).read_text(pid, "smaps"))


def has_smaps_rollup(pid="self", fs: ProcFS | None = None) -> bool:
    """smaps_rollup arrived in Linux 4.14; probe for it rather than trust the version."""
    return (fs or default_fs()).exists(pid, "smaps_rollup")


def parse_rollup(pid, text: str) -> Rollup:
    lines = text.splitlines()
    header = next((i for i, line in enumerate(lines) if _is_header(line)), None)
    body = lines[header + 1:] if header is not None else lines
    entry = SmapsEntry.from_block(lines[header] if header is not None else "0-0 ---p 0 00:00 0", body)
    return Rollup(pid, dict(entry.fields), True)


def rollup_from_smaps(pid, entries) -> Rollup:
    total = {}
    for e in entries:
        for k, v in e.fields.items():
            if k in ("KernelPageSize", "MMUPageSize", "THPeligible", "ProtectionKey"):
                continue
            total[k] = total.get(k, 0) + v
    return Rollup(pid, total, False)


def read_rollup(pid, fs: ProcFS | None = None) -> Rollup:
    fs = fs or default_fs()
    if has_smaps_rollup(pid, fs):
        return parse_rollup(pid, fs.read_text(pid, "smaps_rollup"))
    return rollup_from_smaps(pid, read_smaps(pid, fs))


def find_mapping(entries, address: int):
    """The maps or smaps entry that contains address."""
    for e in entries:
        m = e.mapping if isinstance(e, SmapsEntry) else e
        if m.start <= address < m.end:
            return e
    return None
