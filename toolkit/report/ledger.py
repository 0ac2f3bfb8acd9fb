"""`footprint --by cgroup` and `--by object`: who uses shared memory and who pays for it."""
from __future__ import annotations

from toolkit.report.view import Column, View, escape, raw_hex
from toolkit.report.view import render as render_view
from toolkit.units import human_bytes

SHORT = {"anon": "anon", "sysv": "sysv", "posix": "posix", "memfd": "memfd", "tmpfs": "tmpfs",
         "library_text": "lib text", "library_data": "lib data", "other_file": "file", "hugetlb": "hugetlb"}


def to_json(led, by) -> dict:
    if by == "cgroup":
        return {"by": "cgroup", "cgroup_version": led.cgroup_version, "privileged": led.privileged,
                "complete": led.complete, "notes": list(led.notes),
                "groups": [{"cgroup": c.cgroup, "processes": c.processes, "pss_bytes": dict(c.pss_bytes),
                            "memory_stat": c.memory_stat, "charged_bytes": c.charged_bytes,
                            "unmapped_shmem_bytes": c.unmapped_shmem_bytes, "descendants": list(c.descendants)}
                           for c in led.cgroups]}
    return {"by": "object", "privileged": led.privileged, "complete": led.complete, "notes": list(led.notes),
            "objects": [{
                "kind": o.kind, "name": escape(o.name), "name_hex": raw_hex(o.name), "shmid": o.shmid,
                "size_bytes": o.size_bytes, "processes": o.processes, "rss_sum_bytes": o.rss_sum_bytes,
                "pss_sum_bytes": o.pss_sum_bytes, "physical_bytes": o.physical_bytes, "saved_bytes": o.saved_bytes,
                "used_by": [{"cgroup": cg, "pss_bytes": b} for cg, b in o.used_by],
                "charged_to": None if o.charged_to is None else [{"cgroup": cg, "bytes": b} for cg, b in o.charged_to],
                "ipc_namespace": o.ipc_namespace, "device": o.device, "inode": o.inode} for o in led.objects],
            "library_copies": [{"name": escape(c.name), "build_id": c.build_id, "files": c.files,
                                "extra_bytes": c.extra_bytes, "paths": [escape(p) for p in c.paths]}
                               for c in led.library_copies]}


def _hb(n):
    return human_bytes(n) if n is not None else "-"


def _shared_use(c) -> int:
    return sum(c.pss_bytes.get(k, 0) for k in ("sysv", "posix", "memfd", "tmpfs"))


def _charged_shared(c):
    if c.charged_bytes is None:
        return None
    return sum(c.charged_bytes.get(k, 0) for k in ("sysv", "posix", "memfd", "tmpfs"))


def _why(c) -> str:
    """Where "used" (Pss) and "charged" (first touch) differ, and why."""
    used, paid = _shared_use(c), _charged_shared(c)
    out = []
    shmem = (c.memory_stat or {}).get("shmem")
    if c.unmapped_shmem_bytes and c.unmapped_shmem_bytes >= max(1 << 20, shmem // 4):
        out.append(f"{human_bytes(c.unmapped_shmem_bytes)} of its shmem is in no mapping: /dev/shm files or "
                   "segments nobody maps (shmkit segments), tmpfs files")
    if paid is not None and max(used, paid) >= 1 << 20:
        if paid > 1.5 * used:
            out.append("pays for shared pages others use too: it touched them first")
        elif used > 1.5 * paid:
            out.append("uses shared pages charged to another cgroup, which touched them first")
    return "; ".join(out)


def cgroup_view(led) -> View:
    shm_stat = "shmem"
    cols = (
        Column("cgroup", lambda c: c.cgroup if c.cgroup is not None else "?", text=True),
        Column("procs", lambda c: c.processes, right=True),
        # narrow: the file kinds give way first, then the explicit kinds; anon, sysv and posix stay
        *[Column(SHORT[k], lambda c, k=k: c.pss_bytes.get(k, 0), _hb, key=k, right=True,
                 optional={"anon": 0, "sysv": 0, "posix": 0, "memfd": 4, "tmpfs": 5, "hugetlb": 6,
                           "library_text": 7, "library_data": 8, "other_file": 9}[k])
          for k in ("anon", "sysv", "posix", "memfd", "tmpfs", "library_text", "library_data",
                    "other_file", "hugetlb")],
        Column("charged shmem", lambda c: (c.memory_stat or {}).get(shm_stat), _hb, key="memory_stat_shmem", right=True),
        Column("charged shared", _charged_shared, _hb, key="charged_shared", right=True, optional=1),
        Column("note", _why, text=True),
    )
    notes = ("Pss by kind: what the processes of each cgroup use; charged: what the kernel bills the cgroup "
             "(memory.stat shmem) and, as root, the shared objects' pages charged to it (/proc/kpagecgroup). "
             "A shmem or page-cache page is charged to the cgroup that first touched it.",)
    nested = [c for c in led.cgroups if c.descendants]
    if nested:  # memory.stat is hierarchical: the rows' charges are not to be added up
        notes += (f"charged shmem of a cgroup includes the cgroups below it: {escape(nested[0].cgroup)} includes "
                  + ", ".join(escape(d) for d in nested[0].descendants[:3])
                  + (" and more" if len(nested[0].descendants) > 3 else "")
                  + (f" (and {len(nested) - 1} more cgroups likewise)" if len(nested) > 1 else ""),)
    notes += led.notes
    return View(f"shared memory by cgroup (v{led.cgroup_version or '?'})", cols, list(led.cgroups), notes)


def _same(content_id: str) -> str:
    if content_id.startswith("sha256:"):  # built without a build-id: the same bytes
        return f"no build-id, the same bytes: sha256 {content_id[7:19]}"
    return f"build-id {content_id[:12]}"


def _cgroups(pairs) -> str:
    total = sum(b for _, b in pairs) or 1
    return ", ".join(f"{cg or '?'} {100 * b / total:.0f}%" for cg, b in pairs) or "-"


def object_view(led) -> View:
    seen = {}
    for o in led.objects:
        seen[o.kind, o.name] = seen.get((o.kind, o.name), 0) + 1

    def name(o):
        """Two objects of one name (a container's libc and ours, shmid 0 of two IPC namespaces) are told
        apart by what makes them two."""
        if seen[o.kind, o.name] < 2:
            return o.name
        if o.kind == "sysv":
            return f"{o.name} (IPC namespace {o.ipc_namespace})"
        return f"{o.name} (device {o.device} inode {o.inode})"

    cols = (
        Column("kind", lambda o: o.kind),
        Column("name", name, text=True, ident=True),
        Column("procs", lambda o: o.processes, right=True),
        Column("Rss sum", lambda o: o.rss_sum_bytes, _hb, key="rss_sum_bytes", right=True),
        Column("Pss sum", lambda o: o.pss_sum_bytes, _hb, key="pss_sum_bytes", right=True),
        Column("physical", lambda o: o.physical_bytes, _hb, key="physical_bytes", right=True),
        Column("saved", lambda o: o.saved_bytes, _hb, key="saved_bytes", right=True, optional=2),
        Column("used by", lambda o: _cgroups(o.used_by), text=True, optional=1),
        Column("charged to", lambda o: _cgroups(o.charged_to) if o.charged_to is not None else None, text=True),
    )
    if not any(o.physical_bytes is not None or o.charged_to is not None for o in led.objects):
        # unprivileged (or --no-pfns): three columns of '-' would squeeze the names; the notes say why
        cols = tuple(c for c in cols if c.title not in ("physical", "saved", "charged to"))
    notes = tuple(f"{escape(c.name)}: {c.files} copies from {c.files} files, {human_bytes(c.extra_bytes)} more than one copy "
                  f"would cost ({_same(c.build_id)})" for c in led.library_copies) + led.notes
    return View(f"shared objects ({len(led.objects)})", cols, list(led.objects), notes)


def render(led, by, console) -> None:
    render_view(cgroup_view(led) if by == "cgroup" else object_view(led), console)
