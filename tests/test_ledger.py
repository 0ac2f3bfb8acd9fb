"""The ledger with real memory cgroups: cgroup A creates and touches a 64 MiB System V segment and a 64 MiB
POSIX object, cgroup B maps and reads both. Who uses (Pss) is shared; who pays (the charge) is A."""
import io
import json
import os
import random
import re
import subprocess
import sys
import time

import pytest
from conftest import REPO, is_root, run_shmkit

from toolkit import mechanisms
from toolkit.measure.ledger import scan_ledger
from toolkit.measure.peer import Peer
from toolkit.mechanisms import Handle
from toolkit.proc.cgroup import cgroup_dir, memory_hierarchy, process_cgroup

MIB = 1 << 20
SIZE = 64 * MIB


@pytest.fixture
def two_cgroups():
    """Two memory cgroups made under this process's own (never elsewhere), removed after."""
    h = memory_hierarchy()
    if h is None:
        pytest.skip("no memory cgroup hierarchy is mounted here")
    own = process_cgroup("self", h)
    parent = cgroup_dir(own, h) if own is not None else None
    if parent is None or not os.access(parent, os.W_OK):
        pytest.skip(f"cannot make cgroups under our own cgroup {own!r} (not writable here)")
    made = []
    tag = f"shmkit-test-{os.getpid()}-{random.randrange(1 << 20)}"
    try:
        for name in ("A", "B"):
            d = os.path.join(parent, f"{tag}-{name}")
            os.mkdir(d)
            made.append(d)
            if h.version == 2 and "memory" not in open(os.path.join(d, "cgroup.controllers")).read().split():
                pytest.skip("cgroup v2: the memory controller is not enabled for our cgroup's children")
        yield h, [(own.rstrip("/") + "/" + os.path.basename(d)) for d in made], made
    finally:
        for d in made:
            deadline = time.monotonic() + 10
            while open(os.path.join(d, "cgroup.procs")).read().strip() and time.monotonic() < deadline:
                time.sleep(0.05)
            os.rmdir(d)


def _join(folder):
    def preexec():
        with open(os.path.join(folder, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))
    return preexec


def test_used_by_both_charged_to_the_first_toucher(two_cgroups):
    h, (path_a, path_b), (dir_a, dir_b) = two_cgroups
    a, b = Peer(preexec_fn=_join(dir_a)), Peer(preexec_fn=_join(dir_b))
    made = []
    try:
        for name in ("sysv", "posix"):
            mech = mechanisms.get(name)
            handle = Handle.from_json(a.call("create", handle=mech.new_handle(SIZE).to_json())["handle"])
            made.append(handle)
            a.call("attach", region=name, handle=handle.to_json())
            a.call("touch", region=name, write=True, work=SIZE)  # A faults every page in: A is charged
            mech.mark(handle)  # gone with its last user, whatever happens to this test
            b.call("attach", region=name, handle=handle.to_json())
            b.call("touch", region=name, write=False, work=SIZE)
        led = scan_ledger(pids=[a.pid, b.pid])
        groups = {g.cgroup: g for g in led.cgroups}
        assert set(groups) == {path_a, path_b}
        for g in groups.values():
            assert g.processes == 1
            assert g.pss_bytes["sysv"] == 32 * MIB and g.pss_bytes["posix"] == 32 * MIB
        assert groups[path_a].memory_stat["shmem"] >= 128 * MIB
        assert groups[path_b].memory_stat["shmem"] < 8 * MIB
        objs = {o.kind: o for o in led.objects if o.kind in ("sysv", "posix") and o.size_bytes == SIZE}
        assert set(objs) == {"sysv", "posix"}
        for o in objs.values():
            assert o.processes == 2 and o.rss_sum_bytes == 128 * MIB and o.pss_sum_bytes == 64 * MIB
            assert dict(o.used_by) == {path_a: 32 * MIB, path_b: 32 * MIB}
        libc = max((o for o in led.objects if o.kind == "library_text" and "libc.so" in o.name),
                   key=lambda o: o.rss_sum_bytes)
        if is_root:
            for o in objs.values():
                assert o.physical_bytes == 64 * MIB and o.saved_bytes == 64 * MIB
                assert dict(o.charged_to) == {path_a: 64 * MIB}  # all of it to A, who touched it first
            assert groups[path_a].charged_bytes["sysv"] == groups[path_a].charged_bytes["posix"] == 64 * MIB
            assert groups[path_b].charged_bytes.get("sysv", 0) == groups[path_b].charged_bytes.get("posix", 0) == 0
            assert libc.physical_bytes < libc.rss_sum_bytes
        else:
            assert libc.physical_bytes is None and groups[path_a].charged_bytes is None
        # the CLI says the same, in the JSON shape
        d = json.loads(run_shmkit("footprint", "--by", "cgroup", "--json", str(a.pid), str(b.pid)).stdout)
        assert d["by"] == "cgroup" and d["cgroup_version"] == h.version
        ga = next(g for g in d["groups"] if g["cgroup"] == path_a)
        assert ga["pss_bytes"]["sysv"] == 32 * MIB and ga["memory_stat"]["shmem"] >= 128 * MIB
        d = json.loads(run_shmkit("footprint", "--by", "object", "--json", str(a.pid), str(b.pid)).stdout)
        o = next(o for o in d["objects"] if o["kind"] == "sysv" and o["size_bytes"] == SIZE)
        assert o["processes"] == 2 and {u["cgroup"] for u in o["used_by"]} == {path_a, path_b}
        table = run_shmkit("footprint", "--by", "cgroup", str(a.pid), str(b.pid), env={**os.environ, "COLUMNS": "200"})
        assert "pays for shared pages others use too" in table.stdout or not is_root
        # --no-pfns: the same use, no physical pages or charges, and it says so (even as root)
        d = json.loads(run_shmkit("footprint", "--by", "object", "--json", "--no-pfns", str(a.pid), str(b.pid)).stdout)
        o = next(o for o in d["objects"] if o["kind"] == "posix" and o["size_bytes"] == SIZE)
        assert o["pss_sum_bytes"] == 64 * MIB and o["physical_bytes"] is None and o["charged_to"] is None
        assert d["privileged"] is is_root
        assert any(("left out (--no-pfns)" if is_root else "need root") in n for n in d["notes"])
    finally:
        a.close()
        b.close()
        for handle in made:
            mechanisms.get(handle.mechanism).destroy(handle)


def test_ledger_as_nobody_says_what_it_cannot_read(nobody_env):
    from conftest import run_as_nobody

    r = run_as_nobody(nobody_env, "footprint", "--by", "object", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["privileged"] is False and d["complete"] is False
    assert all(o["physical_bytes"] is None and o["charged_to"] is None for o in d["objects"])
    r = run_as_nobody(nobody_env, "footprint", "--by", "cgroup", "--json")
    d = json.loads(r.stdout)
    assert all(g["charged_bytes"] is None for g in d["groups"])
    assert any("need root" in n for n in d["notes"])


def test_an_object_table_without_physical_pages_gives_the_names_their_room():
    """Unprivileged or with --no-pfns, physical, saved and charged to are '-' in every row: three columns of
    nothing squeezed the names to 20 characters ('/usr/lib/x86_64-linu' / 'x-gnu/libc.so.6') at 100
    columns. The table leaves them out; the note says why."""
    from toolkit.report.ledger import object_view
    from toolkit.report.view import Console, render

    sleeper = subprocess.Popen(["sleep", "60"])  # a scan leaves its own process out: another maps libc
    try:
        led = scan_ledger(pids=[sleeper.pid], pfns=False)
        privileged = scan_ledger(pids=[sleeper.pid])
    finally:
        sleeper.kill()
        sleeper.wait()
    view = object_view(led)
    assert [c.title for c in view.columns] == ["kind", "name", "procs", "Rss sum", "Pss sum", "used by"]
    buf = io.StringIO()
    render(view, Console(file=buf, width=100))
    libc = mechanisms.get("dso").new_handle(path=None).path  # the libc this process maps
    assert any(line.split()[1:2] == [libc] for line in buf.getvalue().splitlines()), buf.getvalue()
    assert "left out (--no-pfns)" in buf.getvalue() or "need root" in buf.getvalue()
    assert [c.title for c in object_view(privileged).columns][5:] == (
        ["physical", "saved", "used by", "charged to"] if os.geteuid() == 0 else ["used by"])


def test_hugetlb_segments_get_their_real_size(reserved_hugepages):
    """SHM_HUGETLB pages are outside smaps' Rss and Pss: every view counts them from the Hugetlb fields."""
    from toolkit.proc.system import read_meminfo

    huge = read_meminfo()["Hugepagesize"]
    sysv = mechanisms.get("sysv")
    handle = sysv.new_handle(huge, huge=True)
    hold = sysv.create_marked(handle)
    try:
        with Peer() as p:
            p.call("attach", region="h", handle=handle.to_json())
            sysv.detach(hold)
            p.call("touch", region="h", write=True, work=huge)
            d = json.loads(run_shmkit("footprint", "--json", str(p.pid)).stdout)
            assert d["processes"][0]["hugetlb_bytes"] == huge
            assert d["totals"]["hugetlb_bytes"] == huge  # the totals sum every column the rows have
            led = scan_ledger(pids=[p.pid])
            assert sum(g.pss_bytes["hugetlb"] for g in led.cgroups) == huge
            seg = next(o for o in led.objects if o.kind == "sysv" and o.shmid == handle.shmid)
            assert seg.rss_sum_bytes == huge and seg.size_bytes == huge
    finally:
        sysv.detach(hold)
        sysv.destroy(handle)


def test_a_huge_page_segment_is_never_given_more_rss_than_it_can_hold_and_by_kind_counts_it(reserved_hugepages):
    """Linux 6.x gives a SHM_HUGETLB segment's rss in /proc/sysvipc/shm once per base page (2 MiB of pages read
    1 GiB). segments must never show more than a segment can hold: the kernel's figure where it is possible,
    unknown (null, said) where not. And --by kind showed that segment as "sysv 0 B": huge pages are in no
    Rss; its hugetlb column holds them."""
    from toolkit.proc.system import read_meminfo, read_sysvipc_shm

    huge = read_meminfo()["Hugepagesize"]
    sysv = mechanisms.get("sysv")
    handle = sysv.new_handle(2 * huge, huge=True)
    plain = sysv.new_handle(65536)
    hold = sysv.create_marked(handle)
    hold_plain = sysv.create_marked(plain)
    try:
        with Peer() as p:
            p.call("attach", region="h", handle=handle.to_json())
            p.call("touch", region="h", write=True, work=2 * huge)
            p.call("attach", region="s", handle=plain.to_json())
            p.call("touch", region="s", write=True, work=65536)
            kernel = next(s for s in read_sysvipc_shm() if s.shmid == handle.shmid).rss
            d = json.loads(run_shmkit("segments", "--json").stdout)
            seg = next(o for o in d["sysv"] if o["shmid"] == handle.shmid)
            small = next(o for o in d["sysv"] if o["shmid"] == plain.shmid)
            assert small["rss_bytes"] == 65536  # an ordinary segment keeps the kernel's figure
            if kernel is not None and kernel > 2 * huge:  # this kernel's miscount: unknown, and said
                assert seg["rss_bytes"] is None, seg
                assert any(n.startswith("rss unknown for 1 System V segment") for n in d["notes"]), d["notes"]
                prom = run_shmkit("export", "--prometheus").stdout  # an unknown is left out, never summed as 0
                assert 'shmkit_shared_object_resident_bytes{kind="sysv"}' not in prom
                assert 'shmkit_shared_object_resident_bytes{kind="posix"}' in prom
            else:
                assert seg["rss_bytes"] == kernel
            assert seg["rss_bytes"] is None or seg["rss_bytes"] <= 2 * huge
            k = json.loads(run_shmkit("footprint", str(p.pid), "--by", "kind", "--json").stdout)["by_kind"]
            assert k["sysv"]["hugetlb_bytes"] == 2 * huge and k["sysv"]["rss_bytes"] == 65536, k
            table = run_shmkit("footprint", str(p.pid), "--by", "kind", env={**os.environ, "COLUMNS": "80"}).stdout
            flat = " ".join(table.split())
            assert "hugetlb" in table.splitlines()[1] and "counted apart by the kernel" in flat, table
    finally:
        sysv.detach(hold)
        sysv.detach(hold_plain)
        sysv.destroy(handle)
        sysv.destroy(plain)


# ------------------------------------------------------------------ every namespace, pinned memory


def test_segments_of_another_ipc_namespace_and_dev_shm_mount_are_listed_with_their_attachers():
    from toolkit.measure.sandbox import private_peer
    from toolkit.measure.system import scan_segments

    peer, why = private_peer()
    if peer is None:
        pytest.skip(f"no private namespace can be made here: {why}")
    try:
        handles = {}
        for name in ("sysv", "posix"):
            h = peer.call("create", handle=mechanisms.get(name).new_handle(1 << 20).to_json())["handle"]
            peer.call("attach", region=name, handle=h)
            handles[name] = h
        ipc_ns, mnt_ns = os.readlink(f"/proc/{peer.pid}/ns/ipc"), os.readlink(f"/proc/{peer.pid}/ns/mnt")
        r = scan_segments()
        if os.geteuid() == 0:  # entering another IPC namespace needs CAP_SYS_ADMIN
            seg = next(o for o in r.sysv if o.namespace == ipc_ns and o.shmid == handles["sysv"]["shmid"])
            assert [a.pid for a in seg.attachers] == [peer.pid] and seg.size_bytes == 1 << 20
        obj = next(o for o in r.posix if o.namespace == mnt_ns and "/" + o.name == handles["posix"]["name"])
        assert [a.pid for a in obj.attachers] == [peer.pid]
        where = next(d for d in r.dev_shm if d.namespace == mnt_ns)
        assert where.where == f"/proc/{peer.pid}/root/dev/shm" and where.used_bytes >= 0 and not where.full
        d = json.loads(run_shmkit("segments", "--json").stdout)
        assert any(o["namespace"] == mnt_ns for o in d["posix"]) and len(d["dev_shm"]) >= 2
        # an id or name of another namespace means nothing in ours: the way in is named
        assert all(o["via_pid"] is None for o in d["sysv"] if o["namespace"] == os.readlink("/proc/self/ns/ipc"))
        assert [o["via_pid"] for o in d["posix"] if o["namespace"] == mnt_ns] == [peer.pid]
        if os.geteuid() == 0:
            theirs = [o for o in d["sysv"] if o["namespace"] == ipc_ns]
            assert [o["via_pid"] for o in theirs] == [peer.pid]
            table = run_shmkit("segments", env={**os.environ, "COLUMNS": "200"}).stdout
            assert f"IPC namespace of pid {peer.pid}" in table and f"/dev/shm of pid {peer.pid}" in table
        # the ledger too: a new IPC namespace's first segment is shmid 0, which maps show as inode 0
        assert handles["sysv"]["shmid"] == 0
        peer.call("touch", region="sysv", write=True, work=1 << 20)
        objs = json.loads(run_shmkit("footprint", "--by", "object", "--json").stdout)["objects"]
        seg = [o for o in objs if o["kind"] == "sysv" and o["ipc_namespace"] == ipc_ns]
        assert len(seg) == 1 and seg[0]["shmid"] == 0 and seg[0]["processes"] == 1, seg
        assert seg[0]["rss_sum_bytes"] == seg[0]["pss_sum_bytes"] == 1 << 20  # one mapper, every page touched
        if os.geteuid() == 0:
            peer.call("detach", region="sysv")  # an orphan now, in a namespace where ipcrm here cannot reach it
            table = run_shmkit("segments", env={**os.environ, "COLUMNS": "200"}).stdout
            assert "in another namespace: nsenter --target PID --ipc ipcrm -m SHMID" in table, table
    finally:
        peer.close()  # the namespace, and everything in it, goes with it


def test_pinned_memory_nobody_lists_is_found():
    from toolkit.measure.system import scan_segments

    posix, memfd = mechanisms.get("posix"), mechanisms.get("memfd")
    with Peer() as p:
        h = Handle.from_json(p.call("create", handle=posix.new_handle(2 << 20).to_json())["handle"])
        p.call("attach", region="p", handle=h.to_json())
        p.call("touch", region="p", write=True, work=2 << 20)
        posix.mark(h)  # unlinked from /dev/shm, still mapped by the peer
        m = p.call("create", handle=memfd.new_handle(3 << 20).to_json())["handle"]  # held by a descriptor only
        r = scan_segments()
        pinned = {(o.kind, o.device, o.inode): o for o in r.pinned}
        shm = next(o for o in r.pinned if o.kind == "posix" and "/" + o.name == h.name)
        assert [a.pid for a in shm.attachers] == [p.pid] and "still mapped" in shm.pinned
        mem = next(o for o in r.pinned if o.kind == "memfd" and p.pid in [a.pid for a in o.attachers])
        assert mem.size_bytes == 3 << 20 and "only by a descriptor" in mem.pinned
        assert m["fd"] is not None and pinned
        text = run_shmkit("export", "--prometheus").stdout
        if r.complete:
            assert re.search(r'^shmkit_pinned_objects\{reason="memfd held only by a descriptor"\} [1-9]', text, re.M)
        else:
            assert 'reason="memfd held only by a descriptor"' not in text and "shmkit_segments_complete 0" in text
        table = run_shmkit("segments", env={**os.environ, "COLUMNS": "120"}).stdout
        assert "pinned memory nobody lists or maps" in table and "only by a descriptor" in table


# ------------------------------------------------------------------ snapshot and replay


def test_snapshot_replays_as_the_live_run(tmp_path):
    sysv, posix = mechanisms.get("sysv"), mechanisms.get("posix")
    handles = [sysv.new_handle(4 * MIB), posix.new_handle(4 * MIB)]
    with Peer() as p1, Peer() as p2:
        try:
            for h in handles:
                mechanisms.get(h.mechanism).create(h)
                for p in (p1, p2):
                    p.call("attach", region=h.mechanism, handle=h.to_json())
                    p.call("touch", region=h.mechanism, write=False, work=4 * MIB)
            pids = [str(p1.pid), str(p2.pid)]
            live = {cmd: json.loads(run_shmkit(*cmd.split(), "--json", *extra).stdout)
                    for cmd, extra in (("segments", ()), ("footprint", pids), ("footprint --by object", pids))}
            snap = tmp_path / "host.tar.gz"
            r = run_shmkit("snapshot", str(snap))
            assert r.returncode == 0 and "processes" in r.stdout, r.stderr
            replay = {cmd: json.loads(run_shmkit(*cmd.split(), "--json", "--from", str(snap), *extra).stdout)
                      for cmd, extra in (("segments", ()), ("footprint", pids), ("footprint --by object", pids))}
        finally:
            for h in handles:
                mechanisms.get(h.mechanism).destroy(h)
    for kind, h in zip(("sysv", "posix"), handles):
        pick = (lambda o: o["shmid"] == h.shmid) if kind == "sysv" else (lambda o: "/" + o["name"] == h.name)
        a, b = next(o for o in live["segments"][kind] if pick(o)), next(o for o in replay["segments"][kind] if pick(o))
        assert a == b  # every field: attachers, sizes, owner, mode, flags
    for a, b in zip(live["footprint"]["processes"], replay["footprint"]["processes"]):
        assert (a["pid"], a["rss_bytes"]) == (b["pid"], b["rss_bytes"])
        # a library page stops being shared when another process exits between the two reads: Uss drifts
        assert abs(a["uss_bytes"] - b["uss_bytes"]) <= 256 << 10
    for kind in ("sysv", "posix"):
        a = next(o for o in live["footprint --by object"]["objects"] if o["kind"] == kind and o["size_bytes"] == 4 * MIB)
        b = next(o for o in replay["footprint --by object"]["objects"] if o["kind"] == kind and o["size_bytes"] == 4 * MIB)
        assert a == b  # Rss, Pss, physical pages and who is charged, replayed
    r = run_shmkit("footprint", "--from", str(tmp_path / "nope.tar.gz"))
    assert r.returncode == 1 and "no such snapshot" in r.stderr
    (tmp_path / "bad.tar.gz").write_bytes(b"not a tar")
    r = run_shmkit("segments", "--from", str(tmp_path / "bad.tar.gz"))
    assert r.returncode == 1 and "not a readable shmkit snapshot (not a tar archive" in r.stderr
    assert "Traceback" not in r.stderr


def _tar(path, members):
    import io
    import tarfile

    with tarfile.open(path, "w:gz") as t:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if isinstance(data, str):  # a symbolic link to data
                info.type, info.linkname = tarfile.SYMTYPE, data
                t.addfile(info)
            else:
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))


def test_odd_snapshot_files_get_one_line_and_nothing_escapes_the_private_folder(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "folder").mkdir()
    _tar(tmp_path / "json.tgz", [("host/snapshot.json", b"{not json")])
    _tar(tmp_path / "utf.tgz", [("host/snapshot.json", b"\xff\xfe\x00")])
    _tar(tmp_path / "list.tgz", [("host/snapshot.json", b"[1, 2]")])
    outside = tmp_path / "written-by-the-archive"
    _tar(tmp_path / "escape.tgz", [("host/snapshot.json", b'{"format": "shmkit-snapshot 1"}'),
                                   ("host/../../" + str(outside).lstrip("/"), b"x"),
                                   (str(outside) + "-absolute", b"x"),
                                   ("host/proc/link", "/etc/passwd")])
    cases = {"fifo": "not a regular file", "folder": "not a regular file", "json.tgz": "snapshot.json is not JSON",
             "utf.tgz": "snapshot.json is not JSON", "list.tgz": "another format", "escape.tgz": ""}
    for name, needle in cases.items():
        r = run_shmkit("footprint", "--from", str(tmp_path / name), timeout=30)  # a FIFO must not block
        assert r.returncode == 1 and len(r.stderr.splitlines()) == 1 and needle in r.stderr, (name, r.stderr)
    assert not os.path.exists(outside) and not os.path.exists(str(outside) + "-absolute")
    r = run_shmkit("segments", "--root", str(tmp_path / "folder"))
    assert r.returncode == 1 and r.stderr.strip().endswith("not a recorded host (it has no proc/self/status)")


def test_the_same_library_from_two_files_is_grouped_with_the_sharing_it_loses(tmp_path):
    """Two container images ship the same library as different files: same build-id, two inodes, two
    copies in memory."""
    import shutil

    from toolkit.mechanisms.dso import resolve_library

    lib = resolve_library("libz.so.1")
    copy = tmp_path / os.path.basename(lib)
    shutil.copy(lib, copy)
    os.chmod(tmp_path, 0o755)
    with Peer() as p1, Peer() as p2:
        for p, path in ((p1, lib), (p2, str(copy))):
            r = p.call("attach", region="lib", handle={"mechanism": "dso", "size": 0, "path": path})
            for lo, hi, _ in r["extra"]["text"]:
                p.call("touch", region="lib", write=False, addr=lo, length=hi - lo)
        led = scan_ledger(pids=[p1.pid, p2.pid])
    group = next(c for c in led.library_copies if set(c.paths) >= {lib, str(copy)})
    assert group.files == 2 and group.extra_bytes > 0 and len(group.build_id) >= 16


def test_in_a_cgroup_namespace_without_its_own_mount_the_charges_are_unknown_and_said_why():
    """`unshare -C` without a cgroup mount of its own: /proc/self/cgroup reads '/', a root the host's mount
    (mounted outside the namespace) cannot name. memory.stat was null with no word of why."""
    import shutil

    if not is_root or not shutil.which("unshare"):
        pytest.skip("needs root and unshare(1) to make a cgroup namespace")
    from toolkit.proc.cgroup import memory_hierarchy, process_cgroup

    h = memory_hierarchy()
    if h is None or process_cgroup("self", h) in (None, "/"):
        pytest.skip("this process is in the root memory cgroup: a cgroup namespace made here has the mount's root")
    r = subprocess.run(["unshare", "--cgroup", sys.executable, "-m", "toolkit", "footprint", "--by", "cgroup",
                        "--json"], capture_output=True, text=True, cwd=REPO, timeout=120)
    if r.returncode != 0 and "unshare" in r.stderr:
        pytest.skip(f"no cgroup namespace here: {r.stderr.strip()}")
    d = json.loads(r.stdout)
    if d["cgroup_version"] is None:
        pytest.skip("no memory cgroup hierarchy mounted here")
    mine = [g for g in d["groups"] if g["cgroup"] == "/"]
    assert mine and mine[0]["memory_stat"] is None, d["groups"]
    assert any("mounted outside this process's cgroup namespace" in n for n in d["notes"]), d["notes"]


def test_a_cgroup_memory_limit_refuses_what_cannot_fit_and_names_the_oom_killer(two_cgroups):
    """A container's limit is its cgroup's, not MemAvailable: compare refuses regions beyond it before it
    starts, and a peer the OOM killer ends is named as such, with the limit."""
    from conftest import new_objects, snapshot

    h, (path_a, _), (dir_a, _) = two_cgroups
    limit = 200 << 20
    files = (("memory.max", "memory.swap.max") if h.version == 2
             else ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes"))
    with open(os.path.join(dir_a, files[0]), "w") as f:
        f.write(str(limit))
    if os.path.exists(os.path.join(dir_a, files[1])):  # no swap to escape into: the OOM killer decides
        with open(os.path.join(dir_a, files[1]), "w") as f:
            f.write("0" if h.version == 2 else str(limit))
    before = snapshot()
    r = subprocess.run([sys.executable, "-m", "toolkit", "compare", "--size", "128M", "--peers", "2"],
                       capture_output=True, text=True, timeout=120, preexec_fn=_join(dir_a), cwd=REPO)
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r.stderr
    assert f"do not fit in the memory limit of cgroup {path_a} (209715200 bytes" in r.stderr
    r = subprocess.run([sys.executable, "-m", "toolkit", "compare", "--size", "4K", "--peers", "100"],
                       capture_output=True, text=True, timeout=120, preexec_fn=_join(dir_a), cwd=REPO)
    assert r.returncode == 1 and "100 peers do not fit in memory" in r.stderr  # ~9 MiB each, 200 MiB in all
    assert r.stderr.strip().endswith(f"209715200 bytes (200.0 MiB) is the memory limit of cgroup {path_a}")
    r = subprocess.run([sys.executable, "-m", "toolkit", "compare", "--size", "99M", "--peers", "2"],
                       capture_output=True, text=True, timeout=300, preexec_fn=_join(dir_a), cwd=REPO)
    if r.returncode == 0:
        swap = int(re.search(r"^SwapTotal:\s+(\d+)", open("/proc/meminfo").read(), re.M).group(1))
        assert swap > 0, "198 MiB of regions and three interpreters fitted in 200 MiB without swap"
        pytest.skip("the regions fitted: this machine's swap took the excess")
    assert r.returncode == 1 and "killed by SIGKILL; the OOM killer: /proc/vmstat oom_kill rose by" in r.stderr
    assert f"the memory limit of cgroup {path_a} is 209715200 bytes" in r.stderr, r.stderr
    assert new_objects(before) == (set(), set())  # the peers' deaths left nothing behind


@pytest.fixture
def library_under_a_mount(tmp_path):
    """A process in a mount namespace of its own (a container's, in small) maps library B at a path that,
    outside that namespace, names library A: (pid, that path, A, B)."""
    import shutil

    from toolkit.errors import ShmkitError
    from toolkit.mechanisms.dso import resolve_library

    if not is_root or not shutil.which("unshare"):
        pytest.skip("needs root and unshare(1) for a mount namespace with a bind mount")
    found = []
    for name in ("libz.so.1", "libbz2.so.1.0", "liblzma.so.5", "libzstd.so.1"):
        try:
            found.append(resolve_library(name))
        except ShmkitError:
            pass
    if len(found) < 2:
        pytest.skip(f"needs two of libz, libbz2, liblzma, libzstd; found {found}")
    a, b = found[:2]
    (tmp_path / "lib").mkdir()
    (tmp_path / "other").mkdir()
    here = tmp_path / "lib" / "libshmkit-test.so"
    shutil.copy(a, here)
    shutil.copy(b, tmp_path / "other" / "libshmkit-test.so")
    code = f"import ctypes, sys, time; ctypes.CDLL({str(here)!r}); print('up', flush=True); time.sleep(120)"
    p = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                          f"mount --bind {tmp_path}/other/libshmkit-test.so {here} && exec {sys.executable} -S -c \"$0\"",
                          code], stdout=subprocess.PIPE, text=True)
    try:
        if p.stdout.readline().strip() != "up":
            pytest.skip("the kernel refused a mount namespace or a bind mount here")
        yield p.pid, str(here), a, b
    finally:
        p.kill()
        p.wait()


def test_a_library_in_another_mount_namespace_is_read_from_that_namespace(library_under_a_mount):
    """The path in a container's maps names another file (or none) here: elf --pid and the ledger's
    build-id read the file the process maps, not ours of the same name."""
    import sys as _sys

    _sys.path.insert(0, os.path.join(REPO, "tests"))
    from readelf_oracle import readelf_segments

    pid, here, a, b = library_under_a_mount
    loads_of = {p: {row[1] for row in readelf_segments(p)[0] if row[0] == "LOAD"} for p in (a, b)}
    assert loads_of[a] != loads_of[b]
    r = run_shmkit("elf", "--pid", str(pid), "--json", here)
    assert r.returncode == 0, r.stderr
    (joined,) = json.loads(r.stdout)
    assert joined["path"] == here
    offsets = {m["load_offset"] for m in joined["mappings"]}
    assert offsets <= loads_of[b] and not offsets <= loads_of[a], (offsets, loads_of)
    # the ledger: the process's copy has B's build-id, so it is grouped with B loaded from its own file
    with Peer() as peer:
        rr = peer.call("attach", region="lib", handle={"mechanism": "dso", "size": 0, "path": b})
        for lo, hi, _ in rr["extra"]["text"]:
            peer.call("touch", region="lib", write=False, addr=lo, length=hi - lo)
        led = scan_ledger(pids=[pid, peer.pid])
    groups = [set(c.paths) for c in led.library_copies]
    assert any({here, b} <= g for g in groups), groups


def test_a_snapshot_keeps_the_build_ids_the_ledger_groups_library_copies_by(tmp_path):
    """A snapshot holds no libraries: replayed, the ledger still finds the same library in two files."""
    import shutil

    from toolkit.mechanisms.dso import resolve_library

    lib = resolve_library("libz.so.1")
    folder = tmp_path / "image"
    folder.mkdir()
    copy = folder / os.path.basename(lib)
    shutil.copy(lib, copy)
    os.chmod(tmp_path, 0o755)
    os.chmod(folder, 0o755)
    snap = tmp_path / "s.tar.gz"
    with Peer() as p1, Peer() as p2:
        for p, path in ((p1, lib), (p2, str(copy))):
            p.call("attach", region="lib", handle={"mechanism": "dso", "size": 0, "path": path})
        assert run_shmkit("snapshot", str(snap)).returncode == 0
        live = json.loads(run_shmkit("footprint", "--by", "object", "--json", "--no-pfns").stdout)
    shutil.rmtree(folder)  # replayed where the copy is gone, as on another machine
    replay = json.loads(run_shmkit("footprint", "--by", "object", "--json", "--no-pfns", "--from", str(snap)).stdout)
    for d in (live, replay):
        assert any({lib, str(copy)} <= set(c["paths"]) for c in d["library_copies"]), d["library_copies"]


def test_a_malformed_recording_is_one_line_not_a_traceback(tmp_path):
    import tarfile

    snap = tmp_path / "s.tar.gz"
    assert run_shmkit("snapshot", str(snap)).returncode == 0
    for name, stat in (("list", "[]"), ("field", '{"/dev/shm": {"st_mode": "x"}}'),
                       ("ids", '{"build_ids": [1]}'), ("vfs", '{"statvfs": {"/dev/shm": {"f_blocks": 1}}}'),
                       ("json", "{")):
        bad = tmp_path / f"{name}.tar.gz"
        with tarfile.open(snap) as src, tarfile.open(bad, "w:gz") as dst:
            for m in src.getmembers():
                data = src.extractfile(m).read() if m.isfile() else None
                if m.name == "host/recorded-stat.json":
                    data = stat.encode()
                    m.size = len(data)
                dst.addfile(m, None if data is None else __import__("io").BytesIO(data))
        for args in (["segments"], ["footprint", "--by", "object"]):
            r = run_shmkit(*args, "--from", str(bad))
            assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, (name, args, r.stderr)
            assert "recorded-stat.json" in r.stderr and "Traceback" not in r.stderr


def test_two_files_of_one_name_are_two_rows_of_footprint_by_library(library_under_a_mount):
    """Our file at a path and a container's file at the same path are two libraries: one row would say
    that processes share pages they do not."""
    pid, here, _a, _b = library_under_a_mount
    with Peer() as peer:
        peer.call("attach", region="lib", handle={"mechanism": "dso", "size": 0, "path": here})
        d = json.loads(run_shmkit("footprint", "--by", "library", "--json", str(pid), str(peer.pid)).stdout)
        table = run_shmkit("footprint", "--by", "library", str(pid), str(peer.pid),
                           env={**os.environ, "COLUMNS": "200"}).stdout
        objects = json.loads(run_shmkit("footprint", "--by", "object", "--json", str(pid), str(peer.pid)).stdout)
        object_table = run_shmkit("footprint", "--by", "object", str(pid), str(peer.pid),
                                  env={**os.environ, "COLUMNS": "250"}).stdout
    texts = [o for o in objects["objects"] if o["name"] == here and o["kind"] == "library_text"]
    assert len(texts) == 2
    for o in texts:
        assert f"{here} (device {o['device']} inode {o['inode']})" in object_table, object_table
    rows = [u for u in d["libraries"] if u["path"] == here]
    assert len(rows) == 2 and all(u["processes"] == 1 and u["same_name"] for u in rows), rows
    assert len({u["inode"] for u in rows}) == 2
    for u in rows:
        assert f"{here} (device {u['device']} inode {u['inode']})" in table


@pytest.mark.skipif(not is_root, reason="the shmem in no mapping is found from the charges of mapped pages (root)")
def test_shmem_charged_to_a_cgroup_that_no_mapping_holds_is_named(two_cgroups):
    """An on-call question: a container is billed for shmem none of its processes maps (a file left in
    /dev/shm by a process that has exited). memory.stat says 'shmem'; the ledger says where it is not."""
    import secrets

    h, (path_a, _path_b), (dir_a, _dir_b) = two_cgroups
    name = "/dev/shm/shmkit-test-unmapped-" + secrets.token_hex(4)
    try:
        subprocess.run(["sh", "-c", f"head -c {16 * MIB} /dev/zero > {name}"], preexec_fn=_join(dir_a), check=True)
        a = Peer(preexec_fn=_join(dir_a))
        try:
            mech = mechanisms.get("posix")
            handle = Handle.from_json(a.call("create", handle=mech.new_handle(8 * MIB).to_json())["handle"])
            a.call("attach", region="p", handle=handle.to_json())
            a.call("touch", region="p", write=True, work=8 * MIB)  # mapped: not 'in no mapping'
            mech.mark(handle)
            led = scan_ledger(pids=[a.pid])
            g = next(c for c in led.cgroups if c.cgroup == path_a)
            assert g.memory_stat["shmem"] >= 24 * MIB
            # the 16 MiB file, give or take a page; never the 8 MiB the peer maps
            assert 16 * MIB - 64 * 1024 <= g.unmapped_shmem_bytes <= g.memory_stat["shmem"] - 8 * MIB
            table = run_shmkit("footprint", "--by", "cgroup", str(a.pid), env={**os.environ, "COLUMNS": "250"}).stdout
            assert "of its shmem is in no mapping" in " ".join(table.split())
            d = json.loads(run_shmkit("footprint", "--by", "cgroup", "--json", str(a.pid)).stdout)
            ga = next(x for x in d["groups"] if x["cgroup"] == path_a)
            assert ga["unmapped_shmem_bytes"] >= 16 * MIB - 64 * 1024 and ga["descendants"] == []
        finally:
            a.close()
    finally:
        os.unlink(name)


def test_segments_names_the_cgroup_of_each_attacher(two_cgroups):
    """'Which container is attached to this segment': each attacher carries its cgroup."""
    h, (path_a, path_b), (dir_a, dir_b) = two_cgroups
    a, b = Peer(preexec_fn=_join(dir_a)), Peer(preexec_fn=_join(dir_b))
    try:
        mech = mechanisms.get("sysv")
        handle = Handle.from_json(a.call("create", handle=mech.new_handle(1 << 20).to_json())["handle"])
        a.call("attach", region="s", handle=handle.to_json())
        mech.mark(handle)  # gone with its last user (Linux lets a marked segment be attached by its id)
        b.call("attach", region="s", handle=handle.to_json())
        d = json.loads(run_shmkit("segments", "--json").stdout)
        seg = next(o for o in d["sysv"] if o["shmid"] == handle.shmid)
        assert {(x["pid"], x["cgroup"]) for x in seg["attachers"]} == {(a.pid, path_a), (b.pid, path_b)}
    finally:
        a.close()
        b.close()


def test_the_same_library_without_a_build_id_is_grouped_by_its_bytes(tmp_path):
    """A library built without a build-id, shipped as two files: the same bytes are the same library."""
    import shutil

    from toolkit.mechanisms.dso import resolve_library

    if not shutil.which("objcopy"):
        pytest.skip("objcopy (binutils) is needed to make a library without a build-id")
    bare = tmp_path / "libbare.so"
    subprocess.run(["objcopy", "--remove-section", ".note.gnu.build-id", resolve_library("libz.so.1"), str(bare)],
                   check=True)
    from toolkit.elf.headers import read_build_id

    assert read_build_id(str(bare)) is None
    (tmp_path / "image").mkdir()
    copy = tmp_path / "image" / "libbare.so"
    shutil.copy(bare, copy)
    os.chmod(tmp_path, 0o755)
    os.chmod(tmp_path / "image", 0o755)
    with Peer() as p1, Peer() as p2:
        for p, path in ((p1, str(bare)), (p2, str(copy))):
            r = p.call("attach", region="lib", handle={"mechanism": "dso", "size": 0, "path": path})
            for lo, hi, _ in r["extra"]["text"]:
                p.call("touch", region="lib", write=False, addr=lo, length=hi - lo)
        led = scan_ledger(pids=[p1.pid, p2.pid])
        table = run_shmkit("footprint", "--by", "object", str(p1.pid), str(p2.pid),
                           env={**os.environ, "COLUMNS": "200"}).stdout
    group = next(c for c in led.library_copies if set(c.paths) >= {str(bare), str(copy)})
    assert group.files == 2 and group.build_id.startswith("sha256:")
    assert "no build-id, the same bytes" in " ".join(table.split())


def test_a_cgroups_descendants_are_its_subtree_only_and_its_unmapped_shmem_counts_them():
    """memory.stat is hierarchical: a row's shmem is set against the charges of its whole subtree, and
    /ab is not below /a."""
    from toolkit.measure.ledger import _with_subtrees
    from toolkit.records import CgroupUse

    rows = [CgroupUse(p, 1, {}, {"shmem": 10 * MIB}, {"sysv": MIB}) for p in ("/", "/a", "/a/b", "/ab", "/a/b2")]
    rows.append(CgroupUse("/c", 1, {}, {"shmem": 10 * MIB}, None))  # charges unknown: so is what is unmapped
    got = {c.cgroup: c for c in _with_subtrees(rows)}
    assert got["/a"].descendants == ("/a/b", "/a/b2") and got["/ab"].descendants == ()
    assert set(got["/"].descendants) == {"/a", "/a/b", "/ab", "/a/b2", "/c"}
    assert got["/a"].unmapped_shmem_bytes == 7 * MIB and got["/a/b"].unmapped_shmem_bytes == 9 * MIB
    assert got["/c"].unmapped_shmem_bytes is None and got["/"].unmapped_shmem_bytes is None
