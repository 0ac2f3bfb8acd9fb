"""`shmkit bench` output: table, JSON, CSV, plot."""
from __future__ import annotations

import csv

from toolkit.records import to_dict
from toolkit.units import human_bytes, human_seconds

COLUMNS = ("create", "attach", "first_touch", "detach", "destroy", "second_attach", "read_through", "second_detach",
           "first_call")


def to_json(result) -> dict:
    return {"machine": result.machine, "results": [to_dict(r) for r in result.rows],
            "findings": list(result.findings), "notes": list(result.notes)}


def write_csv(result, path) -> None:
    fields = list(result.rows[0]._fields) if result.rows else []
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in result.rows:
            w.writerow(r._asdict())


def _cell(r):
    if r is None:
        return ""
    if r.median_s is None:
        return "—"
    text = human_seconds(r.median_s)
    if r.phase in ("first_touch", "read_through"):
        text += f"\n{r.minor_faults} flt, {r.ns_per_page:.0f} ns/pg"
    elif r.minor_faults:
        text += f"\n{r.minor_faults} flt"
    return text


def render(result, console) -> None:
    from rich.table import Table

    phases = [c for c in COLUMNS if any(r.phase == c for r in result.rows)]
    m = result.machine
    table = Table(title=f"shmkit bench: median of N runs (Linux {m['kernel']}, {m['cpu']}, "
                        f"touch {m['touch_method']}{', pinned to CPU %s' % m['pinned_cpu'] if m['pinned_cpu'] is not None else ''})")
    table.add_column("mechanism")
    table.add_column("size", justify="right")
    table.add_column("N", justify="right")
    for p in phases:
        table.add_column(p.replace("_", " "), justify="right")
    keys = []
    for r in result.rows:
        if (r.mechanism, r.size_bytes) not in keys:
            keys.append((r.mechanism, r.size_bytes))
    by = {(r.mechanism, r.size_bytes, r.phase): r for r in result.rows}
    for mech, size in keys:
        n = max(r.repeat for r in result.rows if r.mechanism == mech and r.size_bytes == size)
        table.add_row(mech, human_bytes(size), str(n), *[_cell(by.get((mech, size, p))) for p in phases])
    console.print(table)
    for line in result.findings:
        console.print("• " + line, highlight=False)
    for line in result.notes:
        console.print("note: " + line, highlight=False)


def plot(result, path) -> None:
    """Time against size on log-log axes, one panel per phase (matplotlib, an optional extra)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
        ax.set_title(phase.replace("_", " "))
        ax.set_xlabel("size (bytes)")
        ax.set_ylabel("median seconds")
        ax.grid(True, which="both", alpha=0.3)
    for ax in list(axes.flat)[len(phases):]:
        ax.axis("off")
    handles = [plt.Line2D([], [], color=colour[m], marker="o", label=m) for m in mechs]
    fig.legend(handles=handles, loc="upper right", ncol=len(mechs))
    fig.suptitle(f"shmkit bench (Linux {result.machine['kernel']})", x=0.02, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    fig.savefig(path, dpi=100)
    plt.close(fig)
