"""`shmkit bench` output: table, JSON, CSV, plot."""
from __future__ import annotations

import csv
import io

from toolkit.records import to_dict
from toolkit.units import counted, human_bytes, human_seconds

COLUMNS = ("create", "attach", "mark", "first_touch", "detach", "destroy", "second_attach", "read_through",
           "second_detach", "first_call")


def to_json(result) -> dict:
    return {"machine": result.machine, "results": [to_dict(r) for r in result.rows],
            "findings": list(result.findings), "notes": list(result.notes)}


def csv_text(result) -> str:
    """Every row, one per line, with a header of the row fields."""
    fields = list(result.rows[0]._fields) if result.rows else []
    out = io.StringIO(newline="")
    w = csv.DictWriter(out, fieldnames=fields)
    w.writeheader()
    for r in result.rows:
        w.writerow(r._asdict())
    return out.getvalue()


def _cell(r):
    if r is None:
        return None
    if r.median_s is None:
        return "—"
    text = human_seconds(r.median_s)
    if r.phase in ("first_touch", "read_through") and r.ns_per_page:
        text += f"\n{counted(r.minor_faults, 'fault')}\n{r.ns_per_page:.0f} ns/page"
    elif r.minor_faults:
        text += f"\n{counted(r.minor_faults, 'fault')}"
    return text


def views(result) -> list:
    """One table per size: a row per phase, a column per mechanism (fits 80 columns; --json has all)."""
    from toolkit.report.view import Column, View

    by = {(r.mechanism, r.size_bytes, r.phase): r for r in result.rows}
    out = []
    for size in sorted({r.size_bytes for r in result.rows if r.mechanism != "dso"}):
        mechs = [m for m in ("sysv", "posix", "memfd", "anon") if any(k[0] == m and k[1] == size for k in by)]
        phases = [p for p in COLUMNS if any((m, size, p) in by for m in mechs)]
        runs = {m: max(r.repeat for r in result.rows if r.mechanism == m and r.size_bytes == size) for m in mechs}
        cols = (Column("phase", lambda p: p.replace("_", " "), text=True),) + tuple(
            Column(f"{m} (N={runs[m]})", lambda p, m=m, size=size: by.get((m, size, p)), _cell, key=m, right=True)
            for m in mechs)
        out.append(View(f"{human_bytes(size)} ({size} bytes): median of N runs", cols, phases))
    dso = [r for r in result.rows if r.mechanism == "dso"]
    if dso:
        cols = (Column("phase", lambda r: r.phase.replace("_", " "), text=True),
                Column(f"dso (N={max(r.repeat for r in dso)})", lambda r: r, _cell, key="dso", right=True))
        out.append(View(f"shared library ({human_bytes(dso[0].size_bytes)} file): median of N runs", cols, dso))
    return out


def render(result, console) -> None:
    from toolkit.report.view import render as render_view

    m = result.machine
    console.print((f"shmkit bench: Linux {m['kernel']}, {m['cpu']}, touch {m['touch_method']}"
                       + (f", pinned to CPU {m['pinned_cpu']}" if m["pinned_cpu"] is not None else "")))
    for v in views(result):
        render_view(v, console)
    for line in result.findings:
        console.print(("• " + line))
    for line in result.notes:
        console.print(("note: " + line))


def plot(result, out, fmt: str) -> None:
    """Time against size on log-log axes, one panel per phase (matplotlib, an optional extra)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator

    from toolkit.report.svg import _size_label

    phases = [c for c in COLUMNS if any(r.phase == c and r.mechanism != "dso" for r in result.rows)]
    cols = 4
    rows = -(-len(phases) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    mechs = sorted({r.mechanism for r in result.rows if r.mechanism != "dso"})
    colour = {m: f"C{i}" for i, m in enumerate(mechs)}  # one colour per mechanism in every panel
    for ax, phase in zip(axes.flat, phases):
        for mech in mechs:
            pts = sorted((r.size_bytes, r.median_s) for r in result.rows
                         if r.mechanism == mech and r.phase == phase and r.median_s)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=mech, color=colour[mech])
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        # human units on the axes: 4K, 64K, 1M ... and µs / ms, not powers of two and seconds
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: _size_label(int(round(v)))))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: human_seconds(v)))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _pos: ""))
        lo, hi = ax.get_ylim()
        if sum(1 for k in range(-10, 3) if lo <= 10.0 ** k <= hi) < 2:
            # less than a decade shown: a panel with one labelled tick, or none, cannot be read; 2x and 5x
            # of each power of ten are labelled too
            ax.yaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
            ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _pos: human_seconds(v)))
        ax.set_title(phase.replace("_", " "))
        ax.set_xlabel("size")
        ax.set_ylabel("median time")
        ax.grid(True, which="both", alpha=0.3)
    for ax in list(axes.flat)[len(phases):]:
        ax.axis("off")
    handles = [plt.Line2D([], [], color=colour[m], marker="o", label=m) for m in mechs]
    fig.legend(handles=handles, loc="upper right", ncol=len(mechs))
    fig.suptitle(f"shmkit bench (Linux {result.machine['kernel']})", x=0.02, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    fig.savefig(out, format=fmt, dpi=100)
    plt.close(fig)
