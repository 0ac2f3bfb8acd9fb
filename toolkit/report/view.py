"""Views declared as data, and one renderer for all of them.

A view is its columns (title, how to get the value from a row, how to show it, whether the text may
fold, whether the column may be left out on a narrow terminal, its total) and its rows. The same
declaration gives the table, the rows as JSON-ready dicts, and CSV, as smem's `fields` tables do.

At any width, numbers and ids (pid, shmid, key, sizes) stay whole on one line; long text (a command,
a path, a name) folds onto more lines instead of being cut. Where even the whole numbers do not fit,
optional columns are left out, and the table says which (JSON has them all).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional


class Column(NamedTuple):
    title: str
    get: Callable[[Any], Any]  # the raw value of a row (JSON, CSV)
    fmt: Callable[[Any], str] = str  # the cell text
    key: str = ""  # JSON/CSV key; the title in lower case by default
    text: bool = False  # prose that may fold onto more lines (command, path); numbers never
    ident: bool = False  # with text: a name, kept on one line up to half the width, folded (never cut) beyond
    optional: int = 0  # >0: may be left out when the table cannot fit; higher goes first
    total: Optional[Callable[[list], Any]] = None  # the footer value from all rows
    right: bool = False  # right-aligned (sizes, counts)

    @property
    def json_key(self) -> str:
        return self.key or self.title.lower().replace(" ", "_")


class View(NamedTuple):
    title: str
    columns: tuple
    rows: list
    notes: tuple = ()


def _capped(text: str, width: int) -> str:
    """Prose longer than a few lines of a table (a command line of kilobytes) ends with how much more
    there is; --json has all of it. Said in words, not with an ellipsis that could pass for data."""
    cap = max(60, width * 2)
    if len(text) <= cap:
        return text
    more = f" [+{len(text) - cap + 12} chars]"
    return text[:cap - 12] + more


def _width(text: str) -> int:
    if "\n" not in text:
        return cell_len(text)
    return max(cell_len(line) for line in text.split("\n"))


def cell(col: Column, row) -> str:
    value = col.get(row)
    if value is None:
        return "-"
    if isinstance(value, str):  # data (a name, a command): escaped whole, so that it cannot break a row
        return escape(col.fmt(value))
    # a record or number formatted by the view itself may hold lines of its own (a time, then its faults)
    text = str(col.fmt(value))
    if "\n" not in text:
        return escape(text)
    return "\n".join(escape(line) for line in text.split("\n"))


# ------------------------------------------------------------------ names can hold any byte

_CONTROL = {c: f"\\x{c:02x}" for c in list(range(0x20)) + list(range(0x7F, 0xA0))}
_CONTROL.update({0x0A: "\\n", 0x09: "\\t", 0x0D: "\\r", 0x5C: "\\\\"})
# bidirectional controls reorder what follows on the line (a name could make a row read backwards, the
# "Trojan Source" trick), and the Unicode line and paragraph separators break lines in some viewers
_CONTROL.update({c: f"\\u{c:04x}" for c in (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F),
                                             *range(0x2066, 0x206A), 0x2028, 0x2029)})


def escape(text) -> str:
    """Printable, one-line, valid UTF-8 text of any name: control characters as \\n, \\t, \\x1b;
    bidirectional controls as \\u202e; bytes that are not UTF-8 (surrogate-escaped by os.listdir) as
    \\xff; a backslash doubled, so that no crafted name can fake another row or pass for an escape."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "surrogateescape")
    out = text.translate(_CONTROL)
    # isascii() first: a test of each character in Python was a fifth of drawing 1000 rows
    if not out.isascii() and any(0xD800 <= ord(ch) <= 0xDFFF for ch in out):  # lone surrogates: the raw bytes that were not UTF-8
        out = "".join(f"\\x{ord(ch) - 0xDC00:02x}" if 0xDC80 <= ord(ch) <= 0xDCFF else ch for ch in out)
    return out


def json_text(doc, indent=2) -> str:
    """JSON of a report for strict parsers. The fields that carry names are escaped where they are made;
    a byte that is not UTF-8 anywhere else (a library path inside a story, a maps name) would be a lone
    surrogate, which json writes as \\udcff and strict parsers refuse: those strings are escaped here, once,
    and only when there is one (the check costs a substring search)."""
    import json

    text = json.dumps(doc, indent=indent)
    return text if "\\udc" not in text else json.dumps(_escaped_strays(doc), indent=indent)


def _escaped_strays(o):
    if isinstance(o, str):
        return escape(o) if any("\udc80" <= ch <= "\udcff" for ch in o) else o
    if isinstance(o, dict):
        return {_escaped_strays(k): _escaped_strays(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_escaped_strays(v) for v in o]
    return o


def raw_hex(text) -> str:
    """The exact bytes of a name (as the file system has them), in hex."""
    if isinstance(text, str):
        text = text.encode("utf-8", "surrogateescape")
    return text.hex()


# ------------------------------------------------------------------ renderers


def to_rows(view: View) -> list:
    return [{c.json_key: c.get(r) for c in view.columns} for r in view.rows]


def render(view: View, console, show_footer: bool = False) -> None:
    """A table that fits console.width without cutting a number or an id."""
    for part in renderables(view, console, show_footer):
        console.print(part)


# ------------------------------------------------------------------ plain text at a width


class Block(str):
    """Text already laid out to the width (a table): printed as it is, never wrapped again."""


class Console:
    """Where the views print: a width and a file. Tables and prose are laid out here as plain text, so
    a command that prints a table needs no rich (50 ms of imports, and 0.3 s to draw 1000 rows; measured
    in bench/system_speed.py). The width is $COLUMNS, else the terminal's, else 80 (as rich has it)."""

    def __init__(self, file=None, width=None, stderr=False):
        import sys

        self.file = file or (sys.stderr if stderr else sys.stdout)
        self.is_terminal = hasattr(self.file, "isatty") and self.file.isatty()
        self.width = width or terminal_width(self.file)

    def print(self, *parts) -> None:
        for part in parts:
            text = part if isinstance(part, Block) else "\n".join(wrap(str(part), self.width))
            self.file.write(text + "\n")


def terminal_width(file=None) -> int:
    """$COLUMNS, else the width of the terminal `file` (stdout by default) is, else 80 (as rich has it)."""
    import os
    import sys

    env = os.environ.get("COLUMNS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    file = file or sys.stdout
    try:
        if file.isatty():
            return os.get_terminal_size(file.fileno()).columns or 80
    except (OSError, ValueError, AttributeError):
        pass
    return 80


def cell_len(text: str) -> int:
    """Columns the text takes on a terminal: East Asian wide characters take two, combining marks none."""
    if text.isascii():
        return len(text)
    import unicodedata

    return sum(0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in "WF" else 1
               for ch in text)


def _chop(word: str, width: int) -> list:
    """A word longer than the width, folded into pieces that fit (never cut off); a path folds after a
    '/' where one falls in the second half of the line (/usr/lib/x86_64-linux-gnu/ | libc.so.6)."""
    out, piece = [], ""
    for ch in word:
        if piece and cell_len(piece + ch) > width:
            cut = piece.rfind("/") + 1
            if cut * 2 <= len(piece) or cut == len(piece):
                cut = len(piece)
            out.append(piece[:cut])
            piece = piece[cut:]
        piece += ch
    return out + [piece]


_UNITS = frozenset(("B", "KiB", "MiB", "GiB", "TiB", "ns", "µs", "ms", "s", "pages", "page", "faults", "fault"))


def _words(body: str) -> list:
    """The words of a line, a number and its unit as one ('28.0 KiB'), so that no break parts them."""
    words = []
    for word in body.split(" "):
        if words and word.rstrip(",;:.)") in _UNITS and words[-1][-1:].isdigit():  # "KiB," too
            words[-1] += " " + word
        else:
            words.append(word)
    return words


def wrap(text: str, width: int) -> list:
    """Lines of at most `width` columns: broken at spaces, a longer word folded; the text's own line breaks
    and a line's leading indent kept."""
    width = max(1, width)
    out = []
    for para in text.split("\n"):
        if cell_len(para) <= width:
            out.append(para.rstrip())
            continue
        body = para.lstrip(" ")
        indent = para[: len(para) - len(body)] if len(para) - len(body) < width // 2 else ""
        line, fresh = indent, True  # fresh: nothing but the indent on this line yet
        for word in _words(body):
            candidate = line + word if fresh else line + " " + word
            if cell_len(candidate) <= width:
                line, fresh = candidate, fresh and not word
                continue
            if not fresh:
                out.append(line.rstrip())
            if cell_len(word) > width:
                *full, line = _chop(word, width)
                out.extend(full)
            else:
                line = word
            fresh = not word  # the second of two spaces ('claim  [shown]') does not start the next line
        out.append(line.rstrip())
    return out


def _pad(text: str, width: int, right: bool) -> str:
    gap = " " * max(0, width - cell_len(text))
    return gap + text if right else text + gap


def renderables(view: View, console, show_footer: bool = False) -> list:
    """What render() prints: the table as one Block, then what did not fit and the notes as prose."""
    width = console.width
    cells = [[_capped(cell(c, r), width) if c.text and not c.ident else cell(c, r) for c in view.columns]
             for r in view.rows]
    footers = [escape(c.fmt(c.total(view.rows))) if c.total and view.rows else "" for c in view.columns]
    if show_footer and not any(footers):
        show_footer = False

    text_floor = max(12, width // 4)  # prose gets a readable share before optional numbers are kept

    longest_of = {}

    def longest(i):
        if i not in longest_of:
            longest_of[i] = max([_width(row[i]) for row in cells] + [len(footers[i]) if show_footer else 0] + [1])
        return longest_of[i]

    def need(i, c):  # the narrowest a column may be: its longest number, or for text a useful minimum
        words = max(len(w) for w in c.title.split()) if c.title else 1
        if c.text:
            return max(words, min(longest(i), width // 2 if c.ident else text_floor))
        return max(longest(i), len(c.title))  # a number's title does not wrap either

    keep = list(range(len(view.columns)))
    mins = {i: need(i, c) for i, c in enumerate(view.columns)}
    # an optional column with nothing in any row (all 0 or unknown) goes before one that holds something:
    # a cgroup's 964 KiB of memfd must not give way to a hugetlb column of zeros
    blank = {i for i, c in enumerate(view.columns) if c.optional and not any(c.get(r) for r in view.rows)}
    while True:
        # one space between columns, two cells of padding: three characters per boundary
        total = sum(mins[i] for i in keep) + 3 * (len(keep) - 1)
        droppable = [i for i in keep if view.columns[i].optional]
        if total <= width or not droppable:
            break
        keep.remove(max(droppable, key=lambda i: (i in blank, view.columns[i].optional, i)))
    texts = [i for i in keep if view.columns[i].text]
    aside = []  # prose with no room left in the table: printed under it, a line per row
    while total > width and texts:  # still too wide: the prose columns share what the numbers leave
        spare = width - 3 * (len(keep) - 1) - sum(mins[i] for i in keep if i not in texts)
        if spare // len(texts) >= 12 or (len(keep) == len(texts)):
            for i in texts:
                title = max(len(w) for w in view.columns[i].title.split()) if view.columns[i].title else 1
                mins[i] = max(title, 8, spare // len(texts))
            break
        moved = texts.pop()  # the last prose column goes under the table
        keep.remove(moved)
        aside.append(moved)
        total = sum(mins[i] for i in keep) + 3 * (len(keep) - 1)
    left_out = [view.columns[i].title for i in range(len(view.columns)) if i not in keep and i not in aside]

    # final widths: numbers at their longest; prose grows from its minimum towards its longest line while
    # the width allows, in column order
    widths = {i: mins[i] for i in keep}
    spare = width - sum(widths.values()) - 3 * (len(keep) - 1)
    for i in texts:
        want = max(longest(i), len(view.columns[i].title)) if view.columns[i].text else widths[i]
        grow = max(0, min(spare, want - widths[i]))
        widths[i] += grow
        spare -= grow

    def row_lines(values) -> list:
        columns = [wrap(values[i], widths[i]) if view.columns[i].text else values[i].split("\n") for i in keep]
        height = max(len(c) for c in columns)
        lines = []
        for n in range(height):
            parts = [_pad(col[n] if n < len(col) else "", widths[i], view.columns[i].right)
                     for col, i in zip(columns, keep)]
            lines.append("   ".join(parts).rstrip())
        return lines

    table_width = sum(widths.values()) + 3 * (len(keep) - 1)
    lines = wrap(view.title, width) if view.title else []
    lines += row_lines([c.title for c in view.columns])
    lines.append("\u2500" * table_width)
    for row in cells:
        lines += row_lines(row)
    if show_footer:
        lines.append("")
        lines += row_lines(footers)
    out = [Block("\n".join(lines))]
    # a line under the table names its row by what names it in the table: the first cell and the row's
    # name (two rows of one kind, or one name of two kinds, must not read alike)
    name_at = next((i for i, c in enumerate(view.columns) if c.ident), 0)
    for i in aside:
        for row in cells:
            label = " ".join(row[k].split("\n")[0] for k in dict.fromkeys((0, name_at)))
            out.append(f"{label}: {view.columns[i].title} {row[i]}")
    if left_out:
        out.append(f"(left out at {width} columns: {', '.join(left_out)}; wider terminal or --json for all)")
    out += list(view.notes)
    return out
