"""Recorded hosts replayed through the gateway: hosts we do not have (systemd with and without drop-ins,
/proc with hidepid=2, a kernel without smaps_rollup), for segments, footprint and export.

tests/data/hosts/base was recorded from this kind of machine by tests/record_host.py: a peer mapping
a System V segment and a POSIX object, a sleeping process, an orphan segment and an orphan object.
Each variant below changes only what differs on that kind of host.
"""
import json
import os
import shutil

import pytest
from conftest import REPO, run_shmkit

from toolkit.measure.system import remove_ipc_policy, scan_footprint, scan_segments
from toolkit.proc.fs import ProcFS
from toolkit.proc.maps import has_smaps_rollup

BASE = os.path.join(REPO, "tests", "data", "hosts", "base")
PEER, SLEEPER = 17909, 17908  # the recorded processes

# Debian's logind.conf ships every setting commented out, and no logind.conf.d
STOCK_LOGIND = "[Login]\n#NAutoVTs=6\n#KillUserProcesses=no\n#RemoveIPC=yes\n#InhibitorsMax=8192\n"


def _write(root, rel, text):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def _systemd(root, logind=STOCK_LOGIND):
    os.makedirs(os.path.join(root, "run", "systemd", "system"))
    if logind is not None:
        _write(root, "etc/systemd/logind.conf", logind)


def _hidepid(root, option="hidepid=2", in_group=None):
    """/proc mounted with `option` (hidepid=2 by default), seen by uid 1000 without capabilities: only its own
    process is listed. With `in_group`, uid 1000 is in the group the mount's gid= exempts: it sees every
    process, as without hidepid, but root's memory maps are still refused it (the ptrace check)."""
    mi = os.path.join(root, "proc", "self", "mountinfo")
    lines = open(mi).read().splitlines()
    proc = [i for i, ln in enumerate(lines) if " /proc " in ln and " - proc " in ln]
    assert proc, "the recorded mountinfo has a proc mount"
    for i in proc:
        pre, _, post = lines[i].partition(" - ")
        fields = post.split()
        fields[2] = fields[2] + "," + option
        lines[i] = pre + " - " + " ".join(fields)
    open(mi, "w").write("\n".join(lines) + "\n")
    for pid in (SLEEPER, "self"):
        st = os.path.join(root, "proc", str(pid), "status")
        text = open(st).read()
        text = "\n".join("Uid:\t1000\t1000\t1000\t1000" if ln.startswith("Uid:") else
                         "Gid:\t1000\t1000\t1000\t1000" if ln.startswith("Gid:") else
                         f"Groups:\t1000 {in_group or ''}" if ln.startswith("Groups:") else
                         "CapEff:\t0000000000000000" if ln.startswith("CapEff:") else ln for ln in text.splitlines())
        open(st, "w").write(text + "\n")
    if in_group is None:
        shutil.rmtree(os.path.join(root, "proc", str(PEER)))  # root's: invisible to uid 1000
        return
    meta_path = os.path.join(root, "recorded-stat.json")
    meta = json.load(open(meta_path))
    meta["denied"] = [f"/proc/{PEER}/{name}" for name in ("smaps", "smaps_rollup", "maps", "fd", "map_files")]
    json.dump(meta, open(meta_path, "w"))
    for name in ("smaps", "smaps_rollup", "maps"):  # what a recorder is refused, it has not got
        os.unlink(os.path.join(root, "proc", str(PEER), name))


def _old_kernel(root):
    for pid in (PEER, SLEEPER):
        os.unlink(os.path.join(root, "proc", str(pid), "smaps_rollup"))


VARIANTS = {
    "no-systemd": lambda root: None,
    "systemd-stock": _systemd,
    "systemd-dropin-no": lambda root: (_systemd(root), _write(root, "etc/systemd/logind.conf.d/50-ipc.conf",
                                                              "[Login]\nRemoveIPC=no\n")),
    "systemd-conf-no": lambda root: _systemd(root, "[Login]\nRemoveIPC=no\n"),
    "systemd-no-etc-file": lambda root: _systemd(root, None),
    "hidepid": _hidepid,
    "hidepid-ptraceable": lambda root: _hidepid(root, "hidepid=ptraceable"),
    "hidepid-gid": lambda root: _hidepid(root, "hidepid=invisible,gid=1001", in_group=1001),
    "old-kernel": _old_kernel,
}


@pytest.fixture
def host(tmp_path):
    def make(variant):
        root = str(tmp_path / variant)
        shutil.copytree(BASE, root)
        VARIANTS[variant](root)
        return root

    return make


@pytest.mark.parametrize("variant, expected", [
    ("no-systemd", None), ("systemd-stock", True), ("systemd-dropin-no", False), ("systemd-conf-no", False),
    ("systemd-no-etc-file", True)])
def test_remove_ipc_policy_on_systemd_hosts(host, variant, expected):
    root = host(variant)
    assert remove_ipc_policy(ProcFS.at_host(root)) is expected
    for cmd in (["segments", "--json"], ["export", "--prometheus"]):
        r = run_shmkit(*cmd, "--root", root)
        assert r.returncode == 0, r.stderr
    d = json.loads(run_shmkit("segments", "--json", "--root", root).stdout)
    assert d["remove_ipc"] == {None: None, True: "yes", False: "no"}[expected]
    # root-owned objects are never logind's to remove; the flag is null only without systemd
    assert all(o["remove_ipc"] is (None if expected is None else False) for o in d["sysv"] + d["posix"])


def test_remove_ipc_flags_regular_users_objects_not_nobodys(host):
    """logind removes a regular user's IPC when the last session ends; nobody (65534) is above SYS_UID_MAX
    too but never has a session: flagging its objects was a false alarm."""
    root = host("systemd-stock")
    meta_path = os.path.join(root, "recorded-stat.json")
    meta = json.load(open(meta_path))
    names = sorted(k for k in meta if k.startswith("/dev/shm/"))
    meta[names[0]]["st_uid"], meta[names[1]]["st_uid"] = 1000, 65534
    json.dump(meta, open(meta_path, "w"))
    d = json.loads(run_shmkit("segments", "--json", "--root", root).stdout)
    flags = {"/dev/shm/" + o["name"]: o["remove_ipc"] for o in d["posix"]}
    assert flags == {names[0]: True, names[1]: False}, flags


def test_recorded_segments_and_attachers(host):
    r = scan_segments(ProcFS.at_host(host("no-systemd")))
    assert r.complete and r.processes == 2
    shared = next(o for o in r.sysv if o.nattch == 1)
    lonely = next(o for o in r.sysv if o.nattch == 0)
    assert [a.pid for a in shared.attachers] == [PEER] and not shared.orphan and lonely.orphan
    mapped = next(o for o in r.posix if o.attachers)
    orphan = next(o for o in r.posix if not o.attachers)
    assert [a.pid for a in mapped.attachers] == [PEER] and mapped.allocated_bytes == 1 << 20
    assert orphan.orphan is True and mapped.orphan is False


def test_hidepid_host_says_what_it_cannot_see(host):
    root = host("hidepid")
    fs = ProcFS.at_host(root)
    seg = scan_segments(fs)
    assert not seg.complete and seg.processes == 1
    assert any("hidepid=2" in n and "so only 1 process was seen" in n for n in seg.notes), seg.notes
    # nobody visible maps either POSIX object: unknown, never a false ORPHAN
    assert all(o.orphan is None for o in seg.posix)
    # System V orphans come from the kernel's nattch: still known
    assert [o.orphan for o in sorted(seg.sysv, key=lambda o: o.nattch)] == [True, False]
    foot = scan_footprint(fs=fs)
    assert [p.pid for p in foot.processes] == [SLEEPER] and not foot.complete and not foot.privileged
    text = run_shmkit("export", "--prometheus", "--root", root).stdout
    assert "shmkit_pss_complete 0" in text and "shmkit_pss_bytes{" not in text  # no partial sum passed off as total
    assert 'shmkit_orphan_unknown_objects{kind="posix"} 2' in text and 'shmkit_orphan_objects{kind="posix"} 0' in text
    out = run_shmkit("footprint", "--root", root).stdout
    assert "hidepid=2" in out


def test_hidepid_ptraceable_hides_as_invisible_does(host):
    seg = scan_segments(ProcFS.at_host(host("hidepid-ptraceable")))
    assert not seg.complete and seg.processes == 1
    assert any("hidepid=ptraceable" in n and "invisible" in n for n in seg.notes), seg.notes


def test_hidepid_does_not_hide_from_the_group_its_gid_option_names(host):
    """hidepid=invisible,gid=1001 and we are in group 1001: every process is listed (proc(5)); what is
    refused is reading root's maps, and the note says that, not that processes are hidden."""
    fs = ProcFS.at_host(host("hidepid-gid"))
    seg = scan_segments(fs)
    assert seg.processes > 1 and not any("hidepid" in n for n in seg.notes), seg.notes
    assert any("not readable (they belong to other users" in n for n in seg.notes), seg.notes
    foot = scan_footprint(fs=fs)
    assert not any("hidepid" in n for n in foot.notes), foot.notes


def test_old_kernel_without_smaps_rollup(host):
    old, new = ProcFS.at_host(host("old-kernel")), ProcFS.at_host(host("no-systemd"))
    assert not has_smaps_rollup(PEER, old) and has_smaps_rollup(PEER, new)
    a = {p.pid: p for p in scan_footprint(fs=old).processes}
    b = {p.pid: p for p in scan_footprint(fs=new).processes}
    assert set(a) == set(b) == {PEER, SLEEPER}
    for pid in a:
        assert a[pid].rss == b[pid].rss and a[pid].uss == b[pid].uss
        # summed smaps round each mapping's Pss down to a kB; the rollup sums before rounding
        assert 0 <= b[pid].pss - a[pid].pss <= 1024 * len(open(os.path.join(BASE, "proc", str(pid), "maps")).readlines())
    r = run_shmkit("footprint", "--json", "--root", old.host_root)
    assert r.returncode == 0 and json.loads(r.stdout)["complete"] is True


# ------------------------------------------------------------------ recorded cgroup v1 and v2 hosts

V1_MOUNTS = ("35 25 0:30 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup "
             "rw,memory\n36 25 0:31 / /sys/fs/cgroup/cpu rw,relatime shared:15 - cgroup cgroup rw,cpu\n")
V2_MOUNTS = "35 25 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate\n"
V1_STAT = ("cache 1000\nrss 2000\nshmem 300\nmapped_file 400\ntotal_cache 11000\ntotal_rss 12000\n"
           "total_shmem 10300\ntotal_mapped_file 10400\n")
V2_STAT = "anon 5000\nfile 6000\nkernel 7\nshmem 800\nfile_mapped 900\n"


def _cgroup_host(host, version):
    root = host("no-systemd")
    mi = os.path.join(root, "proc", "self", "mountinfo")
    kept = [ln for ln in open(mi).read().splitlines(True) if " - cgroup" not in ln]  # this machine's own
    with open(mi, "w") as f:
        f.write("".join(kept) + (V1_MOUNTS if version == 1 else V2_MOUNTS))
    for pid, cg in ((PEER, "/shop/web"), (SLEEPER, "/shop/db")):
        line = (f"5:memory:{cg}\n4:cpu:/\n0::/init.scope\n" if version == 1 else f"0::{cg}\n")
        _write(root, f"proc/{pid}/cgroup", line)
        base = "sys/fs/cgroup/memory" if version == 1 else "sys/fs/cgroup"
        _write(root, f"{base}{cg}/memory.stat", V1_STAT if version == 1 else V2_STAT)
    return root


@pytest.mark.parametrize("version", [1, 2])
def test_recorded_cgroup_hosts_v1_and_v2(host, version):
    from toolkit.measure.ledger import scan_ledger
    from toolkit.proc.cgroup import memory_hierarchy, memory_stat, process_cgroup

    fs = ProcFS.at_host(_cgroup_host(host, version))
    h = memory_hierarchy(fs)
    assert h.version == version and h.mount == ("/sys/fs/cgroup/memory" if version == 1 else "/sys/fs/cgroup")
    assert process_cgroup(PEER, h, fs) == "/shop/web" and process_cgroup(SLEEPER, h, fs) == "/shop/db"
    stat = memory_stat("/shop/web", h, fs)
    if version == 1:  # the hierarchical totals, under v1's names
        assert stat == {"rss": 12000, "cache": 11000, "shmem": 10300, "mapped_file": 10400}
    else:
        assert stat == {"anon": 5000, "file": 6000, "shmem": 800, "file_mapped": 900}
    led = scan_ledger(fs)
    assert led.cgroup_version == version
    groups = {g.cgroup: g for g in led.cgroups}
    assert set(groups) == {"/shop/web", "/shop/db"} and groups["/shop/web"].memory_stat == stat
    # the peer maps the recorded 1 MiB System V segment and POSIX object alone: all of their Pss is its
    assert groups["/shop/web"].pss_bytes["sysv"] == 1 << 20 and groups["/shop/web"].pss_bytes["posix"] == 1 << 20
    assert groups["/shop/db"].pss_bytes["sysv"] == 0
    r = run_shmkit("footprint", "--by", "cgroup", "--json", "--root", fs.host_root)
    d = json.loads(r.stdout)
    assert d["cgroup_version"] == version and {g["cgroup"] for g in d["groups"]} == {"/shop/web", "/shop/db"}


def test_a_recording_without_cgroup_files_or_pagemaps_counts_every_process_and_knows_no_false_zero(host):
    """The base recording has neither /proc/PID/cgroup nor pagemap: the ledger once dropped both processes
    as 'exited' (an empty table, complete: true) and, as root, put 0 B where physical pages were unknown."""
    root = host("no-systemd")
    d = json.loads(run_shmkit("footprint", "--by", "cgroup", "--json", "--root", root).stdout)
    assert [(g["cgroup"], g["processes"]) for g in d["groups"]] == [(None, 2)]
    assert d["groups"][0]["pss_bytes"]["sysv"] == d["groups"][0]["pss_bytes"]["posix"] == 1 << 20
    assert d["groups"][0]["charged_bytes"] is None
    assert any("cgroup of 2 processes is unknown" in n for n in d["notes"]), d["notes"]
    objs = json.loads(run_shmkit("footprint", "--by", "object", "--json", "--root", root).stdout)["objects"]
    shm = [o for o in objs if o["kind"] in ("sysv", "posix")]
    assert len(shm) == 2 and all(o["physical_bytes"] is None and o["charged_to"] is None for o in shm), shm
    assert all(o["rss_sum_bytes"] == 1 << 20 for o in shm)
    table = run_shmkit("footprint", "--by", "cgroup", "--root", root, env={**os.environ, "COLUMNS": "200"}).stdout
    assert "touched them first" not in table.split("Pss by kind")[0]  # no claim about charges nobody read
    libs = json.loads(run_shmkit("footprint", "--by", "library", "--json", "--root", root).stdout)["libraries"]
    assert libs and all(u["physical_bytes"] is None for u in libs)


def test_a_kernel_without_system_v_ipc_is_unknown_not_zero(host):
    """No /proc/sysvipc/shm (CONFIG_SYSVIPC off, or not recorded): the listing is unknown. It once read as
    '1 other IPC namespace not read: entering one needs root' and export said 0 segments."""
    root = host("no-systemd")
    os.remove(os.path.join(root, "proc", "sysvipc", "shm"))
    d = json.loads(run_shmkit("segments", "--json", "--root", root).stdout)
    assert d["unlisted"] == ["sysv"] and d["sysv"] == [] and len(d["posix"]) == 2
    assert any("System V segments could not be listed" in n for n in d["notes"])
    assert not any("other IPC namespace" in n for n in d["notes"]), d["notes"]
    text = run_shmkit("export", "--prometheus", "--root", root).stdout
    assert 'shmkit_listing_complete{kind="sysv"} 0' in text and 'shmkit_listing_complete{kind="posix"} 1' in text
    listed = [ln for ln in text.splitlines() if 'kind="sysv"' in ln and not ln.startswith("shmkit_pss_bytes")]
    assert listed == ['shmkit_listing_complete{kind="sysv"} 0'], listed  # no count of 0 (Pss from maps is known)
    assert 'shmkit_shared_objects{kind="posix"} 2' in text
    table = run_shmkit("segments", "--root", root, env={**os.environ, "COLUMNS": "100"}).stdout
    assert table.startswith("System V segments (could not be listed)")


def test_a_recording_without_dev_shm_lists_posix_as_unknown(host):
    root = host("no-systemd")
    shutil.rmtree(os.path.join(root, "dev", "shm"))
    d = json.loads(run_shmkit("segments", "--json", "--root", root).stdout)
    assert d["unlisted"] == ["posix"] and d["posix"] == [] and len(d["sysv"]) >= 1
    text = run_shmkit("export", "--prometheus", "--root", root).stdout
    assert 'shmkit_listing_complete{kind="posix"} 0' in text and 'shmkit_shared_objects{kind="posix"}' not in text


def test_a_recording_with_stat_fields_we_do_not_read_is_still_read():
    """Another recorder may keep st_nlink or a float st_mtime beside the fields shmkit reads: those are
    left alone, not called malformed; a field we read that is not a whole number still is."""
    from toolkit.errors import BadInput
    from toolkit.proc.fs import _checked_stat

    meta = {"/dev/shm/x": {"st_mode": 0o100600, "st_size": 4096, "st_nlink": 1, "st_mtime": 1.5},
            "statvfs": {"/dev/shm": {"f_blocks": 10, "f_bfree": 5, "f_bavail": 5, "f_frsize": 4096, "f_files": 7}}}
    assert _checked_stat(meta) is meta
    with pytest.raises(BadInput, match="not a record of whole numbers"):
        _checked_stat({"/dev/shm/x": {"st_size": "4096"}})
    with pytest.raises(BadInput, match="lacks a field"):
        _checked_stat({"statvfs": {"/dev/shm": {"f_blocks": 10}}})


# what no kernel writes, in each kind of file a replay parses: a recording is anyone's file
DAMAGE = [
    (f"proc/{SLEEPER}/stat", b"17908 (sleep) S 1 2 3 4 5 K 7 8\n"),
    (f"proc/{PEER}/maps", b"\xff\xfe not a maps line\n"),
    (f"proc/{PEER}/smaps", b"7f00-7f01 r--p 0000 fe:01 12 /x\nRss:  lots kB\n"),
    (f"proc/{PEER}/smaps_rollup", b"00400000-7fff ---p 00000000 00:00 0 [rollup]\nPss: \x00 kB\n"),
    (f"proc/{SLEEPER}/status", b"Name:\tsleep\nUid:\tnobody\n"),
    ("proc/sysvipc/shm", b"key shmid perms\n  zz  yy  ww\n"),
    ("proc/meminfo", b"MemTotal: a lot\n"),
    ("recorded-stat.json", b'{"statvfs": [1, 2'),
]


@pytest.mark.parametrize("rel,data", DAMAGE, ids=[d[0] for d in DAMAGE])
def test_a_damaged_recording_is_one_line_never_a_traceback(tmp_path, rel, data):
    """A stat with a letter where the flags are, a cut runs.json, a maps line of noise: each once ended a
    replay in a traceback (a worker thread's, then a TypeError of the main one)."""
    root = tmp_path / "host"
    shutil.copytree(BASE, root)
    (root / rel).write_bytes(data)
    for args in (["segments", "--json"], ["footprint", "--json"], ["footprint", "--by", "kind"],
                 ["footprint", "--by", "object", "--json"], ["export", "--prometheus"]):
        r = run_shmkit(*args, "--root", str(root))
        assert "Traceback" not in r.stderr and r.returncode in (0, 1), (args, r.stderr[-800:])
        if r.returncode == 1:
            assert len(r.stderr.strip().splitlines()) == 1 and "Exception in thread" not in r.stderr, r.stderr


def test_a_damaged_snapshot_names_the_member_not_the_private_folder(tmp_path):
    import tarfile

    root = tmp_path / "host"
    shutil.copytree(BASE, root)
    (root / f"proc/{SLEEPER}/stat").write_bytes(b"17908 (sleep) S 1 2 3 4 5 K 7 8\n")
    (root / f"proc/{SLEEPER}/smaps_rollup").write_bytes(b"")  # no memory: its stat says what kind of process
    (root / "snapshot.json").write_text(json.dumps({"format": "shmkit-snapshot 1", "page_size": 4096}))
    snap = tmp_path / "s.tar.gz"
    with tarfile.open(snap, "w:gz") as t:
        t.add(root, "host")
    r = run_shmkit("footprint", "--from", str(snap))
    assert r.returncode == 1 and r.stderr.strip() == (f"Error: {snap}:proc/{SLEEPER}/stat: malformed: b'K' where a "
                                                      "number belongs"), r.stderr


def test_a_failure_in_a_scan_thread_is_raised_in_the_caller(capfd):
    from toolkit.measure.system import _pool_map

    def fn(i):
        if i == 37:
            raise LookupError("item 37")
        return i * 2

    with pytest.raises(LookupError, match="item 37"):
        _pool_map(fn, range(100))
    assert "Exception in thread" not in capfd.readouterr().err
    assert _pool_map(lambda i: i + 1, range(50)) == list(range(1, 51))


def test_a_proc_mounted_with_subset_pid_is_named_as_why_segments_are_unlisted(tmp_path):
    """subset=pid (Linux 5.8+, some container runtimes) shows only the process folders: no sysvipc, no
    meminfo. System V is then unlisted (unknown, left out of export), and the note names the mount option
    instead of guessing at a kernel built without System V IPC."""
    root = tmp_path / "host"
    shutil.copytree(BASE, root)
    for rel in ("proc/meminfo", "proc/sysvipc", "proc/sys"):
        path = root / rel
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    mi = root / "proc/self/mountinfo"
    lines = mi.read_text().splitlines()
    proc = [i for i, ln in enumerate(lines) if " /proc " in ln and " - proc " in ln]
    assert proc
    for i in proc:
        lines[i] = lines[i].rstrip() + ",subset=pid"
    mi.write_text("\n".join(lines) + "\n")
    r = run_shmkit("segments", "--json", "--root", str(root))
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["unlisted"] == ["sysv"] and any("subset=pid" in n for n in d["notes"]), d["notes"]
    prom = run_shmkit("export", "--prometheus", "--root", str(root)).stdout
    assert 'shmkit_listing_complete{kind="sysv"} 0' in prom and 'shmkit_shared_objects{kind="sysv"}' not in prom
    fp = run_shmkit("footprint", "--json", "--root", str(root))
    assert fp.returncode == 0 and json.loads(fp.stdout)["processes"], fp.stderr


def test_a_folder_holding_an_unpacked_snapshot_is_pointed_to_its_host(tmp_path):
    """`tar xf snap.tar.gz` makes host/ in the current folder; --root . then said only 'not a recorded
    host'. The line now names the folder that is one."""
    shutil.copytree(BASE, tmp_path / "host")
    r = run_shmkit("footprint", "--root", str(tmp_path))
    assert r.returncode == 1 and r.stderr.strip() == (
        f"Error: {tmp_path}: not a recorded host (it has no proc/self/status); {tmp_path}/host is one (an "
        "unpacked snapshot)"), r.stderr
    assert run_shmkit("footprint", "--root", str(tmp_path / "host")).returncode == 0
