"""`--watch`: scan again every few seconds and say what changed since the last scan (a segment or object
that appeared or went, a process whose Pss grew). Cheap enough to leave running: one scan per interval,
nothing kept but the last scan's keys and sizes (bench/watch_cost.py measures the CPU it takes)."""
from __future__ import annotations

import time

GROWTH_BYTES = 1 << 20  # a Pss change this large (or 10%) is worth pointing at


def footprint_changes(prev, cur) -> dict:
    """{pid: "new" | "Pss +3.0 MiB" | "Pss -1.0 MiB"} against the previous scan ({} for the first)."""
    from toolkit.units import human_bytes

    if prev is None:
        return {}
    before = {p.pid: p.pss for p in prev.processes}
    out = {}
    for p in cur.processes:
        if p.pid not in before:
            out[p.pid] = "new"
            continue
        d = p.pss - before[p.pid]
        if abs(d) >= GROWTH_BYTES or (before[p.pid] and abs(d) >= before[p.pid] / 10 and abs(d) >= 64 << 10):
            out[p.pid] = f"Pss {'+' if d > 0 else '-'}{human_bytes(abs(d))}"
    return out


def segment_key(o) -> tuple:
    return (o.kind, o.namespace, o.shmid if o.kind == "sysv" else (o.device, o.inode, o.name))


def describe(o) -> str:
    """'sysv 32769', 'posix NAME': how a change names an object."""
    return f"{o.kind} {o.shmid if o.kind == 'sysv' else o.name}"


def segments_changes(prev, cur) -> dict:
    """{"new": {key, ...}, "gone": [description, ...], "attached": {key: [pid, ...]}, "detached": {key:
    [pid, ...]}} of System V segments, POSIX objects and pinned rows: what appeared, what went, and who
    started or stopped mapping an object that was there both times."""
    if prev is None:
        return {"new": set(), "gone": [], "attached": {}, "detached": {}}

    def objects(r):
        return {segment_key(o): o for o in r.sysv + r.posix + r.pinned}

    a, b = objects(prev), objects(cur)
    gone = [describe(o) for k, o in a.items() if k not in b]
    attached, detached = {}, {}
    for k, o in b.items():
        if k in a:
            now, before = {x.pid for x in o.attachers}, {x.pid for x in a[k].attachers}
            if now - before:
                attached[k] = sorted(now - before)
            if before - now:
                detached[k] = sorted(before - now)
    return {"new": {k for k in b if k not in a}, "gone": gone, "attached": attached, "detached": detached}


def segment_change(o, changes, most: int = 4) -> str:
    """The change column of one object: NEW, or the pids that attached (+) and detached (-), at most
    `most` of each and then how many more."""
    k = segment_key(o)
    if k in changes["new"]:
        return "NEW"
    out = []
    for sign, pids in (("+", changes["attached"].get(k, ())), ("-", changes["detached"].get(k, ()))):
        out += [f"{sign}{p}" for p in pids[:most]] + ([f"({sign}{len(pids) - most} more)"] if len(pids) > most else [])
    return " ".join(out)


def loop(scan, show, interval: float, clock=time.monotonic, sleep=time.sleep) -> None:
    """scan() -> report; show(report, previous report). Every `interval` seconds from the start of the last
    scan, until interrupted (the caller turns Ctrl-C into a clean end)."""
    prev = None
    while True:
        t0 = clock()
        cur = scan()
        show(cur, prev)
        prev = cur
        sleep(max(0.0, interval - (clock() - t0)))
