"""Render `segments`, `footprint` and the Prometheus export."""
from __future__ import annotations

from toolkit.records import to_dict
from toolkit.report.view import Column, View, escape, raw_hex, renderables
from toolkit.units import counted, human_bytes, region_size


def _att(obj):
    return [{"pid": a.pid, "command": a.command, "cgroup": a.cgroup} for a in obj.attachers]


def _object_json(o) -> dict:
    d = to_dict(o)
    d["attachers"] = _att(o)
    # names can hold any byte: valid UTF-8 with escapes for strict parsers, and the exact bytes beside it
    d["name"] = escape(o.name)
    d["name_hex"] = raw_hex(o.name)
    d["also_named"] = [escape(n) for n in o.also_named]
    return d


def segments_to_json(r) -> dict:
    return {"sysv": [_object_json(o) for o in r.sysv], "posix": [_object_json(o) for o in r.posix],
            "memfd": [_object_json(o) for o in r.memfd], "deleted": [_object_json(o) for o in r.deleted],
            "anonymous": [_object_json(o) for o in r.anonymous],
            "pinned": [_object_json(o) for o in r.pinned + tuple(o for o in r.sysv if o.pinned)],
            "dev_shm": [{**to_dict(d), "folders": [escape(n) for n in d.folders],
                         "unreadable_folders": [escape(n) for n in d.unreadable_folders],
                         "others": [{"name": escape(n), "type": k} for n, k in d.others]} for d in r.dev_shm],
            "processes": r.processes, "unreadable": r.unreadable, "remove_ipc": r.remove_ipc_policy,
            "complete": r.complete, "unlisted": list(r.unlisted), "notes": list(r.notes)}


def _flags(o) -> str:
    out = []
    if o.orphan:
        out.append("ORPHAN")
    elif o.orphan is None and o.kind == "posix" and not o.attachers:
        out.append("orphan: unknown")
    if o.semaphore:  # a sem_open name, not a shm_open region: removed with sem_unlink or rm
        out.append("semaphore")
    if o.marked_for_removal:
        out.append("removal pending")
    if o.locked:  # SHM_LOCK: unswappable, like ipcs -m's "locked"
        out.append("locked")
    if o.also_named:  # a hard link: the same pages, not more of them
        out.append("same object as " + ", ".join(escape(n) for n in o.also_named[:2])
                   + (f" +{len(o.also_named) - 2}" if len(o.also_named) > 2 else ""))
    if o.world_writable:
        out.append("world-writable")
    elif o.world_readable:
        out.append("world-readable")
    if o.via_pid is not None:  # its id or name means nothing in ours: ipcrm -m 0 here is another segment
        out.append(f"{'IPC namespace' if o.kind == 'sysv' else '/dev/shm'} of pid {o.via_pid}")
    if o.other_user:
        out.append("other user")
    if o.remove_ipc:
        out.append("RemoveIPC")
    return ", ".join(out)


def _who(o, limit=4) -> str:
    names = [f"{a.pid} {a.command.split(' ')[0].rsplit('/', 1)[-1]}" for a in o.attachers[:limit]]
    more = len(o.attachers) - limit
    return ", ".join(names) + (f" +{more}" if more > 0 else "") if names else "-"


def _who_unsure(o) -> str:
    """_who on a scan that could not read every process: attachers it could not see are '?', not nobody
    (a segment with nattch 1 and no readable attacher read '-')."""
    seen = o.mappings_seen if o.mappings_seen is not None else len(o.attachers)
    unseen = (o.nattch or 0) > seen if o.kind == "sysv" else o.orphan is None
    if not unseen:
        return _who(o)
    return _who(o) + ", ?" if o.attachers else "?"


def _hb(n):
    return human_bytes(n) if n is not None else "-"


SYSV_COLUMNS = (
    Column("shmid", lambda o: o.shmid, right=True),
    Column("key", lambda o: o.name),
    Column("owner", lambda o: o.owner, optional=2),
    Column("mode", lambda o: o.mode, optional=3),
    Column("size", lambda o: o.size_bytes, region_size, key="size_bytes", right=True),
    Column("nattch", lambda o: o.nattch, right=True),
    Column("rss", lambda o: o.rss_bytes, _hb, key="rss_bytes", right=True, optional=1),
    Column("swap", lambda o: o.swap_bytes, _hb, key="swap_bytes", right=True, optional=5),
    Column("cpid", lambda o: o.cpid, right=True, optional=4),
    Column("lpid", lambda o: o.lpid, right=True, optional=6),
    Column("attached now", _who, text=True, key="attachers"),
    Column("flags", _flags, text=True),
    Column("IPC namespace", lambda o: o.namespace, key="namespace", optional=7),
)
POSIX_COLUMNS = (
    Column("name", lambda o: o.name, text=True, ident=True),
    Column("owner", lambda o: o.owner, optional=2),
    Column("mode", lambda o: o.mode, optional=3),
    Column("size", lambda o: o.size_bytes, region_size, key="size_bytes", right=True),
    Column("allocated", lambda o: o.allocated_bytes, _hb, key="allocated_bytes", right=True, optional=1),
    Column("attached now", _who, text=True, key="attachers"),
    Column("flags", _flags, text=True),
)
PINNED_COLUMNS = (
    Column("kind", lambda o: o.kind),
    Column("name", lambda o: o.name if o.kind != "sysv" else f"shmid {o.shmid}", text=True, ident=True),
    Column("size", lambda o: o.size_bytes, region_size, key="size_bytes", right=True),
    Column("held by", _who, text=True, key="attachers"),
    Column("why it stays", lambda o: o.pinned, text=True, key="pinned"),
)
DEV_SHM_COLUMNS = (
    Column("/dev/shm", lambda d: d.where, text=True, ident=True, key="where"),
    Column("size", lambda d: d.size_bytes, _hb, key="size_bytes", right=True),
    Column("used", lambda d: d.used_bytes, _hb, key="used_bytes", right=True),
    Column("fill", lambda d: d.fill, lambda f: f"{100 * f:.0f}%" + (" FULL" if f >= 0.9 else ""), right=True),
    Column("seen by (pids)", lambda d: ", ".join(map(str, d.processes)), text=True, key="processes", optional=1),
    Column("mount namespace", lambda d: d.namespace, key="namespace", optional=2),
)
MAPPED_COLUMNS = (
    Column("kind", lambda o: o.kind),
    Column("name", lambda o: o.name, text=True),
    Column("size", lambda o: o.size_bytes, lambda n: "-" if n is None else region_size(n), key="size_bytes",
           right=True, optional=1),
    Column("device:inode", lambda o: f"{o.device}:{o.inode}", optional=2),
    Column("mapped by", _who, text=True, key="attachers"),
)


def render_segments(r, console) -> None:
    for part in segments_renderables(r, console):
        console.print(part)


def _with_change(columns, changes):
    """The view's columns and, while watching, one saying what changed since the last scan."""
    from toolkit.measure.watch import segment_change

    if changes is None:
        return columns
    return columns + (Column("change", lambda o: segment_change(o, changes), text=True),)


def _unsure(columns):
    return tuple(c._replace(get=_who_unsure) if c.get is _who else c for c in columns)


def segments_renderables(r, console, changes=None) -> list:
    out = []
    count = "could not be listed" if "sysv" in r.unlisted else len(r.sysv)
    sysv, posix = (SYSV_COLUMNS, POSIX_COLUMNS) if r.complete else (_unsure(SYSV_COLUMNS), _unsure(POSIX_COLUMNS))
    views = [View(f"System V segments ({count})", _with_change(sysv, changes), list(r.sysv)),
             View(f"POSIX objects in /dev/shm ({'could not be listed' if 'posix' in r.unlisted else len(r.posix)})",
                  _with_change(posix, changes), list(r.posix))]
    if r.memfd or r.deleted or r.anonymous:
        views.append(View("memfd, deleted-file and shared anonymous mappings", MAPPED_COLUMNS,
                          list(r.memfd + r.deleted + r.anonymous)))
    pinned = [o for o in r.sysv if o.pinned] + list(r.pinned)
    if pinned:
        views.append(View(f"pinned memory nobody lists or maps ({len(pinned)})", _with_change(PINNED_COLUMNS, changes),
                          pinned))
    if len(r.dev_shm) > 1 or any(d.full for d in r.dev_shm):
        views.append(View(f"/dev/shm mounts ({len(r.dev_shm)})", DEV_SHM_COLUMNS, list(r.dev_shm)))
    for v in views:
        out += renderables(v, console)
    orphans = [o for o in r.sysv + r.posix if o.orphan]
    if orphans:
        out.append((f"{counted(len(orphans), 'orphan')}: nothing maps them and nobody marked them for removal; they "
                        "stay until removed (ipcrm -m SHMID, rm /dev/shm/NAME) or reboot."))
        elsewhere = [o for o in orphans if o.via_pid is not None]
        if elsewhere:  # the commands above would act on our namespace: say how to reach theirs
            out.append(f"{len(elsewhere)} of them in another namespace: "
                       "nsenter --target PID --ipc ipcrm -m SHMID, or rm /proc/PID/root/dev/shm/NAME, "
                       "with the PID their flags name.")
    if r.remove_ipc_policy == "yes":
        out.append(("systemd-logind runs with RemoveIPC=yes: objects of regular users (uid > 999) go when "
                        "their owner's last session ends."))
    if changes and changes["gone"]:
        out.append(("gone since the last scan: " + ", ".join(escape(g) for g in changes["gone"])))
    for d in r.dev_shm:
        if d.folders:  # the fill counts their files; no listing of objects would
            names = ", ".join(escape(n) + "/" for n in d.folders[:4]) + (", ..." if len(d.folders) > 4 else "")
            held = (f"{counted(d.folder_files, 'file')}, {human_bytes(d.folder_bytes)} allocated"
                    if d.folder_bytes is not None else
                    f"files unknown: {counted(len(d.unreadable_folders), 'folder')} may not be read here "
                    f"({', '.join(escape(f) for f in d.unreadable_folders[:2])})")
            out.append(f"{d.where} holds {counted(len(d.folders), 'folder')} ({names}) with {held}: tmpfs memory, "
                       "but not POSIX objects (a shm_open name has no '/'), so not listed above")
        if d.others:  # a symlink or FIFO someone put there: not memory, but worth seeing (a symlink is a hazard)
            names = ", ".join(f"{escape(n)} ({k})" for n, k in d.others[:4]) + (", ..." if len(d.others) > 4 else "")
            out.append(f"{d.where} holds {counted(len(d.others), 'entry', 'entries')} that "
                       f"{'is' if len(d.others) == 1 else 'are'} not shared memory: {names}")
    out += list(r.notes)
    return out


def footprint_to_json(r, by, sort=None) -> dict:
    """sort: the order of the processes (and of by_user / by_kind) as in the table; None keeps pid order."""
    processes = _sorted_processes(r.processes, sort) if sort else r.processes
    d = {
        "processes": [{"pid": p.pid, "command": p.command, "user": p.user, "rss_bytes": p.rss, "pss_bytes": p.pss,
                       "uss_bytes": p.uss, "swap_bytes": p.swap, "swap_pss_bytes": p.swap_pss,
                       "hugetlb_bytes": p.hugetlb,
                       **({"by_kind": p.by_kind} if p.by_kind is not None else {})} for p in processes],
        "totals": {f"{k}_bytes": v for k, v in r.totals().items()},
        "unreadable": r.unreadable, "denied": r.denied, "vanished": r.vanished, "kernel_threads": r.kernel_threads,
        "zombies": r.zombies, "privileged": r.privileged, "complete": r.complete, "notes": list(r.notes),
    }
    if by == "kind":
        d["by_kind"] = dict(_sorted_groups(aggregate_kinds(r), sort)) if sort else aggregate_kinds(r)
    if by == "user":
        d["by_user"] = dict(_sorted_groups(aggregate_users(r), sort)) if sort else aggregate_users(r)
    if by == "library":
        # a path is anyone's bytes: valid UTF-8 with escapes for strict parsers, the exact bytes beside it
        d["libraries"] = [{**to_dict(u), "path": escape(u.path), "path_hex": raw_hex(u.path)} for u in r.libraries]
    return d


def aggregate_kinds(r) -> dict:
    out = {}
    for p in r.processes:
        for k, v in (p.by_kind or {}).items():
            d = out.setdefault(k, {"rss_bytes": 0, "pss_bytes": 0, "uss_bytes": 0, "hugetlb_bytes": 0})
            d["rss_bytes"] += v["rss"]
            d["pss_bytes"] += v["pss"]
            d["uss_bytes"] += v["uss"]
            d["hugetlb_bytes"] += v.get("hugetlb", 0)
    return out


def aggregate_users(r) -> dict:
    out = {}
    for p in r.processes:
        d = out.setdefault(p.user, {"processes": 0, "rss_bytes": 0, "pss_bytes": 0, "uss_bytes": 0, "swap_bytes": 0,
                                    "hugetlb_bytes": 0})
        d["processes"] += 1
        d["rss_bytes"] += p.rss
        d["pss_bytes"] += p.pss
        d["uss_bytes"] += p.uss
        d["swap_bytes"] += p.swap
        d["hugetlb_bytes"] += p.hugetlb
    return out


SORT_KEYS = ("pss", "rss", "uss", "swap", "pid", "command")
# what --sort can order in each view: a user row has no pid or command, a kind row no swap
SORTS = {"process": SORT_KEYS, "user": ("pss", "rss", "uss", "swap"), "kind": ("pss", "rss", "uss")}


def _sorted_processes(processes, sort):
    return sorted(processes, key=lambda p: getattr(p, sort), reverse=sort not in ("pid", "command"))


def _sorted_groups(groups: dict, sort) -> list:
    return sorted(groups.items(), key=lambda kv: -kv[1][f"{sort}_bytes"])


def _sum(key):
    return lambda rows: sum(getattr(r, key) for r in rows)


PROCESS_COLUMNS = (
    Column("pid", lambda p: p.pid, right=True),
    Column("user", lambda p: p.user, optional=2),
    Column("command", lambda p: p.command, text=True, total=lambda rows: "total"),
    Column("RSS", lambda p: p.rss, human_bytes, key="rss_bytes", right=True, total=_sum("rss")),
    Column("PSS", lambda p: p.pss, human_bytes, key="pss_bytes", right=True, total=_sum("pss")),
    Column("USS", lambda p: p.uss, human_bytes, key="uss_bytes", right=True, total=_sum("uss"), optional=1),
    Column("swap", lambda p: p.swap, human_bytes, key="swap_bytes", right=True, total=_sum("swap"), optional=3),
    Column("SwapPss", lambda p: p.swap_pss, human_bytes, key="swap_pss_bytes", right=True, total=_sum("swap_pss"),
           optional=4),
    Column("hugetlb", lambda p: p.hugetlb, human_bytes, key="hugetlb_bytes", right=True, total=_sum("hugetlb"),
           optional=5),
)


def _kv(key):
    return lambda kv: kv[1][key]


def _ksum(key):
    return lambda rows: sum(kv[1][key] for kv in rows)


USER_COLUMNS = (
    Column("user", lambda kv: kv[0], text=True, total=lambda rows: "total"),
    Column("processes", _kv("processes"), right=True, total=_ksum("processes")),
    Column("RSS", _kv("rss_bytes"), human_bytes, key="rss_bytes", right=True, total=_ksum("rss_bytes")),
    Column("PSS", _kv("pss_bytes"), human_bytes, key="pss_bytes", right=True, total=_ksum("pss_bytes")),
    Column("USS", _kv("uss_bytes"), human_bytes, key="uss_bytes", right=True, total=_ksum("uss_bytes")),
    Column("swap", _kv("swap_bytes"), human_bytes, key="swap_bytes", right=True, total=_ksum("swap_bytes")),
    Column("hugetlb", _kv("hugetlb_bytes"), human_bytes, key="hugetlb_bytes", right=True,
           total=_ksum("hugetlb_bytes"), optional=1),
)
KIND_COLUMNS = (
    Column("kind", lambda kv: kv[0], text=True, total=lambda rows: "total"),
    Column("RSS", _kv("rss_bytes"), human_bytes, key="rss_bytes", right=True, total=_ksum("rss_bytes")),
    Column("PSS", _kv("pss_bytes"), human_bytes, key="pss_bytes", right=True, total=_ksum("pss_bytes")),
    Column("USS", _kv("uss_bytes"), human_bytes, key="uss_bytes", right=True, total=_ksum("uss_bytes")),
    Column("hugetlb", _kv("hugetlb_bytes"), human_bytes, key="hugetlb_bytes", right=True,
           total=_ksum("hugetlb_bytes"), optional=1),
)
HUGETLB_NOTE = ("hugetlb: huge pages (SHM_HUGETLB, MAP_HUGETLB, hugetlbfs) are counted apart by the kernel, in none "
                "of RSS, PSS and USS")
LIBRARY_COLUMNS = (
    Column("library", lambda u: u.path + (" (deleted)" if u.deleted else "")
           + (f" (device {u.device} inode {u.inode})" if u.same_name else ""), text=True, key="path"),
    Column("processes", lambda u: u.processes, right=True),
    Column("RSS summed", lambda u: u.rss_sum, human_bytes, key="rss_sum", right=True),
    Column("PSS summed", lambda u: u.pss_sum, human_bytes, key="pss_sum", right=True),
    Column("physical", lambda u: u.physical_bytes, human_bytes, key="physical_bytes", right=True),
)


def footprint_view(r, by, sort="pss") -> View:
    if by == "process":
        return View(f"memory per process ({len(r.processes)})", PROCESS_COLUMNS, _sorted_processes(r.processes, sort))
    huge = (HUGETLB_NOTE,) if any(p.hugetlb for p in r.processes) else ()
    if by == "user":
        return View("memory per user", USER_COLUMNS, _sorted_groups(aggregate_users(r), sort), huge)
    if by == "kind":
        rows = _sorted_groups(aggregate_kinds(r), sort)
        over = counted(len(r.processes), "process", "processes")
        return View(f"memory by kind over {over}", KIND_COLUMNS, rows, huge)
    notes = () if r.privileged else ("physical: unavailable, it needs root (PFNs in pagemap)",)
    unknown = sum(1 for u in r.libraries if u.physical_bytes is None)
    if r.privileged and unknown:
        notes += (f"physical: unknown for {unknown} of {len(r.libraries)} libraries, whose pagemap could not be "
                  "read (or, in a recording, was not recorded)",)
    return View("libraries: RSS counts shared pages in every process, PSS divides them, physical counts them once",
                LIBRARY_COLUMNS, list(r.libraries), notes)


def render_footprint(r, by, sort, console) -> None:
    for part in footprint_renderables(r, by, sort, console):
        console.print(part)


def footprint_renderables(r, by, sort, console, changes=None) -> list:
    view = footprint_view(r, by, sort)
    if changes is not None and by == "process":  # while watching: what changed since the last scan
        view = view._replace(columns=view.columns + (Column("change", lambda p: changes.get(p.pid, ""), text=True),))
    return renderables(view, console, show_footer=by != "library") + footer_texts(r)


def footer(r, console) -> None:
    for t in footer_texts(r):
        console.print(t)


def footer_texts(r) -> list:
    parts = list(r.notes)  # why some processes were not read or not seen, with the real reason
    if r.zombies:
        parts.append(f"{counted(r.zombies, 'zombie')} skipped (exited, no memory left)")
    if r.vanished:
        parts.append(f"{r.vanished} exited during the scan")
    if r.kernel_threads:
        parts.append(f"{counted(r.kernel_threads, 'kernel thread')} skipped (no user memory)")
    return ["; ".join(parts) + "."] if parts else []


def _label_value(v) -> str:
    """The exposition format's escapes for a label value (a mount point can hold any byte)."""
    return str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prometheus_text(seg, foot) -> str:
    """node_exporter textfile-collector format. What could not be measured is left out and said by a
    companion gauge, never exported as 0: a false 0 or a false orphan pages someone at night."""
    lines = []

    def metric(name, help_, kind, samples):
        lines.append(f"# HELP {name} {help_}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            lab = ",".join(f'{k}="{_label_value(v)}"' for k, v in labels.items())
            lines.append(f"{name}{{{lab}}} {value}" if lab else f"{name} {value}")

    # a POSIX object with two names (a hard link) is one object: counted, and its bytes summed, once
    once = list({(o.namespace, o.device, o.inode): o for o in seg.posix}.values())
    objs = {k: v for k, v in (("sysv", seg.sysv), ("posix", once)) if k not in seg.unlisted}
    metric("shmkit_listing_complete", "1 when the kind's objects could be listed here; 0 when not (a kernel "
           "without System V IPC), and its counts below are left out.", "gauge",
           [({"kind": k}, int(k not in seg.unlisted)) for k in ("sysv", "posix")])
    metric("shmkit_shared_objects", "Shared memory objects present.", "gauge",
           [({"kind": k}, len(v)) for k, v in objs.items()])
    metric("shmkit_shared_object_bytes", "Declared size of shared memory objects.", "gauge",
           [({"kind": k}, sum(o.size_bytes for o in v)) for k, v in objs.items()])
    resident = {k: [o.rss_bytes if k == "sysv" else o.allocated_bytes for o in v] for k, v in objs.items()}
    metric("shmkit_shared_object_resident_bytes", "Resident bytes: System V rss, POSIX allocated blocks; left out "
           "for a kind where some object's figure is unknown (a kernel without rss in /proc/sysvipc/shm, or one "
           "that gives more than a segment can hold).", "gauge",
           [({"kind": k}, sum(vals)) for k, vals in resident.items() if None not in vals])
    metric("shmkit_orphan_objects", "Objects nothing maps and nobody marked for removal (known orphans only).", "gauge",
           [({"kind": k}, sum(1 for o in v if o.orphan)) for k, v in objs.items()])
    metric("shmkit_orphan_unknown_objects", "Objects whose possible mappers could not all be read: orphan or not "
           "is unknown.", "gauge", [({"kind": k}, sum(1 for o in v if o.orphan is None)) for k, v in objs.items()])
    pinned = [o for o in seg.sysv if o.pinned] + list(seg.pinned)
    reasons = {"sysv": "no attacher, not marked for removal", "posix": "removed from /dev/shm, still mapped",
               "memfd": "memfd held only by a descriptor"}
    # System V orphans come from the kernel's nattch; the others need every process's maps and descriptors
    known = {k: w for k, w in reasons.items() if (k == "sysv" or seg.complete) and k not in seg.unlisted}
    metric("shmkit_segments_complete", "1 when every process's maps and descriptors were read (pinned POSIX and "
           "memfd counts are given only then).", "gauge", [({}, int(seg.complete))])
    metric("shmkit_pinned_objects", "Memory held although no listing shows it or nothing maps it.", "gauge",
           [({"reason": why}, sum(1 for o in pinned if o.kind == kind)) for kind, why in known.items()])
    metric("shmkit_pinned_bytes", "Declared size of pinned objects.", "gauge",
           [({"reason": why}, sum(o.size_bytes or 0 for o in pinned if o.kind == kind)) for kind, why in known.items()])
    metric("shmkit_remove_ipc_objects", "Objects of regular users that systemd-logind RemoveIPC=yes deletes at "
           "logout.", "gauge", [({"kind": k}, sum(1 for o in v if o.remove_ipc)) for k, v in objs.items()])
    metric("shmkit_dev_shm_fill_ratio", "Used fraction of each /dev/shm mount.", "gauge",
           [({"where": d.where, "device": d.device}, round(d.fill, 4)) for d in seg.dev_shm if d.fill is not None])
    metric("shmkit_dev_shm_folder_bytes", "Allocated by files in folders of each /dev/shm mount: tmpfs memory that "
           "no POSIX object accounts for.", "gauge",
           [({"where": d.where, "device": d.device}, d.folder_bytes) for d in seg.dev_shm
            if d.folder_bytes is not None])  # a folder we may not read: left out, never 0
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
