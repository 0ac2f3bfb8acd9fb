"""Nothing left behind, nothing hangs: whole-tree kills at random moments, a stopped peer, a peer killed
at each phase, SIGTERM to the whole tree."""
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import REPO, new_objects, snapshot

# ------------------------------------------------------------------ killing a whole process tree at once


def _own_cgroup(controller: str):
    """This process's cgroup in `controller`'s hierarchy ('' for cgroup v2), from /proc/self/cgroup."""
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            if controller in ctrls.split(","):
                return path
    return None


def _mount_point(fstype: str, option: str | None = None):
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            fields, post_fields = pre.split(), post.split()
            if post_fields[0] == fstype and (option is None or option in post_fields[-1].split(",")):
                return fields[4]
    return None


class TreeKiller:
    """Kills every process of a tree at once, as a cgroup or OOM group kill does. A cgroup made under
    this process's own cgroup follows setsid and double forks: v2 `cgroup.kill`, else the v1 freezer
    (freeze, SIGKILL each, thaw). Without either, the parent links are walked: SIGSTOP until no new
    process appears, then SIGKILL."""

    def __init__(self):
        self.kind, self.path = "walk", None
        name = f"shmkit-test-{os.getpid()}-{random.randrange(1 << 30)}"
        v2, own2 = _mount_point("cgroup2"), _own_cgroup("")
        v1, own1 = _mount_point("cgroup", "freezer"), _own_cgroup("freezer")
        for kind, mnt, own, probe in (("v2", v2, own2, "cgroup.kill"), ("freezer", v1, own1, "freezer.state")):
            if not mnt or own is None:
                continue
            path = os.path.join(mnt, own.lstrip("/"), name)
            try:
                os.mkdir(path)
            except OSError:
                continue
            if os.path.exists(os.path.join(path, probe)):
                self.kind, self.path = kind, path
                break
            os.rmdir(path)

    def preexec(self):
        if self.path:
            with open(os.path.join(self.path, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))

    def _procs(self):
        with open(os.path.join(self.path, "cgroup.procs")) as f:
            return [int(x) for x in f.read().split()]

    def kill_all(self, root: int) -> None:
        if self.kind == "v2":
            with open(os.path.join(self.path, "cgroup.kill"), "w") as f:
                f.write("1")
        elif self.kind == "freezer":
            state = os.path.join(self.path, "freezer.state")
            with open(state, "w") as f:
                f.write("FROZEN")
            deadline = time.monotonic() + 10
            while open(state).read().strip() != "FROZEN" and time.monotonic() < deadline:
                time.sleep(0.005)
            for pid in self._procs():
                os.kill(pid, signal.SIGKILL)
            with open(state, "w") as f:
                f.write("THAWED")
        else:
            stopped = set()
            while True:
                tree = _descendants(root) | {root}
                if tree <= stopped:
                    break
                for pid in tree - stopped:
                    _signal(pid, signal.SIGSTOP)
                stopped |= tree
            for pid in stopped:
                _signal(pid, signal.SIGKILL)

    def wait_empty(self, timeout=20.0):
        deadline = time.monotonic() + timeout
        while self.path and self._procs() and time.monotonic() < deadline:
            time.sleep(0.02)

    def remove(self):
        if self.path:
            self.wait_empty()
            os.rmdir(self.path)


def _signal(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _descendants(root: int) -> set:
    parent = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat", "rb") as f:
                    parent[int(d)] = int(f.read().rpartition(b")")[2].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    out, todo = set(), [root]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p and c not in out]
        out.update(kids)
        todo += kids
    return out


@pytest.fixture
def killer():
    k = TreeKiller()
    yield k
    k.remove()


# Each command at 8 random moments (32 in all): small sizes so that the moments cover every phase.
COMMANDS = {
    "compare": ["compare", "--size", "16M", "--peers", "3", "--repeat", "3", "--json"],
    "bench": ["bench", "--sizes", "4K,1M", "--mechanisms", "sysv,posix,memfd,dso", "--repeat", "20", "--json"],
    "demo lifetime": ["demo", "lifetime", "--json"],
    "explain": ["explain", "--peers", "2", "--json"],
}
MOMENTS = 8


@pytest.mark.slow
@pytest.mark.parametrize("name", list(COMMANDS))
def test_whole_tree_killed_at_random_moments_leaves_nothing(name, killer):
    args = [sys.executable, "-m", "toolkit", *COMMANDS[name]]
    t0 = time.monotonic()
    first = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    duration = time.monotonic() - t0
    rng = random.Random()
    moments = sorted(rng.uniform(0.02, duration) for _ in range(MOMENTS))
    for at in moments:
        before = snapshot()
        p = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             preexec_fn=killer.preexec)
        time.sleep(at)
        killer.kill_all(p.pid)
        p.wait()
        killer.wait_empty()
        s, posix = new_objects(before, wait=10)
        assert not s and not posix, (f"{name} killed whole ({killer.kind}) {at:.3f} s after its start left "
                                     f"System V shmids {s} and /dev/shm names {posix}")


# ------------------------------------------------------------------ peers that fail


def _peers_of(pid):
    return sorted(c for c in _descendants(pid) if b"toolkit.measure.peer" in _cmdline(c) and _parent(c) == pid)


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def _parent(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rpartition(b")")[2].split()[1])
    except (OSError, ValueError):
        return None


@pytest.mark.slow
def test_a_stopped_peer_is_named_within_60_s_and_nothing_is_left():
    before = snapshot()
    p = subprocess.Popen([sys.executable, "-m", "toolkit", "compare", "--size", "256M", "--peers", "4"],
                         cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    peers = []
    while len(peers) < 4:
        assert p.poll() is None and time.monotonic() - t0 < 30, "compare started no peers"
        peers = _peers_of(p.pid)
        time.sleep(0.01)
    victim = peers[2]
    time.sleep(0.2)
    os.kill(victim, signal.SIGSTOP)
    try:
        _out, err = p.communicate(timeout=60)
    finally:
        _signal(victim, signal.SIGCONT)
    assert time.monotonic() - t0 < 60
    lines = err.strip().splitlines()
    assert p.returncode == 1, err
    assert lines[-1].startswith(f"Error: peer {victim} stopped answering during '"), err
    assert "SIGSTOP" in lines[-1] and "Traceback" not in err and "Broken pipe" not in err
    time.sleep(0.5)
    assert not os.path.exists(f"/proc/{victim}") or _parent(victim) != p.pid  # gone, not left stopped
    s, posix = new_objects(before, wait=10)
    assert not s and not posix


KILL_AT = textwrap.dedent("""
    import os, signal, sys
    from toolkit.errors import PeerFailed
    from toolkit.measure.compare import run_compare
    phase = sys.argv[1]
    victim = []
    def progress(what, done=None, total=None):
        if what == phase and not victim:
            kids = [int(d) for d in os.listdir("/proc") if d.isdigit() and open(f"/proc/{d}/stat", "rb").read()
                    .rpartition(b")")[2].split()[1] == str(os.getpid()).encode()
                    and b"toolkit.measure.peer" in open(f"/proc/{d}/cmdline", "rb").read()]
            victim.append(kids[-1])
            os.kill(kids[-1], signal.SIGKILL)
    try:
        run_compare(8 << 20, 3, repeat=2, progress=progress)
        print("no failure")
    except PeerFailed as err:
        print(victim[0], "|", err)
""")

# the progress message that starts a phase, and the words that must name it in the error
PHASES = {
    "sysv: 3 peers attach": "'attach' of sysv",
    "sysv: first touch and reads": "'touch' of sysv",
    "posix: 3 peers attach": "'attach' of posix",
    "posix: first touch and reads": "'touch' of posix",
    "library: peers load it": "'attach' of dso",
    "reading smaps and pagemap": "reading smaps and pagemap",
    "lifetime: objects made by a peer that exits": "'isolated_part' in its private namespace",
    "posix: setup cost": "'isolated_part' in its private namespace",
}


@pytest.mark.parametrize("phase", list(PHASES))
def test_a_peer_killed_at_each_phase_is_named_with_the_phase(phase):
    before = snapshot()
    r = subprocess.run([sys.executable, "-c", KILL_AT, phase], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    victim, _, message = r.stdout.strip().partition(" | ")
    assert message.startswith(f"peer {victim} died during {PHASES[phase]}"), r.stdout
    assert "(killed by SIGKILL)" in message and "Broken pipe" not in message
    s, posix = new_objects(before, wait=10)
    assert not s and not posix


def test_sigterm_to_the_whole_tree_exits_143_and_leaves_nothing():
    before = snapshot()
    p = subprocess.Popen([sys.executable, "-m", "toolkit", "compare", "--size", "64M", "--peers", "3"],
                         cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    t0 = time.monotonic()
    while len(_peers_of(p.pid)) < 3:
        assert p.poll() is None and time.monotonic() - t0 < 30
        time.sleep(0.01)
    time.sleep(0.3)
    os.killpg(p.pid, signal.SIGTERM)  # shmkit and its peers at once, as systemctl stop does
    _, err = p.communicate(timeout=30)
    assert p.returncode == 143, err
    assert "Traceback" not in err and "peer" not in err
    s, posix = new_objects(before, wait=10)
    assert not s and not posix
