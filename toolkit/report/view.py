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
    return max(len(line) for line in text.split("\n"))


def cell(col: Column, row) -> str:
    value = col.get(row)
    if value is None:
        return "-"
    if isinstance(value, str):  # data (a name, a command): escaped whole, so that it cannot break a row
        return escape(col.fmt(value))
    # a record or number formatted by the view itself may hold lines of its own (a time, then its faults)
    return "\n".join(escape(line) for line in str(col.fmt(value)).split("\n"))


# ------------------------------------------------------------------ names can hold any byte

_CONTROL = {c: f"\\x{c:02x}" for c in list(range(0x20)) + list(range(0x7F, 0xA0))}
_CONTROL.update({0x0A: "\\n", 0x09: "\\t", 0x0D: "\\r", 0x5C: "\\\\"})


def escape(text) -> str:
    """Printable, one-line, valid UTF-8 text of any name: control characters as \\n, \\t, \\x1b;
    bytes that are not UTF-8 (surrogate-escaped by os.listdir) as \\xff; a backslash doubled, so that
    no crafted name can fake another row or pass for an escape."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "surrogateescape")
    out = text.translate(_CONTROL)
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in out):  # lone surrogates: the raw bytes that were not UTF-8
        out = "".join(f"\\x{ord(ch) - 0xDC00:02x}" if 0xDC80 <= ord(ch) <= 0xDCFF else ch for ch in out)
    return out


def raw_hex(text) -> str:
    """The exact bytes of a name (as the file system has them), in hex."""
    if isinstance(text, str):
        text = text.encode("utf-8", "surrogateescape")
    return text.hex()


# ------------------------------------------------------------------ renderers


def to_rows(view: View) -> list:
    return [{c.json_key: c.get(r) for c in view.columns} for r in view.rows]


def write_csv(view: View, out) -> None:
    import csv

    w = csv.writer(out)
    w.writerow([c.json_key for c in view.columns])
    for r in view.rows:
        w.writerow(["" if c.get(r) is None else c.get(r) for c in view.columns])


def render(view: View, console, show_footer: bool = False) -> None:
    """A rich table that fits console.width without cutting a number or an id."""
    for part in renderables(view, console, show_footer):
        console.print(part)


def renderables(view: View, console, show_footer: bool = False) -> list:
    """What render() prints, as rich renderables (for a Live display that redraws them in place)."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    width = console.width
    cells = [[_capped(cell(c, r), width) if c.text and not c.ident else cell(c, r) for c in view.columns]
             for r in view.rows]
    footers = [escape(c.fmt(c.total(view.rows))) if c.total and view.rows else "" for c in view.columns]
    if show_footer and not any(footers):
        show_footer = False

    text_floor = max(12, width // 4)  # prose gets a readable share before optional numbers are kept

    def need(i, c):  # the narrowest a column may be: its longest number, or for text a useful minimum
        longest = max([_width(row[i]) for row in cells] + [len(footers[i]) if show_footer else 0] + [1])
        words = max(len(w) for w in c.title.split()) if c.title else 1
        if c.text:
            return max(words, min(longest, width // 2 if c.ident else text_floor))
        return max(longest, len(c.title))  # a number's title does not wrap either

    keep = list(range(len(view.columns)))
    mins = {i: need(i, c) for i, c in enumerate(view.columns)}
    while True:
        # one space between columns, two cells of padding: three characters per boundary
        total = sum(mins[i] for i in keep) + 3 * (len(keep) - 1)
        droppable = [i for i in keep if view.columns[i].optional]
        if total <= width or not droppable:
            break
        keep.remove(max(droppable, key=lambda i: (view.columns[i].optional, i)))
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

    t = Table(title=Text(view.title), box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False, show_edge=False,
              show_footer=show_footer, title_justify="left")
    for i in keep:
        c = view.columns[i]
        t.add_column(Text(c.title), footer=Text(footers[i]), justify="right" if c.right else "left",
                     no_wrap=not c.text, overflow="fold", min_width=mins[i], max_width=None if not c.text else
                     max(mins[i], width - 3 * (len(keep) - 1) - sum(mins[j] for j in keep if j != i)))
    for row in cells:
        t.add_row(*(Text(row[i]) for i in keep))
    out = [t]
    for i in aside:
        for row in cells:
            out.append(Text(f"{row[0].split(chr(10))[0]}: {view.columns[i].title} {row[i]}"))
    if left_out:
        out.append(Text(f"(left out at {width} columns: {', '.join(left_out)}; wider terminal or --json for all)"))
    out += [Text(n) for n in view.notes]
    return out
