"""Peers: separate processes that attach, answer, and never outlive their parent."""
import json
import os
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import REPO

from toolkit import mechanisms
from toolkit.errors import PeerFailed
from toolkit.measure.peer import PeerGroup


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[1].split()[0] != "Z"


def test_peers_are_fresh_processes_and_share_a_segment():
    sysv = mechanisms.get("sysv")
    h = sysv.create_fresh(65536)
    try:
        with PeerGroup(2) as group:
            replies = group.call_all("attach", region="r", handle=h.to_json())
            sysv.destroy(h)  # marked for removal; the peers keep it
            assert {r["pid"] for r in replies} == {p.pid for p in group} and os.getpid() not in {p.pid for p in group}
            group[0].call("write", region="r", offset=100, data=b"peer".hex())
            assert bytes.fromhex(group[1].call("read", region="r", offset=100, n=4)["data"]) == b"peer"
            for p in group:
                with open(f"/proc/{p.pid}/status") as f:
                    assert f"PPid:\t{os.getpid()}" in f.read()
    finally:
        sysv.destroy(h)


def test_error_inside_a_peer_is_reported_and_nothing_leaks():
    with PeerGroup(1) as group:
        with pytest.raises(PeerFailed, match="no System V segment"):
            group[0].call("attach", region="x", handle={"mechanism": "sysv", "size": 4096, "shmid": 0x7FFFFFF0})
        assert group[0].call("info")["pid"] == group[0].pid  # still serving


def test_a_peer_killed_by_sigbus_is_told_why_a_shared_mapping_does_that():
    posix = mechanisms.get("posix")
    h = posix.new_handle(1 << 20)
    posix.create(h)
    try:
        with PeerGroup(1) as group:
            group[0].call("attach", region="p", handle=h.to_json())
            fd = os.open(f"/dev/shm{h.name}", os.O_RDWR)
            os.ftruncate(fd, 0)  # the pages behind the peer's mapping are gone: its next touch faults
            os.close(fd)
            with pytest.raises(PeerFailed) as caught:
                group[0].call("touch", region="p", write=True, work=1 << 20)
        msg = str(caught.value)
        # MADV_POPULATE_WRITE (Linux 5.14) answers EFAULT where a plain store is killed by SIGBUS: either
        # way the message says what it means
        assert f"peer {group[0].pid}" in msg and "during 'touch' of p" in msg, msg
        assert "a page of a shared mapping could not be supplied" in msg, msg
        with PeerGroup(1) as group:  # a plain store: the kernel's SIGBUS
            os.truncate(f"/dev/shm{h.name}", 1 << 20)
            group[0].call("attach", region="p", handle=h.to_json())
            os.truncate(f"/dev/shm{h.name}", 0)
            with pytest.raises(PeerFailed) as caught:
                group[0].call("write", region="p", offset=0, data="00")
        msg = str(caught.value)
        assert f"peer {group[0].pid} died during 'write' of p (killed by SIGBUS: a page of a shared mapping" in msg
    finally:
        posix.destroy(h)


def test_peer_dies_with_its_parent():
    # a middle process starts a peer, reports its pid, and is SIGKILLed: the peer must go too
    code = textwrap.dedent("""
        import sys, time
        from toolkit.measure.peer import Peer
        p = Peer()
        print(p.call("info")["pid"], flush=True)
        time.sleep(60)
    """)
    mid = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO)
    peer_pid = int(mid.stdout.readline())
    assert _alive(peer_pid)
    mid.kill()
    mid.wait()
    deadline = time.monotonic() + 5
    while _alive(peer_pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(peer_pid)


MAKER = textwrap.dedent("""
    import json, sys, time
    from toolkit import mechanisms
    from toolkit.measure.janitor import Janitor
    from toolkit.measure.peer import Peer
    j = Janitor() if sys.argv[1] == "janitor" else None
    peer = Peer()
    if j:
        j.watch_process(peer.pid)
    out = []
    for name in ("sysv", "posix"):
        m = mechanisms.get(name)
        h = m.new_handle(8192)
        m.create(h)  # named, never marked: only the janitor can remove these
        out.append(h.to_json())
        out.append(peer.call("create", handle=m.new_handle(8192).to_json())["handle"])
    print(json.dumps(out), flush=True)
    time.sleep(60)
""")


def _made_objects(mode):
    from toolkit.mechanisms import Handle

    mid = subprocess.Popen([sys.executable, "-c", MAKER, mode], stdout=subprocess.PIPE, text=True, cwd=REPO)
    return mid, [Handle.from_json(h) for h in json.loads(mid.stdout.readline())]


def _present(handles):
    return [h for h in handles if mechanisms.get(h.mechanism).exists(h)]


def test_janitor_removes_what_a_killed_parent_and_its_peer_made():
    mid, made = _made_objects("janitor")
    assert len(_present(made)) == 4  # two made by the parent, two by its peer
    mid.kill()
    mid.wait()
    deadline = time.monotonic() + 10
    while _present(made) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _present(made) == []


def test_janitor_fed_a_cut_last_line_still_removes_everything():
    """The janitor is told of the creators; a line cut by a signal (or garbage) is skipped, not fatal."""
    from toolkit.measure.janitor import parse_creator

    mid, made = _made_objects("none")  # no janitor of its own: ours is told about it below
    try:
        since = time.time() - 30
        jan = subprocess.Popen([sys.executable, "-m", "toolkit.measure.janitor", str(mid.pid), repr(since)],
                               stdin=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
        peer_pid = next(int(p) for p in os.listdir("/proc") if p.isdigit() and _is_child_peer(int(p), mid.pid))
        jan.stdin.write(f"creator {peer_pid}\n".encode() + b"\xff\xfe garbage\n{\"verb\": \"wat")
        jan.stdin.close()
        assert jan.wait(timeout=30) == 0, jan.stderr.read()
        assert b"Traceback" not in jan.stderr.read()
        assert _present(made) == []  # the parent's and the peer's objects, all removed
    finally:
        mid.kill()
        mid.wait()
    assert parse_creator(b"creator 12") == 12 and parse_creator(b"creat") is None and parse_creator(b"\xff") is None


def _is_child_peer(pid, parent):
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            ppid = int(f.read().rpartition(b")")[2].split()[1])
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read()
    except (OSError, ValueError):
        return False
    return ppid == parent and b"toolkit.measure.peer" in cmd


def test_janitor_spares_objects_it_was_not_told_about():
    """Only what the watched processes made since the janitor started: not this test's own object."""
    from toolkit.measure.janitor import sweep

    posix, sysv = mechanisms.get("posix"), mechanisms.get("sysv")
    mine = [sysv.new_handle(4096), posix.new_handle(4096)]
    for h in mine:
        mechanisms.get(h.mechanism).create(h)
    try:
        assert sweep({os.getpid()}, time.time() + 5) == []  # made before `since`: not swept
        assert len(_present(mine)) == 2
        assert sweep({1}, time.time() - 5) == []  # another creator: not swept
        assert len(_present(mine)) == 2
        assert sweep({os.getpid()}, time.time() - 5) == [] and _present(mine) == []
    finally:
        for h in mine:
            mechanisms.get(h.mechanism).destroy(h)


def test_a_group_that_cannot_fit_is_refused_before_it_starts():
    from conftest import run_shmkit

    from toolkit.errors import LimitExceeded
    from toolkit.measure.peer import Peer, check_room_for_peers
    from toolkit.proc.maps import read_rollup
    from toolkit.proc.system import read_meminfo

    t0 = time.monotonic()
    r = run_shmkit("compare", "--peers", "99999999", "--size", "4K", timeout=60)
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r.stderr
    assert "99999999 peers do not fit" in r.stderr and time.monotonic() - t0 < 30
    with Peer() as peer:
        peer.call("info")
        caps = [int(open(f"/proc/sys/kernel/{n}").read()) for n in ("pid_max", "threads-max")]
        tasks = sum(1 for n in os.listdir("/proc") if n.isdigit())
        room = min(caps) - tasks - 200  # processes that would still be allowed
        r = read_rollup(peer.pid, fields=("Private_Clean", "Private_Dirty"))
        own = r.get("Private_Clean", 0) + r.get("Private_Dirty", 0)
        if own * room <= read_meminfo()["MemAvailable"]:
            pytest.skip(f"this machine's memory holds {room} peers: the memory check cannot be reached "
                        "below the pid limits")
        with pytest.raises(LimitExceeded, match=r"peers do not fit in memory: each takes about \d+ bytes"):
            check_room_for_peers(room, peer.pid)
        check_room_for_peers(20, peer.pid)  # a small group fits: no error


def test_a_group_beyond_rlimit_nofile_raises_the_soft_limit_or_is_refused_at_once():
    script = textwrap.dedent("""
        import resource, sys
        from toolkit.errors import LimitExceeded
        from toolkit.measure.peer import PeerGroup
        soft, hard = int(sys.argv[1]), int(sys.argv[2])
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        try:
            with PeerGroup(40) as g:  # 120 descriptors for their pipes alone
                print("started", len(g), resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        except LimitExceeded as err:
            print("refused", err)
    """)
    def run(soft, hard):
        return subprocess.run([sys.executable, "-c", script, str(soft), str(hard)], capture_output=True, text=True,
                              cwd=REPO, timeout=120).stdout.split()

    out = run(64, 4096)  # the soft limit is ours to raise
    assert out[:2] == ["started", "40"] and 120 < int(out[2]) <= 4096, out
    t0 = time.monotonic()
    out = run(64, 64)  # the hard one is not: refused before 40 interpreters are started
    assert out[0] == "refused" and "RLIMIT_NOFILE allows 64" in " ".join(out) and time.monotonic() - t0 < 20, out


def test_rlimit_nproc_counts_only_this_users_processes(nobody_env):
    """RLIMIT_NPROC bounds one user's processes: a group that fits beside them runs, however many
    processes other users have; one that does not is refused, naming the limit."""
    import resource

    from conftest import NOBODY

    limit = 25 + 5  # 25 peers, shmkit itself and a little room; below what all users together run here
    assert sum(1 for n in os.listdir("/proc") if n.isdigit()) + 25 > limit  # so a count of all would refuse

    def run(peers):
        return subprocess.run([nobody_env["python"], "-m", "toolkit", "compare", "--size", "4K", "--peers",
                               str(peers), "--repeat", "1", "--json"], env=nobody_env["env"], user=NOBODY,
                              group=NOBODY, extra_groups=[], cwd=nobody_env["cwd"], capture_output=True,
                              text=True, timeout=300,
                              preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NPROC, (limit, limit)))

    r = run(25)
    assert r.returncode == 0, r.stderr
    r = run(40)
    assert r.returncode == 1 and "40 peers do not fit: this user runs" in r.stderr
    assert f"RLIMIT_NPROC is {limit}" in r.stderr


@pytest.fixture
def pids_cgroup():
    """A pids cgroup made under this process's own (never elsewhere), removed after: (folder, preexec)."""
    from toolkit.proc.cgroup import cgroup_dir, controller_hierarchy, process_cgroup

    h = controller_hierarchy("pids")
    own = process_cgroup("self", h) if h else None
    parent = cgroup_dir(own, h) if own is not None else None
    if parent is None or not os.access(parent, os.W_OK):
        pytest.skip(f"cannot make a pids cgroup under our own ({own!r}): no pids controller or not writable")
    folder = os.path.join(parent, f"shmkit-test-pids-{os.getpid()}")
    os.mkdir(folder)
    if not os.path.exists(os.path.join(folder, "pids.max")):
        os.rmdir(folder)
        pytest.skip("cgroup v2: the pids controller is not enabled for our cgroup's children")

    def join():
        with open(os.path.join(folder, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))
    try:
        yield folder, join
    finally:
        deadline = time.monotonic() + 10
        while open(os.path.join(folder, "cgroup.procs")).read().strip() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.rmdir(folder)


@pytest.mark.parametrize("room,needle", [(3, "peers do not fit: pids.max of cgroup"),
                                         (0, "the kernel refused a new process (EAGAIN): pids.max of cgroup")])
def test_a_containers_pids_limit_is_named_not_resource_temporarily_unavailable(pids_cgroup, room, needle):
    """A container's pids.max: compare's peers that cannot all start are refused before they start, and a
    fork the kernel refuses says which limit, where it said 'Resource temporarily unavailable'."""
    folder, join = pids_cgroup
    python = sys.executable  # the interpreter itself, not a shell shim (which would fork once more)
    code = (f"import os, sys, subprocess\n"
            f"tasks = int(open({folder!r} + '/pids.current').read())\n"
            f"open({folder!r} + '/pids.max', 'w').write(str(tasks + {room}))\n"
            f"os.execv({python!r}, [{python!r}, '-m', 'toolkit', 'compare', '--size', '4K', '--peers', '4', "
            f"'--repeat', '1'])\n")
    t0 = time.monotonic()
    r = subprocess.run([python, "-c", code], preexec_fn=join, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 1 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "Resource temporarily unavailable" not in r.stderr and time.monotonic() - t0 < 60
