"""/proc/PID/maps, /proc/PID/smaps and /proc/PID/smaps_rollup."""
from __future__ import annotations

import errno
import os
import struct

from toolkit.errors import NoSuchProcess
from toolkit.proc.fs import ProcFS, default_fs
from toolkit.records import Mapping, Rollup, SmapsEntry, SmapsTable


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


def read_smaps_table(pid, fs: ProcFS | None = None, fields=()) -> SmapsTable:
    """The named smaps fields of pid as columns, for a scan of every process (see SmapsTable)."""
    return smaps_table((fs or default_fs()).read_bytes(pid, "smaps"), fields)


def parse_smaps_fields(data: bytes, fields) -> list:
    """SmapsEntry records holding only the named fields (bytes), from raw smaps."""
    return smaps_table(data, fields).entries()


_HEADER = None
_FIELD_PATTERNS = {}


def smaps_table(data: bytes, fields) -> SmapsTable:
    """Raw smaps as a SmapsTable of the named fields.

    The kernel prints the same fields in the same order for every mapping, so smaps is a table with a fixed
    number of lines per mapping: slicing every n-th line gives one field's column, converted in one
    `map(int, ...)`, and one regular expression splits every header line at once. Over 216 processes (5 MB
    of smaps) that is 27 ms against 45 ms for a regular expression over the whole text, which stays as the
    general way for a layout that is not uniform."""
    fields = tuple(fields)
    return SmapsTable(*(_by_columns(data, fields) or _by_pattern(data, fields)))


def _headers(lines) -> list:
    """(range, perms, offset, device, inode, path) of each header line, as bytes, by one regular expression;
    a line that is not a maps line is left out (the callers compare the counts)."""
    global _HEADER
    if _HEADER is None:
        import re

        # maps pads the path with spaces; the first word of a field line ends in ':', so never matches
        _HEADER = re.compile(rb"^([0-9a-f]+-[0-9a-f]+) (\S+) ([0-9a-f]+) ([0-9a-f]+:[0-9a-f]+) (\d+) *(.*)$", re.M)
    return _HEADER.findall(b"\n".join(lines))


def _by_columns(data: bytes, fields):
    """(headers split, {field: values}) where smaps is the fixed table described above; None otherwise."""
    lines = data.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    if not lines:
        return [], {}
    # VmFlags (Linux 3.8+) closes every mapping's block; else look for the second header line
    flags = data.find(b"\nVmFlags:")
    stride = (data.count(b"\n", 0, flags) + 2 if flags >= 0 else
              next((i for i in range(1, min(len(lines), 80)) if _is_header_bytes(lines[i])), len(lines)))
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
    heads = _headers(lines[::stride])
    if len(heads) != count:
        return None  # a field line where a header should be (a cut file)
    return heads, columns


def _is_header_bytes(line: bytes) -> bool:
    head = line.split(b" ", 1)[0]
    return b"-" in head and b":" not in head


def _by_pattern(data: bytes, fields):
    """(headers split, {field: values}) by one regular expression over the whole text, mapping by mapping; a
    field a mapping lacks counts 0 there (and the column is left out where no mapping has it)."""
    import re

    pattern = _FIELD_PATTERNS.get(fields)
    if pattern is None:
        names = b"|".join(re.escape(f.encode()) for f in fields)
        pattern = _FIELD_PATTERNS[fields] = re.compile(
            rb"^(?:([0-9a-f]+-[0-9a-f]+ [^\n]*)|(" + names + rb"):\s+(\d+) kB)$", re.M)
    heads, rows = [], []
    for header, key, value in pattern.findall(data):
        if header:
            heads.append(header)
            rows.append({})
        elif rows:
            rows[-1][key.decode()] = int(value) * 1024
    present = [f for f in fields if any(f in r for r in rows)]
    split = _headers(heads)
    if len(split) != len(heads):  # a header the strict expression refuses: split each as maps_line does
        split = [_split_header(h) for h in heads]
    return split, {f: [r.get(f, 0) for r in rows] for f in present}


def _split_header(line: bytes) -> tuple:
    parts = line.split(None, 5)
    return tuple(parts[:5]) + ((parts[5] if len(parts) > 5 else b""),)


def has_smaps_rollup(pid="self", fs: ProcFS | None = None) -> bool:
    """smaps_rollup arrived in Linux 4.14; probe for it rather than trust the version."""
    return (fs or default_fs()).exists(pid, "smaps_rollup")


_ROLLUP_LINE = None


_ROLLUP_FIELDS = {}


def parse_rollup(pid, data, fields=None) -> Rollup:
    """smaps_rollup text (str or bytes): every 'Name: N kB' line, in bytes, or only the named fields. One
    regular expression over the block (the C engine finds the fields): a third of the time of splitting it
    line by line, which mattered for `--watch` over 1000 processes (bench/watch_cost.py)."""
    global _ROLLUP_LINE
    import re

    if fields:
        pattern = _ROLLUP_FIELDS.get(fields)
        if pattern is None:
            names = b"|".join(re.escape(f.encode()) for f in fields)
            pattern = _ROLLUP_FIELDS[fields] = re.compile(rb"^(" + names + rb"):\s+(\d+)( kB)?$", re.M)
    else:
        if _ROLLUP_LINE is None:
            _ROLLUP_LINE = re.compile(rb"^([A-Za-z_]+):\s+(\d+)( kB)?$", re.M)
        pattern = _ROLLUP_LINE
    if isinstance(data, str):
        data = data.encode()
    return Rollup(pid, {k.decode(): int(v) * (1024 if kb else 1) for k, v, kb in pattern.findall(data)}, True)


def rollup_from_smaps(pid, entries) -> Rollup:
    total = {}
    for e in entries:
        for k, v in e.fields.items():
            if k in ("KernelPageSize", "MMUPageSize", "THPeligible", "ProtectionKey"):
                continue
            total[k] = total.get(k, 0) + v
    return Rollup(pid, total, False)


def read_rollup(pid, fs: ProcFS | None = None, fields=None) -> Rollup:
    """Totals of a process (all of them, or the named fields: a tuple). Empty fields where it has no
    address space (a kernel thread, a zombie: the kernel answers ESRCH); the sum of smaps where the kernel
    has no smaps_rollup (before 4.14)."""
    fs = fs or default_fs()
    try:
        return parse_rollup(pid, fs.read_whole(pid, "smaps_rollup"), fields)
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


# PROCMAP_QUERY (Linux 6.11): an ioctl on an open /proc/PID/maps that finds the next mapping with the
# properties asked for, filtered in the kernel, with no text made. Asking for shared mappings only, a
# process that has none costs one call: 1000 processes took 5 ms of CPU against 25-31 ms for a read of
# their maps text through kept descriptors (bench/watch_cost.py prints a whole scan's floor both ways).
_PROCMAP_QUERY = 0xC0686611  # _IOWR('f', 17, struct procmap_query): 104 bytes
_QUERY = struct.Struct("=9Q4I2Q")  # size, flags, addr, start, end, vma flags, page size, offset, inode,
#                                    dev major, dev minor, name size, build id size, name addr, build id addr
_READ, _WRITE, _EXEC, _SHARED, _COVERING_OR_NEXT = 0x01, 0x02, 0x04, 0x08, 0x10


class SharedMapsQuery:
    """The shared mappings (MAP_SHARED, 's' in maps) of a process through a kept maps descriptor, as
    Mapping records equal to what its maps lines would give."""

    NAME_MAX = 4096 + 16  # PATH_MAX and ' (deleted)'; a longer name fails with ENAMETOOLONG

    def __init__(self):
        import array

        self._name = array.array("B", bytes(self.NAME_MAX))  # the kernel writes names here
        self._name_addr = self._name.buffer_info()[0]

    @staticmethod
    def supported() -> bool:
        """Whether this kernel answers PROCMAP_QUERY (probed on our own maps, not guessed from a version)."""
        import fcntl

        try:
            fd = os.open("/proc/self/maps", os.O_RDONLY)
        except OSError:
            return False
        try:
            arg = bytearray(_QUERY.pack(_QUERY.size, _COVERING_OR_NEXT, 0, *([0] * 12)))
            fcntl.ioctl(fd, _PROCMAP_QUERY, arg)
            return True
        except OSError as err:
            return err.errno == errno.ENOENT
        finally:
            os.close(fd)

    def shared(self, fd) -> list:
        """Raw OSError for the caller: ESRCH once the address space is gone (exit, exec, kernel thread),
        ENAMETOOLONG for a name past NAME_MAX."""
        import fcntl

        out, addr = [], 0
        name = self._name
        while True:
            arg = bytearray(_QUERY.pack(_QUERY.size, _SHARED | _COVERING_OR_NEXT, addr, 0, 0, 0, 0, 0, 0, 0, 0,
                                        self.NAME_MAX, 0, self._name_addr, 0))
            try:
                fcntl.ioctl(fd, _PROCMAP_QUERY, arg)
            except OSError as err:
                if err.errno == errno.ENOENT:  # no shared mapping at or after addr
                    return out
                raise
            (_, _, _, start, end, flags, _, offset, inode, major, minor, name_size, _, _, _) = _QUERY.unpack(arg)
            # the size counts the closing NUL; the name comes whole, as Mapping keeps names
            text = name[:name_size - 1].tobytes().decode("utf-8", "surrogateescape") if name_size else ""
            perms = ("r" if flags & _READ else "-") + ("w" if flags & _WRITE else "-") + \
                ("x" if flags & _EXEC else "-") + "s"
            deleted = text.endswith(" (deleted)")
            out.append(Mapping(start, end, perms, offset, f"{major:02x}:{minor:02x}", inode,
                               text[:-len(" (deleted)")] if deleted else text, deleted))
            addr = end
