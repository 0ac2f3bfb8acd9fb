"""The private namespace where named phases run, and the honest fallback where none can be made."""
import os

from conftest import sysv_ids

from toolkit import mechanisms
from toolkit.measure import sandbox
from toolkit.measure.sandbox import private_peer, run_isolated


def test_objects_made_in_the_private_namespace_never_reach_the_machine():
    peer, why = private_peer()
    assert peer is not None, why  # root or a user namespace: CI has both
    try:
        s = peer.call("create", handle=mechanisms.get("sysv").new_handle(8192).to_json())["handle"]
        p = peer.call("create", handle=mechanisms.get("posix").new_handle(8192).to_json())["handle"]
        inside = peer.call("sysv_ids")["shmids"]
        assert s["shmid"] in inside  # named and listed in there...
        assert p["name"].lstrip("/") not in os.listdir("/dev/shm")  # ...while this /dev/shm never saw it
        with open("/proc/sysvipc/shm") as f:
            assert not any(int(line.split()[0]) == s["key"] for line in f.readlines()[1:])
        assert os.readlink(f"/proc/{peer.pid}/ns/ipc") != os.readlink("/proc/self/ns/ipc")
    finally:
        peer.close()  # its namespace goes with it, and the objects with the namespace
    # the leak check around every test confirms nothing is left here


def test_results_and_library_errors_come_back_from_the_namespace():
    run = run_isolated("toolkit.measure.compare:lifetime_facts", names=["sysv", "posix"])
    assert run.private and "private IPC namespace" in run.where
    assert run.result["sysv"] == {"outlives": True, "listed": run.result["sysv"]["listed"]}
    assert "/proc/sysvipc/shm" in run.result["sysv"]["listed"] and run.result["posix"] == {
        "outlives": True, "listed": ("/dev/shm",)}


def test_without_a_private_namespace_the_work_runs_here_and_says_so(monkeypatch):
    def refused(*args, **kwargs):
        return lambda: os._exit(97)  # what the kernel's refusal of unshare looks like to us

    monkeypatch.setattr(sandbox, "enter", refused)
    before = sysv_ids()
    run = run_isolated("toolkit.measure.compare:lifetime_facts", names=["sysv", "posix"])
    assert not run.private
    assert "this machine's IPC namespace" in run.where and "exit status 97" in run.where
    assert run.result["sysv"]["outlives"] is True and run.result["posix"]["outlives"] is True
    assert sysv_ids() == before


def test_as_nobody_the_lifetime_demo_runs_in_a_user_namespace_or_says_why_not(nobody_env):
    import json

    from conftest import run_as_nobody

    r = run_as_nobody(nobody_env, "demo", "lifetime", "--json")
    assert r.returncode == 0, r.stderr
    story = json.loads(r.stdout)
    assert all(step["holds"] for step in story["steps"]), story
    assert story["where"] == sandbox.PRIVATE or story["where"].startswith("in this machine's IPC namespace")
    if _unprivileged_userns_allowed():
        assert story["where"] == sandbox.PRIVATE, story["where"]


def _sysctl(name, default):
    try:
        with open("/proc/sys/" + name.replace(".", "/")) as f:
            return int(f.read())
    except OSError:
        return default


def _unprivileged_userns_allowed() -> bool:
    return (_sysctl("user.max_user_namespaces", 0) > 0 and _sysctl("kernel.unprivileged_userns_clone", 1) == 1
            and _sysctl("kernel.apparmor_restrict_unprivileged_userns", 0) == 0)


def test_the_private_namespace_keeps_this_machines_limits(tmp_path):
    """The private /dev/shm had the size of the real one but not its number of names (a container's few
    thousand), and its IPC namespace the kernel's default kernel.shm*: what was measured there could
    succeed where this machine refuses. The /dev/shm and the settings are changed only in namespaces
    made for this test (unshare)."""
    import shutil
    import subprocess
    import sys

    import pytest

    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare(1) for a mount and an IPC namespace of the test's own")
    probe = ("from toolkit.measure.sandbox import private_peer\n"
             "peer, why = private_peer()\n"
             "assert peer is not None, why\n"
             "shm = [line.split() for line in open(f'/proc/{peer.pid}/mountinfo') if ' /dev/shm ' in line]\n"
             "print(shm[-1][-1])\n"
             "print(peer.call('ipc_sysctls')['sysctls']['shmmni'])  # read in its own IPC namespace\n"
             "peer.close()\n")
    script = ("mount -t tmpfs -o size=1m,nr_inodes=64 tmpfs /dev/shm && echo 100 > /proc/sys/kernel/shmmni && "
              f"{sys.executable} -c \"$PROBE\"")
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "--ipc", "sh", "-c", script],
                       capture_output=True, text=True, env={**os.environ, "PROBE": probe}, timeout=60,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert r.returncode == 0, r.stderr
    options, shmmni = r.stdout.split()
    assert "size=1024k" in options and "nr_inodes=64" in options, options
    assert shmmni == "100"
