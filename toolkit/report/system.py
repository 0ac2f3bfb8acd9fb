"""Render `segments`, `footprint` and the Prometheus export."""
from __future__ import annotations

from toolkit.records import to_dict
from toolkit.units import human_bytes


def _att(obj):
    return [{"pid": a.pid, "command": a.command} for a in obj.attachers]


def segments_to_json(r) -> dict:
    def one(o):
        d = to_dict(o)
        d["attachers"] = _att(o)
        return d

    return {"sysv": [one(o) for o in r.sysv], "posix": [one(o) for o in r.posix],
            "memfd": [one(o) for o in r.memfd], "deleted": [one(o) for o in r.deleted],
            "processes": r.processes, "unreadable": r.unreadable, "remove_ipc": r.remove_ipc_policy,
            "complete": r.complete, "notes": list(r.notes)}


def _flags(o) -> str:
    out = []
    if o.orphan:
        out.append("ORPHAN")
    if o.marked_for_removal:
        out.append("removal pending")
    if o.world_writable:
        out.append("world-writable")
    elif o.world_readable:
        out.append("world-readable")
    if o.other_user:
        out.append("other user")
    if o.remove_ipc:
        out.append("RemoveIPC")
    return ", ".join(out)


def _who(o, limit=4) -> str:
    names = [f"{a.pid} {a.command.split(' ')[0].rsplit('/', 1)[-1]}" for a in o.attachers[:limit]]
    more = len(o.attachers) - limit
    return ", ".join(names) + (f" +{more}" if more > 0 else "") if names else "-"


def render_segments(r, console) -> None:
    from rich.table import Table

    t = Table(title=f"System V segments ({len(r.sysv)})")
    for c in ("key", "shmid", "owner", "mode", "size", "nattch", "rss", "swap", "cpid", "lpid", "attached now", "flags"):
        t.add_column(c)
    for o in r.sysv:
        t.add_row(o.name, str(o.shmid), o.owner, o.mode, human_bytes(o.size_bytes), str(o.nattch),
                  human_bytes(o.rss_bytes), human_bytes(o.swap_bytes), str(o.cpid), str(o.lpid), _who(o), _flags(o))
    console.print(t)
    t = Table(title=f"POSIX objects in /dev/shm ({len(r.posix)})")
    for c in ("name", "owner", "mode", "size", "allocated", "attached now", "flags"):
        t.add_column(c)
    for o in r.posix:
        t.add_row(o.name, o.owner, o.mode, human_bytes(o.size_bytes), human_bytes(o.allocated_bytes), _who(o), _flags(o))
    console.print(t)
    if r.memfd or r.deleted:
        t = Table(title="memfd and deleted-file shared mappings")
        for c in ("kind", "name", "device:inode", "mapped by"):
            t.add_column(c)
        for o in r.memfd + r.deleted:
            t.add_row(o.kind, o.name, f"{o.device}:{o.inode}", _who(o))
        console.print(t)
    orphans = sum(1 for o in r.sysv + r.posix if o.orphan)
    if orphans:
        console.print(f"{orphans} orphan(s): nothing maps them and nobody marked them for removal; they stay until "
                      "removed (ipcrm -m SHMID, rm /dev/shm/NAME) or reboot.", highlight=False)
    if r.remove_ipc_policy == "yes":
        console.print("systemd-logind runs with RemoveIPC=yes: objects of regular users (uid > 999) go when "
                      "their owner's last session ends.", highlight=False)
    for n in r.notes:
        console.print(n, highlight=False)


def footprint_to_json(r, by) -> dict:
    d = {
        "processes": [{"pid": p.pid, "command": p.command, "user": p.user, "rss_bytes": p.rss, "pss_bytes": p.pss,
                       "uss_bytes": p.uss, "swap_bytes": p.swap, "swap_pss_bytes": p.swap_pss,
                       **({"by_kind": p.by_kind} if p.by_kind is not None else {})} for p in r.processes],
        "totals": {f"{k}_bytes": v for k, v in r.totals().items()},
        "unreadable": r.unreadable, "denied": r.denied, "vanished": r.vanished, "kernel_threads": r.kernel_threads,
        "zombies": r.zombies, "privileged": r.privileged, "complete": r.complete, "notes": list(r.notes),
    }
    if by == "kind":
        d["by_kind"] = aggregate_kinds(r)
    if by == "user":
        d["by_user"] = aggregate_users(r)
    if by == "library":
        d["libraries"] = [to_dict(u) for u in r.libraries]
    return d


def aggregate_kinds(r) -> dict:
    out = {}
    for p in r.processes:
        for k, v in (p.by_kind or {}).items():
            d = out.setdefault(k, {"rss_bytes": 0, "pss_bytes": 0, "uss_bytes": 0})
            d["rss_bytes"] += v["rss"]
            d["pss_bytes"] += v["pss"]
            d["uss_bytes"] += v["uss"]
    return out


def aggregate_users(r) -> dict:
    out = {}
    for p in r.processes:
        d = out.setdefault(p.user, {"processes": 0, "rss_bytes": 0, "pss_bytes": 0, "uss_bytes": 0, "swap_bytes": 0})
        d["processes"] += 1
        d["rss_bytes"] += p.rss
        d["pss_bytes"] += p.pss
        d["uss_bytes"] += p.uss
        d["swap_bytes"] += p.swap
    return out


SORT_KEYS = ("pss", "rss", "uss", "swap", "pid", "command")


def render_footprint(r, by, sort, console) -> None:
    from rich.table import Table

    tot = r.totals()
    if by == "process":
        t = Table(title=f"memory per process ({len(r.processes)})", show_footer=True)
        for c, foot in (("pid", ""), ("user", ""), ("command", "total"), ("RSS", human_bytes(tot["rss"])),
                        ("PSS", human_bytes(tot["pss"])), ("USS", human_bytes(tot["uss"])),
                        ("swap", human_bytes(tot["swap"])), ("SwapPss", human_bytes(tot["swap_pss"]))):
            t.add_column(c, footer=foot, justify="right" if c in ("pid", "RSS", "PSS", "USS", "swap", "SwapPss") else "left",
                         overflow="ellipsis", no_wrap=c == "command", max_width=60 if c == "command" else None)
        rev = sort not in ("pid", "command")
        for p in sorted(r.processes, key=lambda p: getattr(p, sort), reverse=rev):
            t.add_row(str(p.pid), p.user, p.command, human_bytes(p.rss), human_bytes(p.pss), human_bytes(p.uss),
                      human_bytes(p.swap), human_bytes(p.swap_pss))
    elif by == "user":
        t = Table(title="memory per user", show_footer=True)
        users = aggregate_users(r)
        for c, foot in (("user", "total"), ("processes", str(len(r.processes))), ("RSS", human_bytes(tot["rss"])),
                        ("PSS", human_bytes(tot["pss"])), ("USS", human_bytes(tot["uss"])), ("swap", human_bytes(tot["swap"]))):
            t.add_column(c, footer=foot)
        for u, d in sorted(users.items(), key=lambda kv: -kv[1]["pss_bytes"]):
            t.add_row(u, str(d["processes"]), human_bytes(d["rss_bytes"]), human_bytes(d["pss_bytes"]),
                      human_bytes(d["uss_bytes"]), human_bytes(d["swap_bytes"]))
    elif by == "kind":
        kinds = aggregate_kinds(r)
        t = Table(title=f"memory by kind over {len(r.processes)} processes", show_footer=True)
        for c, foot in (("kind", "total"), ("RSS", human_bytes(sum(v["rss_bytes"] for v in kinds.values()))),
                        ("PSS", human_bytes(sum(v["pss_bytes"] for v in kinds.values()))),
                        ("USS", human_bytes(sum(v["uss_bytes"] for v in kinds.values())))):
            t.add_column(c, footer=foot)
        for k, d in sorted(kinds.items(), key=lambda kv: -kv[1]["pss_bytes"]):
            t.add_row(k, human_bytes(d["rss_bytes"]), human_bytes(d["pss_bytes"]), human_bytes(d["uss_bytes"]))
    else:
        t = Table(title="libraries: RSS counts shared pages in every process, PSS divides them, physical counts them once")
        for c in ("library", "processes", "RSS summed", "PSS summed", "physical"):
            t.add_column(c)
        for u in r.libraries:
            t.add_row(u.path, str(u.processes), human_bytes(u.rss_sum), human_bytes(u.pss_sum),
                      human_bytes(u.physical_bytes) if u.physical_bytes is not None else "unavailable (needs root)")
    console.print(t)
    footer(r, console)


def footer(r, console) -> None:
    parts = list(r.notes)  # why some processes were not read or not seen, with the real reason
    if r.zombies:
        parts.append(f"{r.zombies} zombies skipped (exited, no memory left)")
    if r.vanished:
        parts.append(f"{r.vanished} exited during the scan")
    if r.kernel_threads:
        parts.append(f"{r.kernel_threads} kernel threads skipped (no user memory)")
    if parts:
        console.print("; ".join(parts) + ".", highlight=False)


def prometheus_text(seg, foot) -> str:
    """node_exporter textfile-collector format. What could not be measured is left out and said by a
    companion gauge, never exported as 0: a false 0 or a false orphan pages someone at night."""
    lines = []

    def metric(name, help_, kind, samples):
        lines.append(f"# HELP {name} {help_}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            lab = ",".join(f'{k}="{v}"' for k, v in labels.items())
            lines.append(f"{name}{{{lab}}} {value}" if lab else f"{name} {value}")

    objs = {"sysv": seg.sysv, "posix": seg.posix}
    metric("shmkit_shared_objects", "Shared memory objects present.", "gauge",
           [({"kind": k}, len(v)) for k, v in objs.items()])
    metric("shmkit_shared_object_bytes", "Declared size of shared memory objects.", "gauge",
           [({"kind": k}, sum(o.size_bytes for o in v)) for k, v in objs.items()])
    metric("shmkit_shared_object_resident_bytes", "Resident bytes: System V rss, POSIX allocated blocks.", "gauge",
           [({"kind": "sysv"}, sum(o.rss_bytes or 0 for o in seg.sysv)),
            ({"kind": "posix"}, sum(o.allocated_bytes or 0 for o in seg.posix))])
    metric("shmkit_orphan_objects", "Objects nothing maps and nobody marked for removal (known orphans only).", "gauge",
           [({"kind": k}, sum(1 for o in v if o.orphan)) for k, v in objs.items()])
    metric("shmkit_orphan_unknown_objects", "Objects whose possible mappers could not all be read: orphan or not "
           "is unknown.", "gauge", [({"kind": k}, sum(1 for o in v if o.orphan is None)) for k, v in objs.items()])
    metric("shmkit_world_writable_objects", "Objects any user may write.", "gauge",
           [({"kind": k}, sum(1 for o in v if o.world_writable)) for k, v in objs.items()])
    metric("shmkit_pss_complete", "1 when every process was read, so that shmkit_pss_bytes is a total; 0 when "
           "some could not be read or seen and shmkit_pss_bytes is left out.", "gauge", [({}, int(foot.complete))])
    if foot.complete:
        from toolkit.measure.system import KINDS

        kinds = aggregate_kinds(foot)
        metric("shmkit_pss_bytes", "Proportional set size summed over all processes, by kind of memory.", "gauge",
               [({"kind": k}, kinds.get(k, {}).get("pss_bytes", 0)) for k in KINDS])
    metric("shmkit_processes_unreadable", "Processes whose memory could not be read.", "gauge", [({}, foot.denied)])
    return "\n".join(lines) + "\n"
