"""/proc/PID/maps, /proc/PID/smaps and /proc/PID/smaps_rollup."""
from __future__ import annotations

from toolkit.errors import NoSuchProcess
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


def read_smaps(pid, fs: ProcFS | None = None, fields=None) -> list:
    """Every mapping of pid with its smaps fields; with `fields`, only those (a scan of every process
    that needs four fields out of twenty parses a fifth of the text: 3x faster, measured in
    bench/ledger_speed.py)."""
    fs = fs or default_fs()
    if fields is None:
        return parse_smaps(fs.read_text(pid, "smaps"))
    return parse_smaps_fields(fs.read_bytes(pid, "smaps"), fields)


_FIELD_PATTERNS = {}


def parse_smaps_fields(data: bytes, fields) -> list:
    """SmapsEntry records holding only the named fields (bytes), from raw smaps. One regular expression
    finds the header lines and the wanted fields in C; Python sees a third of the lines."""
    import re

    fields = tuple(fields)
    pattern = _FIELD_PATTERNS.get(fields)
    if pattern is None:
        names = b"|".join(re.escape(f.encode()) for f in fields)
        pattern = _FIELD_PATTERNS[fields] = re.compile(
            rb"^(?:([0-9a-f]+-[0-9a-f]+ [^\n]*)|(" + names + rb"):\s+(\d+) kB)$", re.M)
    entries, mapping, values = [], None, None
    for header, key, value in pattern.findall(data):
        if header:
            if mapping is not None:
                entries.append(SmapsEntry(mapping, values))
            mapping, values = Mapping.from_line(header.decode("utf-8", "surrogateescape")), {}
        else:
            values[key.decode()] = int(value) * 1024
    if mapping is not None:
        entries.append(SmapsEntry(mapping, values))
    return entries


def has_smaps_rollup(pid="self", fs: ProcFS | None = None) -> bool:
    """smaps_rollup arrived in Linux 4.14; probe for it rather than trust the version."""
    return (fs or default_fs()).exists(pid, "smaps_rollup")


_ROLLUP_LINE = None


def parse_rollup(pid, data) -> Rollup:
    """smaps_rollup text (str or bytes): every 'Name: N kB' line, in bytes. One regular expression over the
    block (the C engine finds the fields): a third of the time of splitting it line by line, which mattered
    for `--watch` over 1000 processes (bench/watch_cost.py)."""
    global _ROLLUP_LINE
    if _ROLLUP_LINE is None:
        import re

        _ROLLUP_LINE = re.compile(rb"^([A-Za-z_]+):\s+(\d+)( kB)?$", re.M)
    if isinstance(data, str):
        data = data.encode()
    return Rollup(pid, {k.decode(): int(v) * (1024 if kb else 1) for k, v, kb in _ROLLUP_LINE.findall(data)}, True)


def rollup_from_smaps(pid, entries) -> Rollup:
    total = {}
    for e in entries:
        for k, v in e.fields.items():
            if k in ("KernelPageSize", "MMUPageSize", "THPeligible", "ProtectionKey"):
                continue
            total[k] = total.get(k, 0) + v
    return Rollup(pid, total, False)


def read_rollup(pid, fs: ProcFS | None = None) -> Rollup:
    """Totals of a process. Empty fields where it has no address space (a kernel thread, a zombie:
    the kernel answers ESRCH); the sum of smaps where the kernel has no smaps_rollup (before 4.14)."""
    fs = fs or default_fs()
    try:
        return parse_rollup(pid, fs.read_bytes(pid, "smaps_rollup"))
    except NoSuchProcess:
        if not fs.exists(pid):
            raise
        if has_smaps_rollup(pid, fs):
            return Rollup(pid, {}, True)
    return rollup_from_smaps(pid, read_smaps(pid, fs))


def find_mapping(entries, address: int):
    """The maps or smaps entry that contains address."""
    for e in entries:
        m = e.mapping if isinstance(e, SmapsEntry) else e
        if m.start <= address < m.end:
            return e
    return None
