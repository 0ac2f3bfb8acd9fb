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
    """SmapsEntry records holding only the named fields (bytes), from raw smaps.

    The kernel prints the same fields in the same order for every mapping, so smaps is a table with a fixed
    number of lines per mapping: slicing every n-th line gives one field's column, converted in one
    `map(int, ...)`. Over 216 processes (5 MB of smaps) that is 27 ms against 45 ms for the regular
    expression below, which stays as the general way for a layout that is not uniform."""
    return _by_columns(data, tuple(fields)) or _by_pattern(data, tuple(fields))


def _by_columns(data: bytes, fields):
    lines = data.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    if not lines:
        return []
    stride = next((i for i in range(1, min(len(lines), 80)) if _is_header_bytes(lines[i])), len(lines))
    count = len(lines) // stride
    if count * stride != len(lines):
        return None
    names = [line.partition(b":")[0] for line in lines[1:stride]]
    columns = {}
    for f in fields:
        key = f.encode()
        if key not in names:
            continue
        column = b"".join(lines[names.index(key) + 1::stride])
        if column.count(key + b":") != count:
            return None  # not one such line per mapping: the layout is not the fixed table assumed here
        columns[f] = [v * 1024 for v in map(int, column.replace(key + b":", b" ").replace(b"kB", b" ").split())]
        if len(columns[f]) != count:
            return None
    keys = tuple(columns)
    rows = zip(*columns.values()) if keys else ((),) * count
    try:  # Mapping.from_line refuses a field line where a header should be
        return [SmapsEntry(Mapping.from_line(h.decode("utf-8", "surrogateescape")), dict(zip(keys, row)))
                for h, row in zip(lines[::stride], rows)]
    except ValueError:
        return None


def _is_header_bytes(line: bytes) -> bool:
    head = line.split(b" ", 1)[0]
    return b"-" in head and b":" not in head


def _by_pattern(data: bytes, fields) -> list:
    import re

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
