"""`segments`, `footprint`, `export`: live processes, oracles (psutil, smem), unprivileged runs."""
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time

import psutil
import pytest
from conftest import REPO, run_as_nobody, run_shmkit

from toolkit import mechanisms
from toolkit.measure import system
from toolkit.measure.peer import PeerGroup
from toolkit.measure.system import classify, scan_footprint, scan_segments
from toolkit.proc.maps import read_smaps


@pytest.fixture
def objects():
    """A System V segment and a POSIX object, created here, always removed."""
    made = []

    def make(name, size=1 << 20, mode=0o600):
        mech = mechanisms.get(name)
        h = mech.new_handle(size)
        mech.create(h, mode)
        made.append((mech, h))
        return h

    yield make
    for mech, h in made:
        mech.destroy(h)


def test_attachers_are_exactly_the_peers(objects):
    seg, obj = objects("sysv"), objects("posix")
    with PeerGroup(3) as peers:
        for h in (seg, obj):
            peers.call_all("attach", region=h.mechanism, handle=h.to_json())
        report = scan_segments()
        pids = {p.pid for p in peers}
    s = next(o for o in report.sysv if o.shmid == seg.shmid)
    p = next(o for o in report.posix if "/" + o.name == obj.name)
    assert {a.pid for a in s.attachers} == pids and s.nattch == 3 and not s.orphan
    assert {a.pid for a in p.attachers} == pids and not p.orphan
    assert all("toolkit.measure.peer" in a.command for a in s.attachers)
    assert s.mode == p.mode == "0600" and not s.world_readable and not p.world_writable
    assert p.allocated_bytes == 0 and p.size_bytes == 1 << 20


def test_orphans_and_world_writable_objects_are_flagged(objects):
    seg = objects("sysv", 65536)
    obj = objects("posix", 65536, mode=0o666)
    report = scan_segments()
    s = next(o for o in report.sysv if o.shmid == seg.shmid)
    p = next(o for o in report.posix if "/" + o.name == obj.name)
    assert s.orphan and s.nattch == 0 and s.attachers == ()  # the kernel's nattch: known even if not all were read
    assert p.world_writable and p.world_readable and p.mode == "0666"
    # "nothing maps it" can only be said when every process's maps were read (here, as root in a
    # sandbox, pid 1 may hold capabilities we lack): otherwise unknown, never a false ORPHAN
    assert p.orphan is (True if report.complete else None)
    assert report.complete == (report.unreadable == 0)


def test_marked_for_removal_is_not_an_orphan(objects):
    seg = objects("sysv", 65536)
    sysv = mechanisms.get("sysv")
    with PeerGroup(1) as peers:
        peers.call_all("attach", region="s", handle=seg.to_json())
        sysv.destroy(seg)
        s = next(o for o in scan_segments().sysv if o.shmid == seg.shmid)
        assert s.marked_for_removal and not s.orphan and s.name == "0x00000000"


def test_memfd_mappings_are_found():
    with PeerGroup(1) as peers:
        import os as _os

        fd = _os.memfd_create("shmkit-test")
        try:
            _os.ftruncate(fd, 8192)
            peers[0].call("attach", region="m", handle={"mechanism": "memfd", "size": 8192, "fd": fd,
                                                         "path": f"/proc/{_os.getpid()}/fd/{fd}"})
            report = scan_segments()
        finally:
            _os.close(fd)
    found = [o for o in report.memfd if "shmkit-test" in o.name]
    assert found and peers[0].pid in {a.pid for a in found[0].attachers}


def test_footprint_pss_equals_psutil():
    with PeerGroup(3) as peers:
        peers.call_all("info")  # started and idle: their memory holds still
        pids = [p.pid for p in peers]
        report = scan_footprint(pids)
        oracle = {pid: psutil.Process(pid).memory_full_info() for pid in pids}
    assert {p.pid for p in report.processes} == set(pids)
    for p in report.processes:
        assert p.pss == oracle[p.pid].pss
        assert p.uss == oracle[p.pid].uss
        assert p.rss == oracle[p.pid].rss or abs(p.rss - oracle[p.pid].rss) < 64 << 10  # psutil's rss is from statm


def test_footprint_total_agrees_with_smem():
    """smem sums smaps, whose Pss is cut to whole kB per mapping; smaps_rollup sums first. On processes of a
    realistic size that difference is far below 1%, so the peers hold 32 MiB each, as a real program would."""
    smem = shutil.which("smem")
    if smem is None:
        pytest.skip("smem is not installed (.ci/run installs it)")
    with PeerGroup(4) as peers:
        peers.call_all("attach", region="a", handle={"mechanism": "anon", "size": 32 << 20})
        peers.call_all("touch", region="a", write=True)
        out = subprocess.run([smem, "-H", "-c", "pid pss"], capture_output=True, text=True, check=True).stdout
        ours = scan_footprint()
    theirs = {int(pid): int(kb) * 1024 for pid, kb in (line.split() for line in out.splitlines() if line.strip())}
    mine = {p.pid: p.pss for p in ours.processes}
    common = (set(mine) & set(theirs)) - {os.getpid()}  # pytest itself keeps changing between the two reads
    assert {p.pid for p in peers} <= common
    a, b = sum(mine[p] for p in common), sum(theirs[p] for p in common)
    assert abs(a - b) <= 0.01 * b, (a, b)


def test_by_kind_sees_explicit_shared_memory(objects):
    seg = objects("sysv", 1 << 20)
    with PeerGroup(2) as peers:
        peers.call_all("attach", region="s", handle=seg.to_json())
        for p in peers:
            p.call("touch", region="s", write=True)
        report = scan_footprint([p.pid for p in peers], by="kind")
    for p in report.processes:
        assert p.by_kind["sysv"]["rss"] == 1 << 20 and p.by_kind["sysv"]["pss"] == 1 << 19
        assert p.by_kind["library text"]["rss"] > 0 and p.by_kind["heap"]["rss"] > 0
        assert sum(v["pss"] for v in p.by_kind.values()) == p.pss


def test_classify_library_pieces():
    kinds = dict(zip((e.mapping for e in read_smaps("self")), classify(read_smaps("self"))))
    libc = [(m, k) for m, k in kinds.items() if "libc.so" in m.path]
    assert any(k == "library text" and "x" in m.perms for m, k in libc)
    assert any(k == "library data" and "w" in m.perms for m, k in libc)


def test_vanished_processes_are_counted(monkeypatch):
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    real = system.list_pids
    monkeypatch.setattr(system, "list_pids", lambda fs=None: real(fs) + [p.pid])
    r = scan_footprint()
    assert r.vanished >= 1 and p.pid not in {x.pid for x in r.processes}


def test_cli_footprint_views():
    for by in ("process", "user", "kind", "library"):
        r = run_shmkit("footprint", "--by", by, "--json")
        assert r.returncode == 0, r.stderr
        d = json.loads(r.stdout)
        assert {"processes", "totals", "unreadable"} <= set(d)
        assert d["totals"]["pss_bytes"] == sum(p["pss_bytes"] for p in d["processes"])
        for p in d["processes"]:
            assert {"pid", "command", "user", "rss_bytes", "pss_bytes", "uss_bytes", "swap_bytes"} <= set(p)
    r = run_shmkit("footprint", "--match", "toolkit|pytest", "--sort", "rss", env={**os.environ, "COLUMNS": "160"})
    assert r.returncode == 0 and "total" in r.stdout
    r = run_shmkit("footprint", "999999")
    assert r.returncode == 1 and "does not exist" in r.stderr and "Traceback" not in r.stderr
    r = run_shmkit("footprint", "--user", "no-such-user-xyz")
    assert r.returncode == 1 and "no user" in r.stderr
    # an unset variable, or a number no uid can be: usage errors, as for every other option
    for bad, said in (("", "an empty name"), ("4294967295", "is no uid")):
        r = run_shmkit("footprint", "--user", bad)
        assert r.returncode == 2 and said in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr


def test_cli_segments_json(objects):
    seg = objects("sysv", 65536)
    r = run_shmkit("segments", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    s = next(o for o in d["sysv"] if o["shmid"] == seg.shmid)
    assert {"key", "shmid", "owner", "mode", "size_bytes", "nattch", "rss_bytes", "orphan", "attachers"} <= set(s)
    assert s["orphan"] is True and s["size_bytes"] == 65536
    r = run_shmkit("segments", env={**os.environ, "COLUMNS": "200"})
    assert r.returncode == 0 and "ORPHAN" in r.stdout


def test_a_locked_segment_is_flagged_locked(objects):
    """shmctl(SHM_LOCK) keeps a segment's pages out of swap: ipcs -m says "locked", and so must we."""
    import ctypes

    locked, plain = objects("sysv", 65536), objects("sysv", 65536)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.shmctl.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
    SHM_LOCK = 11
    if libc.shmctl(locked.shmid, SHM_LOCK, None) != 0:
        pytest.skip(f"shmctl(SHM_LOCK) refused: {os.strerror(ctypes.get_errno())}")
    r = run_shmkit("segments", "--json")
    assert r.returncode == 0, r.stderr
    by_id = {o["shmid"]: o for o in json.loads(r.stdout)["sysv"]}
    assert by_id[locked.shmid]["locked"] is True and by_id[plain.shmid]["locked"] is False
    r = run_shmkit("segments", env={**os.environ, "COLUMNS": "200"})
    row = next(line for line in r.stdout.splitlines() if line.lstrip().startswith(str(locked.shmid)))
    assert "locked" in row, r.stdout


def test_a_size_that_is_not_whole_kib_is_listed_in_bytes(objects):
    """A 12345-byte segment read "12.1 KiB" beside an rss of 16.0 KiB: the size asked for is shown."""
    seg = objects("sysv", 12345)
    r = run_shmkit("segments", env={**os.environ, "COLUMNS": "200"})
    row = next(line for line in r.stdout.splitlines() if line.lstrip().startswith(str(seg.shmid)))
    assert "12345 B" in row, r.stdout


def test_export_prometheus_atomic(tmp_path, objects):
    objects("posix", 4096, mode=0o666)
    target = tmp_path / "shmkit.prom"
    r = run_shmkit("export", "--prometheus", str(target))
    assert r.returncode == 0, r.stderr
    text = target.read_text()
    assert 'shmkit_world_writable_objects{kind="posix"} ' in text and "# TYPE shmkit_pss_complete gauge" in text
    values = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if not line.startswith("#")}
    assert values['shmkit_world_writable_objects{kind="posix"}'] >= 1
    known = values['shmkit_orphan_objects{kind="posix"}'] + values['shmkit_orphan_unknown_objects{kind="posix"}']
    assert known >= 1  # ours: an orphan, or unknown where some process could not be read (never hidden)
    assert values["shmkit_pss_complete"] in (0, 1)
    assert any(k.startswith("shmkit_pss_bytes") for k in values) == (values["shmkit_pss_complete"] == 1)
    assert os.listdir(tmp_path) == ["shmkit.prom"]  # no temporary file left
    sample = re.compile(r'^[a-z_]+(\{([a-z_]+="(\\[\\"n]|[^"\\\n])*",?)+\})? -?[0-9.e+-]+$')
    assert all(sample.match(line) for line in text.splitlines() if not line.startswith("#")), text
    from toolkit.report.system import _label_value

    assert _label_value('/run/a "b"\\c\nd') == '/run/a \\"b\\"\\\\c\\nd'  # exposition-format escapes
    r = run_shmkit("export", "--prometheus", "/proc/no/such/dir/x.prom")
    assert r.returncode == 1 and "Traceback" not in r.stderr


def test_unprivileged_footprint_and_segments(nobody_env):
    r = run_as_nobody(nobody_env, "footprint", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["unreadable"] > 0  # root's processes
    assert all(p["user"] == "nobody" for p in d["processes"])
    assert d["complete"] is False and d["privileged"] is False
    assert any("belong to other users" in n for n in d["notes"])  # the real reason, said
    r = run_as_nobody(nobody_env, "footprint")
    assert r.returncode == 0 and "belong to other users" in r.stdout
    r = run_as_nobody(nobody_env, "segments", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["unreadable"] > 0


def test_as_nobody_a_process_attached_twice_is_all_of_nattch_not_an_unseen_attacher(nobody_env):
    """nattch counts mappings: one process that attached twice makes nattch 2. On a scan that could not read
    every process (uid 65534's), that one visible process read as 'pid command, ?' (an attacher unseen)."""
    import sysv_ipc

    seg = sysv_ipc.SharedMemory(None, sysv_ipc.IPC_CREX, mode=0o666, size=65536)
    seg.detach()  # ours not attached: the nobody process below holds both mappings
    code = ("import ctypes, sys, time\n"
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            "libc.shmat.restype = ctypes.c_void_p\n"
            "assert all(libc.shmat(int(sys.argv[1]), None, 0) not in (None, ctypes.c_void_p(-1).value) for _ in '12')\n"
            "print('attached', flush=True)\n"
            "time.sleep(60)\n")
    child = subprocess.Popen(["/usr/bin/python3", "-c", code, str(seg.id)], user=65534, group=65534, extra_groups=[],
                             cwd="/", stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "attached"
        d = json.loads(run_as_nobody(nobody_env, "segments", "--json").stdout)
        mine = next(o for o in d["sysv"] if o["shmid"] == seg.id)
        assert d["complete"] is False and mine["nattch"] == 2 and mine["mappings_seen"] == 2
        assert [a["pid"] for a in mine["attachers"]] == [child.pid]
        wide = {**nobody_env, "env": {**nobody_env["env"], "COLUMNS": "250"}}
        row = next(line for line in run_as_nobody(wide, "segments").stdout.splitlines()
                   if line.strip().startswith(str(seg.id) + " "))
        assert f"{child.pid} python3" in row and "?" not in row, row
    finally:
        child.kill()
        child.wait()
        seg.remove()


def test_as_nobody_an_attacher_it_cannot_see_is_unknown_not_nobody(nobody_env):
    """A 0600 segment of root's, attached by root (this test): uid 65534 may not read root's maps, so whom
    it is attached to is unknown. The table said '-' (nobody) beside nattch 1; JSON keeps the attachers it
    saw, with complete false."""
    import sysv_ipc

    seg = sysv_ipc.SharedMemory(None, sysv_ipc.IPC_CREX, mode=0o600, size=65536)
    try:
        seg.write(b"\1")
        wide = {**nobody_env, "env": {**nobody_env["env"], "COLUMNS": "250"}}
        table = run_as_nobody(wide, "segments").stdout
        row = next(line for line in table.splitlines() if line.strip().startswith(str(seg.id) + " "))
        assert re.search(r"\s\?\s{2,}other user", row), row  # attached now: '?', then the flags
        d = json.loads(run_as_nobody(nobody_env, "segments", "--json").stdout)
        mine = next(o for o in d["sysv"] if o["shmid"] == seg.id)
        assert mine["nattch"] == 1 and mine["attachers"] == [] and d["complete"] is False
        mine_root = next(o for o in json.loads(run_shmkit("segments", "--json").stdout)["sysv"] if o["shmid"] == seg.id)
        assert [a["pid"] for a in mine_root["attachers"]] == [os.getpid()]  # root sees who: no '?' there
    finally:
        seg.detach()
        seg.remove()


def test_demo_who_is_attached():
    r = subprocess.run([sys.executable, "demos/who_is_attached.py"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert "exactly those were found attached" in r.stdout and "ORPHAN" in r.stdout


# a process that maps what it is told to, one line of stdin at a time: "shared PATH", "private PATH",
# "sysv SHMID", "exec" (becomes `sleep`); it answers each line with "ok"
_MAPPER = r"""
import mmap, os, sys, sysv_ipc
kept = []
for line in sys.stdin:
    what, _, arg = line.strip().partition(" ")
    if what == "exec":
        os.execvp("sleep", ["sleep", "60"])
    if what == "sysv":
        seg = sysv_ipc.attach(int(arg))
        kept.append(seg)
    else:
        fd = os.open(arg, os.O_RDWR)
        kept.append(mmap.mmap(fd, 4096, mmap.MAP_SHARED if what == "shared" else mmap.MAP_PRIVATE))
        os.close(fd)
    print("ok", flush=True)
"""


@pytest.mark.parametrize("query", [True, False], ids=["procmap-query", "maps-text"])
def test_watch_keeps_maps_open_and_follows_each_process_exactly(objects, query):
    """segments --watch's kept descriptors: a shared mapping made between two scans is in the next one,
    exactly as a fresh scan shows it; a private mapping of a memfd is in within FULL_EVERY scans; a process
    that execs is read anew (its old mappings gone) and one that exits is dropped with its descriptors.
    Both ways: PROCMAP_QUERY where this kernel has it, the maps text where it does not."""
    from toolkit.measure.system import HeldMaps
    from toolkit.proc.maps import SharedMapsQuery

    if query and not SharedMapsQuery.supported():
        pytest.skip(f"this kernel ({os.uname().release}) has no PROCMAP_QUERY (Linux 6.11): the maps-text case "
                    "covers it")
    seg, obj = objects("sysv", 4096), objects("posix", 4096)
    memfd = os.memfd_create("shmkit-private")
    os.ftruncate(memfd, 4096)
    mapper = subprocess.Popen([sys.executable, "-c", _MAPPER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    brief = subprocess.Popen(["sleep", "30"])
    held = HeldMaps()
    if not query:
        held.query = None

    def tell(line):
        mapper.stdin.write(line + "\n")
        mapper.stdin.flush()
        if line != "exec":
            assert mapper.stdout.readline().strip() == "ok"

    def attached(report):
        s = next(o for o in report.sysv if o.shmid == seg.shmid)
        p = next(o for o in report.posix if "/" + o.name == obj.name)
        m = [o for o in report.memfd if "shmkit-private" in o.name]
        return ({a.pid for a in s.attachers}, {a.pid for a in p.attachers},
                {a.pid for o in m for a in o.attachers})

    try:
        assert mapper.pid not in set().union(*attached(scan_segments(held=held)))
        assert mapper.pid in held.entries and brief.pid in held.entries
        kept = held.entries[brief.pid][:2]
        tell(f"sysv {seg.shmid}")
        tell(f"shared /dev/shm{obj.name}")
        now = attached(scan_segments(held=held))
        assert mapper.pid in now[0] and mapper.pid in now[1]  # the very next scan
        assert now[:2] == attached(scan_segments())[:2]
        tell(f"private /proc/{os.getpid()}/fd/{memfd}")
        seen_in = next((n for n in range(1, HeldMaps.FULL_EVERY + 1)
                        if mapper.pid in attached(scan_segments(held=held))[2]), None)
        assert seen_in is not None and mapper.pid in attached(scan_segments())[2]
        assert seen_in == 1 or query  # the maps text is read whole every scan
        brief.kill()
        brief.wait()
        tell("exec")
        time.sleep(0.3)  # it execs: a new address space under the same pid, with none of the mappings
        after = attached(scan_segments(held=held))
        assert mapper.pid not in set().union(*after), after
        assert brief.pid not in held.entries
        for fd in kept:  # closed with their process (a number may since be reused for another file)
            assert not os.path.exists(f"/proc/self/fd/{fd}") or not os.readlink(f"/proc/self/fd/{fd}").startswith(
                f"/proc/{brief.pid}/")
    finally:
        held.close()
        os.close(memfd)
        for p in (mapper, brief):
            p.kill()
            p.wait()
    assert held.entries == {}


def test_sort_orders_the_rows_of_every_view_that_takes_it_in_the_table_and_in_json():
    """--sort was once read by the process view only and silently ignored by the others."""
    from toolkit.report.system import footprint_to_json, footprint_view

    with PeerGroup(2) as peers:
        peers[0].call("attach", region="a", handle={"mechanism": "anon", "size": 8 << 20})
        peers[0].call("touch", region="a", write=True)  # 8 MiB more RSS than the other peer
        pids = [str(p.pid) for p in peers]
        for key, order in (("pid", sorted(p.pid for p in peers)), ("rss", [peers[0].pid, peers[1].pid])):
            doc = json.loads(run_shmkit("footprint", *reversed(pids), "--sort", key, "--json").stdout)
            assert [p["pid"] for p in doc["processes"]] == order, key
        r = scan_footprint(by="kind")
    for by, keys in (("user", ("pss", "rss", "uss", "swap")), ("kind", ("pss", "rss", "uss"))):
        for key in keys:
            rows = footprint_view(r, by, key).rows
            values = [v[f"{key}_bytes"] for _, v in rows]
            assert values == sorted(values, reverse=True) and len(rows) >= 1
            assert list(footprint_to_json(r, by, key)[f"by_{by}"]) == [name for name, _ in rows]  # as the table


def test_who_sees_a_dev_shm_is_processes_not_kernel_threads():
    """Kernel threads share init's mount namespace but map nothing: '/dev/shm seen by 2, 3, 4, 5, ...' named
    kthreadd and its workers, in live scans and in the watch's kept descriptors alike."""
    held = system.HeldMaps()
    try:
        for r in (scan_segments(), scan_segments(held=held)):
            listed = [p for d in r.dev_shm for p in d.processes]  # the first 8 pids of each: kernel threads led
            assert listed
            for pid in listed:
                try:
                    with open(f"/proc/{pid}/maps", "rb") as f:
                        assert f.read(1), f"pid {pid} has no address space"
                except (FileNotFoundError, ProcessLookupError):
                    pass  # exited since
    finally:
        held.close()


def test_a_named_semaphore_in_dev_shm_is_flagged_as_one():
    import secrets

    import posix_ipc

    name = "shmkit-test-sem-" + secrets.token_hex(4)
    sem = posix_ipc.Semaphore("/" + name, posix_ipc.O_CREX, 0o600)
    shm = posix_ipc.SharedMemory("/" + name + "-region", posix_ipc.O_CREX, 0o600, size=4096)
    try:
        d = json.loads(run_shmkit("segments", "--json").stdout)
        by_name = {o["name"]: o for o in d["posix"]}
        assert by_name["sem." + name]["semaphore"] is True  # glibc's sem_open file: sem.NAME
        assert by_name[name + "-region"]["semaphore"] is False
        table = run_shmkit("segments", env={**os.environ, "COLUMNS": "200"}).stdout
        row = next(line for line in table.splitlines() if "sem." + name in line)
        assert "semaphore" in row
        assert "semaphore" not in next(line for line in table.splitlines() if name + "-region" in line)
    finally:
        sem.unlink()
        sem.close()
        shm.unlink()
        shm.close_fd()


def test_snapshot_compression_follows_the_name_and_replays(tmp_path):
    import tarfile

    for name, magic in (("s.tar.bz2", b"BZh"), ("s.tar", None), ("s.tar.xz", b"\xfd7zXZ"), ("s", b"\x1f\x8b")):
        path = tmp_path / name
        r = run_shmkit("snapshot", str(path))
        assert r.returncode == 0, r.stderr
        head = path.read_bytes()[:6]
        if magic is None:
            assert tarfile.is_tarfile(path) and head[:3] not in (b"BZh", b"\x1f\x8b\x08")
        else:
            assert head.startswith(magic), (name, head)
        assert json.loads(run_shmkit("segments", "--json", "--from", str(path)).stdout)["processes"] > 0
    # '-' is standard output (gzip), as /dev/stdout is; the summary line goes to stderr
    with open(tmp_path / "piped", "wb") as out:
        r = subprocess.run([sys.executable, "-m", "toolkit", "snapshot", "-"], stdout=out, stderr=subprocess.PIPE,
                           cwd=REPO, timeout=120)
    assert r.returncode == 0 and b"processes" in r.stderr and not os.path.exists(os.path.join(REPO, "-"))
    assert (tmp_path / "piped").read_bytes()[:2] == b"\x1f\x8b"
    assert json.loads(run_shmkit("segments", "--json", "--from", str(tmp_path / "piped")).stdout)["processes"] > 0


def test_from_dash_reads_the_snapshot_that_snapshot_dash_writes(tmp_path):
    """`ssh host shmkit snapshot - | shmkit footprint --from -`: '-' is standard input on the reading side
    as it is standard output on the writing side."""
    writer = subprocess.Popen([sys.executable, "-m", "toolkit", "snapshot", "-"], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, cwd=REPO)
    reader = subprocess.run([sys.executable, "-m", "toolkit", "segments", "--json", "--from", "-"],
                            stdin=writer.stdout, capture_output=True, text=True, cwd=REPO, timeout=120)
    writer.stdout.close()
    assert writer.wait(timeout=60) == 0 and reader.returncode == 0, reader.stderr
    assert json.loads(reader.stdout)["processes"] > 0
    assert not os.path.exists(os.path.join(REPO, "-"))
    # not an archive, no standard input at all: one line each, naming '-'
    r = subprocess.run([sys.executable, "-m", "toolkit", "footprint", "--from", "-"], input=b"not a tar",
                       capture_output=True, cwd=REPO, timeout=60)
    assert r.returncode == 1 and r.stderr.decode().startswith("Error: -: not a readable shmkit snapshot"), r.stderr
    r = subprocess.run([sys.executable, "-m", "toolkit", "footprint", "--from", "-"], stdin=subprocess.DEVNULL,
                       capture_output=True, cwd=REPO, timeout=60)
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1 and b"Traceback" not in r.stderr


def test_from_dash_gives_up_on_a_writer_that_sends_nothing(monkeypatch, tmp_path):
    from toolkit.errors import BadInput
    from toolkit.measure import snapshot

    read_end, write_end = os.pipe()  # a writer that holds the pipe open and never writes
    try:
        with open(read_end, "rb", closefd=False) as fake:
            monkeypatch.setattr(sys, "stdin", fake)
            t0 = time.monotonic()
            with pytest.raises(BadInput, match="nothing came on standard input for 0.5 s"):
                snapshot._spool_stdin(str(tmp_path / "spool"), silence_s=0.5)
            assert time.monotonic() - t0 < 10
    finally:
        os.close(read_end)
        os.close(write_end)


def test_entries_of_dev_shm_that_are_not_objects_are_named_not_listed(tmp_path):
    """A symlink, a FIFO or a socket in /dev/shm is no shared memory (glibc's shm_open refuses a symlink;
    the others hold no pages of their own), but a user listing /dev/shm must hear of it: a symlink there
    is the classic hazard. Live and replayed alike."""
    import secrets
    import socket

    tag = "shmkit-test-" + secrets.token_hex(4)
    link, fifo, sock = (f"/dev/shm/{tag}-{k}" for k in ("link", "fifo", "sock"))
    s = socket.socket(socket.AF_UNIX)
    try:
        os.symlink("/etc/shadow", link)
        os.mkfifo(fifo, 0o600)
        s.bind(sock)
        r = run_shmkit("segments", "--json")
        assert r.returncode == 0, r.stderr
        d = json.loads(r.stdout)
        ours = next(m for m in d["dev_shm"] if m["where"] == "/dev/shm")
        got = {o["name"]: o["type"] for o in ours["others"] if o["name"].startswith(tag)}
        assert got == {f"{tag}-link": "symlink", f"{tag}-fifo": "FIFO", f"{tag}-sock": "socket"}, ours
        assert not [o for o in d["posix"] if o["name"].startswith(tag)]
        table = run_shmkit("segments", env={**os.environ, "COLUMNS": "200"}).stdout
        assert f"{tag}-fifo (FIFO)" in table and "not shared memory" in table, table
        snap = tmp_path / "s.tar.gz"
        assert run_shmkit("snapshot", str(snap)).returncode == 0
        replayed = json.loads(run_shmkit("segments", "--json", "--from", str(snap)).stdout)
        again = next(m for m in replayed["dev_shm"] if m["where"] == "/dev/shm")
        assert {o["name"]: o["type"] for o in again["others"] if o["name"].startswith(tag)} == got
    finally:
        s.close()
        for p in (link, fifo, sock):
            if os.path.lexists(p):
                os.unlink(p)


def test_a_replayed_snapshot_names_users_as_its_own_host_did(tmp_path):
    """Replayed on another machine, a snapshot named its uids with that machine's passwd: the recorded
    host's postgres (uid 65534 here) would read as whoever has that uid there. The snapshot keeps the
    names; replay shows them, and --user finds them."""
    import tarfile

    p = subprocess.Popen(["sleep", "60"], user=65534, group=65534, extra_groups=[])
    try:
        snap = tmp_path / "s.tar.gz"
        assert run_shmkit("snapshot", str(snap)).returncode == 0
    finally:
        p.kill()
        p.wait()
    # the same archive as another host would have written it: uid 65534 is "pg-on-a" there
    other = tmp_path / "other.tar"
    with tarfile.open(snap) as src, tarfile.open(other, "w") as dst:
        for m in src.getmembers():
            data = src.extractfile(m).read() if m.isfile() else None
            if m.name == "host/recorded-stat.json":
                meta = json.loads(data)
                assert meta["users"]["65534"] == "nobody" and meta["users"]["0"] == "root"
                meta["users"]["65534"] = "pg-on-a"
                data = json.dumps(meta).encode()
                m.size = len(data)
            dst.addfile(m, io.BytesIO(data) if data is not None else None)
    d = json.loads(run_shmkit("footprint", "--json", "--from", str(other)).stdout)
    row = next(r for r in d["processes"] if r["pid"] == p.pid)
    assert row["user"] == "pg-on-a", row
    d = json.loads(run_shmkit("footprint", "--json", "--user", "pg-on-a", "--from", str(other)).stdout)
    assert [r["pid"] for r in d["processes"]] == [p.pid]
    r = run_shmkit("footprint", "--user", "nobody", "--from", str(other))
    assert r.returncode == 1 and "no user named 'nobody' on the recorded host" in r.stderr, r.stderr


def test_a_posix_object_with_two_names_is_one_object(tmp_path):
    """A hard link in /dev/shm is a second name for the same pages: export counted them twice (2 objects,
    twice the bytes). Adding a name must change no count; each name says what else it is called."""
    import secrets

    def posix_samples():
        text = run_shmkit("export", "--prometheus").stdout
        return {line.rsplit(" ", 1)[0]: line.rsplit(" ", 1)[1] for line in text.splitlines()
                if 'kind="posix"' in line and not line.startswith("#") and "orphan" not in line}

    a = f"/dev/shm/shmkit-test-{secrets.token_hex(4)}"
    b = a + "-link"
    fd = os.open(a, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    try:
        os.ftruncate(fd, 1 << 20)
        os.write(fd, b"x" * 65536)
        one = posix_samples()
        os.link(a, b)
        assert posix_samples() == one
        d = json.loads(run_shmkit("segments", "--json").stdout)
        names = {o["name"]: o["also_named"] for o in d["posix"] if o["name"].startswith(os.path.basename(a))}
        assert names == {os.path.basename(a): [os.path.basename(b)], os.path.basename(b): [os.path.basename(a)]}
        table = run_shmkit("segments", env={**os.environ, "COLUMNS": "200"}).stdout
        assert f"same object as {os.path.basename(b)}" in table, table
    finally:
        os.close(fd)
        for p in (a, b):
            if os.path.exists(p):
                os.unlink(p)


def test_folders_in_dev_shm_are_counted_and_named_but_not_listed_as_objects(tmp_path):
    """Files in a folder of /dev/shm fill it as objects do, but no shm_open name reaches them: the fill
    must not be a mystery, nor the folder an 'object'."""
    import secrets

    top = "/dev/shm/shmkit-test-folder-" + secrets.token_hex(4)
    os.makedirs(top + "/deeper")
    try:
        with open(top + "/deeper/a", "wb") as f:
            f.write(b"\1" * 100000)
        with open(top + "/b", "wb") as f:
            f.write(b"\1" * 5000)
        name = os.path.basename(top)
        snap = tmp_path / "s.tar.gz"
        assert run_shmkit("snapshot", str(snap)).returncode == 0
        for source in ([], ["--from", str(snap)]):
            d = json.loads(run_shmkit("segments", "--json", *source).stdout)
            ours = next(m for m in d["dev_shm"] if m["where"] == "/dev/shm")
            assert name in ours["folders"] and name not in {o["name"] for o in d["posix"]}, source
            assert ours["folder_files"] >= 2 and ours["folder_bytes"] >= 100000 + 4096, ours
            text = run_shmkit("segments", *source, env={**os.environ, "COLUMNS": "80"}).stdout
            assert f"{name}/" in " ".join(text.split()) and "not POSIX objects" in " ".join(text.split())
            prom = run_shmkit("export", "--prometheus", *source).stdout
            line = next(ln for ln in prom.splitlines()
                        if ln.startswith('shmkit_dev_shm_folder_bytes{where="/dev/shm"'))
            assert int(line.rsplit(" ", 1)[1]) == ours["folder_bytes"]
    finally:
        shutil.rmtree(top)


def test_as_nobody_its_own_undumpable_process_is_not_called_another_users(nobody_env):
    """A process of our own user that may not be dumped (ssh-agent, gpg-agent: PR_SET_DUMPABLE 0) is
    refused as other users' are, for another reason: the message must not send the user after an owner."""
    code = ("import ctypes, sys, time; ctypes.CDLL(None).prctl(4, 0, 0, 0, 0); "  # PR_SET_DUMPABLE, 0
            "print('ready', flush=True); time.sleep(60)")
    python = nobody_env["python"]
    p = subprocess.Popen([python, "-c", code], user=65534, group=65534, extra_groups=[], stdout=subprocess.PIPE,
                         text=True, cwd="/")
    try:
        assert p.stdout.readline().strip() == "ready"
        r = run_as_nobody(nobody_env, "elf", "--pid", str(p.pid))
        assert r.returncode == 1 and "this user's own" in r.stderr and "not dumpable" in r.stderr, r.stderr
        assert "other users" not in r.stderr
        d = json.loads(run_as_nobody(nobody_env, "footprint", "--json").stdout)
        note = next(n for n in d["notes"] if "not readable" in n)
        assert "not dumpable" in note and str(p.pid) in note and "belong to other users" in note  # root's too
    finally:
        p.kill()
        p.wait()


def test_as_nobody_a_folder_in_dev_shm_it_may_not_read_is_unknown_not_an_error(nobody_env, tmp_path):
    """Another user's folder in /dev/shm, seen unprivileged: its bytes are unknown (null, said, left out of
    export), and segments still runs; a snapshot taken so replays the same."""
    import secrets

    top = "/dev/shm/shmkit-test-private-" + secrets.token_hex(4)
    os.mkdir(top, 0o700)
    try:
        with open(top + "/f", "wb") as f:
            f.write(b"\1" * 50000)
        r = run_as_nobody(nobody_env, "segments", "--json")
        assert r.returncode == 0, r.stderr
        ours = next(m for m in json.loads(r.stdout)["dev_shm"] if m["where"] == "/dev/shm")
        assert ours["folder_bytes"] is None and ours["folder_files"] is None and top in ours["unreadable_folders"]
        text = run_as_nobody(nobody_env, "segments").stdout
        assert "files unknown" in " ".join(text.split())
        prom = run_as_nobody(nobody_env, "export", "--prometheus")
        assert prom.returncode == 0 and 'shmkit_dev_shm_folder_bytes{where="/dev/shm"' not in prom.stdout
        import tempfile

        folder = tempfile.mkdtemp(prefix="shmkit-test-")  # in /tmp: nobody cannot reach pytest's own folders
        os.chmod(folder, 0o777)
        snap = os.path.join(folder, "s.tar.gz")
        r = run_as_nobody(nobody_env, "snapshot", os.path.join(str(tmp_path), "s.tar.gz"))
        assert r.returncode == 2 and "cannot be reached" in r.stderr, r.stderr  # not 'does not exist'
        assert run_as_nobody(nobody_env, "snapshot", snap).returncode == 0
        replay = next(m for m in json.loads(run_shmkit("segments", "--json", "--from", str(snap)).stdout)["dev_shm"]
                      if m["where"] == "/dev/shm")
        assert replay["folder_bytes"] is None and top in replay["unreadable_folders"]
    finally:
        shutil.rmtree(top)
        if "folder" in locals():
            shutil.rmtree(folder)

def test_a_process_the_recorder_could_not_read_replays_as_not_readable_not_as_gone(nobody_env):
    """A snapshot taken by uid 65534 holds no smaps of root's processes. Replay took each for a process that
    had exited ("1 exited during the scan", pss complete): it must say, as live did, that it was not
    readable, and why."""
    import tempfile

    root_proc = subprocess.Popen(["sleep", "60"])
    folder = tempfile.mkdtemp(prefix="shmkit-test-")  # in /tmp: nobody cannot reach pytest's own folders
    os.chmod(folder, 0o777)
    snap = os.path.join(folder, "s.tar.gz")
    try:
        live = json.loads(run_as_nobody(nobody_env, "footprint", "--json").stdout)
        assert live["denied"] >= 1 and not live["complete"]
        assert run_as_nobody(nobody_env, "snapshot", snap).returncode == 0
        d = json.loads(run_shmkit("footprint", "--json", "--from", snap).stdout)
        assert d["denied"] >= 1 and d["vanished"] == 0 and not d["complete"], d
        assert any("not readable" in n for n in d["notes"]), d["notes"]
        r = run_shmkit("footprint", str(root_proc.pid), "--from", snap)
        assert r.returncode == 1 and f"process {root_proc.pid}:" in r.stderr and "exist" not in r.stderr, r.stderr
        for by in ("cgroup", "object"):
            led = json.loads(run_shmkit("footprint", "--by", by, "--json", "--from", snap).stdout)
            assert not led["complete"] and any("not readable" in n for n in led["notes"]), led["notes"]
            assert not any("exited during the scan" in n for n in led["notes"]), led["notes"]
        prom = run_shmkit("export", "--prometheus", "--from", snap).stdout
        assert "shmkit_pss_complete 0" in prom
    finally:
        root_proc.kill()
        root_proc.wait()
        shutil.rmtree(folder)



def test_a_snapshot_replays_under_a_python_whose_tarfile_has_no_filter(nobody_env, tmp_path):
    """Debian 12's Python 3.11.2 has no extraction filter (it came in 3.11.4): replay must still work there,
    with shmkit's own check of the members."""
    snap = tmp_path / "s.tar.gz"
    assert run_shmkit("snapshot", str(snap)).returncode == 0
    python, env = nobody_env["python"], nobody_env["env"]
    has_filter = subprocess.run([python, "-c", "import tarfile; print(hasattr(tarfile, 'data_filter'))"],
                                capture_output=True, text=True, env=env).stdout.strip()
    for args in (["segments", "--json"], ["footprint", "--by", "object", "--json"], ["export", "--prometheus"]):
        r = subprocess.run([python, "-m", "toolkit", *args, "--from", str(snap)], capture_output=True, text=True,
                           env=env, cwd=nobody_env["cwd"], timeout=120)
        assert r.returncode == 0 and "Traceback" not in r.stderr, (args, has_filter, r.stderr[-300:])


def test_a_file_system_mounted_inside_dev_shm_is_not_counted_as_its_folders():
    """Only this tmpfs's files fill it: a mount inside /dev/shm (made here in a mount namespace of our
    own, so the host's mounts are untouched) is not one of its folders."""
    import secrets

    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare(1) for a private mount namespace")
    name = "shmkit-test-mnt-" + secrets.token_hex(4)
    script = (f"mkdir /dev/shm/{name} && mount -t tmpfs -o size=1m tmpfs /dev/shm/{name} && "
              f"head -c 30000 /dev/zero > /dev/shm/{name}/x && "
              f"{sys.executable} -m toolkit segments --json; rc=$?; umount /dev/shm/{name}; rmdir /dev/shm/{name}; exit $rc")
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
    if r.returncode != 0 and "mount" in r.stderr and "toolkit" not in r.stderr:
        pytest.skip(f"a mount namespace with a tmpfs could not be made here: {r.stderr.strip()[-200:]}")
    assert r.returncode == 0, r.stderr
    ours = next(m for m in json.loads(r.stdout)["dev_shm"] if m["where"] == "/dev/shm")
    assert name not in ours["folders"]


@pytest.mark.slow
def test_a_reader_of_another_ipc_namespace_that_never_answers_is_given_up_on_and_named(tmp_path):
    """segments reads another IPC namespace's segments through a short-lived helper; one that hangs is
    given up on after 10 s and said, and the rest of the listing is still made."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare(1) for a process in another IPC namespace")
    fake = tmp_path / "cat"
    fake.write_text("#!/bin/sh\nexec sleep 600\n")
    fake.chmod(0o755)
    other = subprocess.Popen(["unshare", "--ipc", "sleep", "60"])
    try:
        deadline = time.monotonic() + 10
        while os.readlink(f"/proc/{other.pid}/ns/ipc") == os.readlink("/proc/self/ns/ipc"):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        t0 = time.monotonic()
        r = run_shmkit("segments", "--json", timeout=120,
                       env={**os.environ, "PATH": f"{tmp_path}:{os.environ.get('PATH', '/usr/bin:/bin')}"})
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-400:]
        assert time.monotonic() - t0 < 60
        notes = json.loads(r.stdout)["notes"]
        assert any("did not answer in 10 s" in n for n in notes), notes
        r = run_shmkit("snapshot", str(tmp_path / "s.tar.gz"), timeout=120,
                       env={**os.environ, "PATH": f"{tmp_path}:{os.environ.get('PATH', '/usr/bin:/bin')}"})
        assert r.returncode == 0, r.stderr[-400:]  # the namespace unread, the snapshot made
    finally:
        other.kill()
        other.wait()


def test_mapped_memfds_deleted_files_and_shared_anonymous_memory_have_their_real_size(tmp_path):
    """segments gave every mapped memfd, deleted file and shared anonymous region "size_bytes": 0 and owner
    '?': a 3 MiB region read as nothing. The size now comes from a descriptor a process holds, else the
    file behind the mapping (map_files, root); unknown is null, never 0."""
    import mmap

    anon = mmap.mmap(-1, 3 * 4096 + 1)  # MAP_SHARED | MAP_ANONYMOUS: the region rounds up to whole pages
    held = os.memfd_create("shmkit-test-held")
    os.ftruncate(held, 12345)
    held_map = mmap.mmap(held, 12345)
    gone = os.memfd_create("shmkit-test-nofd")
    os.ftruncate(gone, 20000)
    gone_map = mmap.mmap(gone, 20000)
    os.close(gone)  # mapped, no descriptor left: only map_files reaches its file
    path = tmp_path / "deleted-after-mapping"
    path.write_bytes(b"\1" * 7000)
    with open(path, "r+b") as f:
        deleted_map = mmap.mmap(f.fileno(), 7000)
    path.unlink()
    try:
        seg = json.loads(run_shmkit("segments", "--json").stdout)
        ours = {o["name"]: o for kind in ("memfd", "deleted", "anonymous") for o in seg[kind]
                if any(a["pid"] == os.getpid() for a in o["attachers"])}
        assert ours["/memfd:shmkit-test-held"]["size_bytes"] == 12345
        assert ours["/memfd:shmkit-test-nofd"]["size_bytes"] == 20000
        assert ours[str(path)]["size_bytes"] == 7000  # named as the file was; its list says deleted
        anon_obj = next(o for n, o in ours.items() if n.startswith("shared anonymous"))
        page = os.sysconf("SC_PAGE_SIZE")  # 4 or 64 KiB: the region is whole pages
        assert anon_obj["size_bytes"] == -(-(3 * 4096 + 1) // page) * page and anon_obj["owner"] == "root", anon_obj
        table = run_shmkit("segments", env={**os.environ, "COLUMNS": "120"}).stdout
        assert re.search(r"/memfd:shmkit-test-held\s+12345 B\b", table), table
        snap = tmp_path / "s.tar.gz"  # a replay gives the sizes live gave: the snapshot keeps them
        assert run_shmkit("snapshot", str(snap)).returncode == 0
        replay = json.loads(run_shmkit("segments", "--json", "--from", str(snap)).stdout)
        again = {o["name"]: o["size_bytes"] for kind in ("memfd", "deleted", "anonymous") for o in replay[kind]
                 if any(a["pid"] == os.getpid() for a in o["attachers"])}
        assert again == {n: o["size_bytes"] for n, o in ours.items()}, (again, ours)
        # the ledger gives a file's own size too (a memfd of 1 MiB of which one page is mapped)
        part = os.memfd_create("shmkit-test-part")
        os.ftruncate(part, 1 << 20)
        part_map = mmap.mmap(part, 4096)
        try:
            objs = json.loads(run_shmkit("footprint", "--by", "object", "--json", str(os.getpid())).stdout)["objects"]
            assert next(o for o in objs if o["name"] == "/memfd:shmkit-test-part")["size_bytes"] == 1 << 20
        finally:
            part_map.close()
            os.close(part)
        # a POSIX object removed from /dev/shm while its first page is mapped: pinned, at its whole size
        import posix_ipc

        obj = posix_ipc.SharedMemory(f"/shmkit-test-pin-{os.getpid()}", posix_ipc.O_CREX, size=1 << 20)
        first_page = mmap.mmap(obj.fd, 4096)
        obj.close_fd()
        obj.unlink()
        try:
            seg = json.loads(run_shmkit("segments", "--json").stdout)
            pin = next(o for o in seg["pinned"] if o["name"] == f"shmkit-test-pin-{os.getpid()}")
            assert pin["size_bytes"] == 1 << 20, pin  # not the 4096 bytes its one mapping covers
        finally:
            first_page.close()
    finally:
        for m in (anon, held_map, gone_map, deleted_map):
            m.close()
        os.close(held)


def test_shared_anonymous_memory_is_named_so_not_a_deleted_dev_zero():
    """mmap(MAP_SHARED|MAP_ANONYMOUS), as PostgreSQL's shared buffers are made, shows in maps as
    '/dev/zero (deleted)': it is shared anonymous memory (shmem), not a deleted file nor 'other file'."""
    import mmap

    region = mmap.mmap(-1, 8 * 4096)  # MAP_SHARED | MAP_ANONYMOUS
    region[:] = b"\1" * len(region)
    try:
        pid = str(os.getpid())
        seg = json.loads(run_shmkit("segments", "--json").stdout)
        mine = [o for o in seg["anonymous"] if any(a["pid"] == os.getpid() for a in o["attachers"])]
        assert mine and all(o["kind"] == "anonymous" for o in mine)
        assert not any(o["name"] == "/dev/zero" for o in seg["deleted"])
        kinds = json.loads(run_shmkit("footprint", "--by", "kind", "--json", pid).stdout)["by_kind"]
        assert kinds["shared anonymous"]["rss_bytes"] >= len(region), kinds
        led = json.loads(run_shmkit("footprint", "--by", "cgroup", "--json", pid).stdout)
        assert led["groups"][0]["pss_bytes"]["tmpfs"] >= len(region)  # shmem, billed as shmem
        objs = json.loads(run_shmkit("footprint", "--by", "object", "--json", pid).stdout)["objects"]
        assert any(o["kind"] == "tmpfs" and o["name"].startswith("shared anonymous") for o in objs)
    finally:
        region.close()


def test_shared_anonymous_huge_pages_are_named_so_too(reserved_hugepages):
    """In huge pages the same region shows in maps as '/anon_hugepage (deleted)'."""
    import mmap

    from toolkit.proc.system import read_meminfo

    huge = read_meminfo()["Hugepagesize"]
    map_hugetlb = getattr(mmap, "MAP_HUGETLB", 0x40000)  # the same value on x86_64 and aarch64
    region = mmap.mmap(-1, huge, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS | map_hugetlb)
    region[0:1] = b"\1"
    try:
        with open("/proc/self/maps") as f:
            assert any("/anon_hugepage (deleted)" in line for line in f)
        seg = json.loads(run_shmkit("segments", "--json").stdout)
        mine = [o for o in seg["anonymous"] if any(a["pid"] == os.getpid() for a in o["attachers"])]
        assert any(o["name"].startswith("shared anonymous huge pages") for o in mine), mine
        assert not any(o["name"] == "/anon_hugepage" for o in seg["deleted"])
    finally:
        region.close()


def test_a_long_scan_tells_its_progress_and_a_short_one_pays_nothing_for_it():
    """footprint --by library took 3.5 s on 3000 processes (more on bigger hosts) with nothing on stderr.
    The scans now tell a progress reporter how the reads go; the CLI's shows it only once 2 s have passed,
    and on a terminal imports rich for its bar only then."""
    calls = []
    r = scan_footprint(by="kind", progress=lambda *a: calls.append(a))
    assert calls and all(what == "reading processes" and 0 <= done < total for what, done, total in calls), calls
    assert calls[0][1] == 0 and len(r.processes) > 0
    from toolkit.measure.ledger import scan_ledger

    ledger_calls = []
    scan_ledger(progress=lambda *a: ledger_calls.append(a))
    assert ledger_calls and ledger_calls[0][:2] == ("reading processes", 0)
    probe = ("import sys; from toolkit.cli.common import ProgressReporter; p = ProgressReporter(bar_after_s=2); "
             "p.tty = True; p('reading processes', 1, 10); print('rich' in sys.modules, p.bar is None); "
             "p.started -= 3; p('reading processes', 2, 10); print('rich' in sys.modules, p.bar is None)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO).stdout.split()
    assert out == ["False", "True", "True", "False"], out
