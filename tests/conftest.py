"""Fixtures that own their cleanup, leak checks around every test, and markers."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOBODY = 65534
# this machine's multiarch library folder: x86_64-linux-gnu, aarch64-linux-gnu, ...
LIBDIR = "/usr/lib/" + (getattr(sys.implementation, "_multiarch", None) or f"{os.uname().machine}-linux-gnu")


def sysv_ids() -> set:
    with open("/proc/sysvipc/shm") as f:
        return {int(line.split()[1]) for line in f.readlines()[1:] if line.strip()}


def dev_shm_names() -> set:
    return set(os.listdir("/dev/shm"))


def snapshot() -> tuple:
    return sysv_ids(), dev_shm_names()


def new_objects(before, wait=5.0) -> tuple:
    """Objects present now and not before; waits for a janitor or dying peers to finish."""
    deadline = time.monotonic() + wait
    while True:
        s, p = sysv_ids() - before[0], dev_shm_names() - before[1]
        if (not s and not p) or time.monotonic() > deadline:
            return s, p
        time.sleep(0.05)


@pytest.fixture(autouse=True)
def no_leaks():
    """Every test: no System V segment and no /dev/shm name of ours may remain."""
    before = snapshot()
    yield
    s, p = new_objects(before)
    assert not s and not p, f"leaked System V shmids {s} and /dev/shm names {p}"


is_root = os.geteuid() == 0
requires_root = pytest.mark.skipif(not is_root, reason="needs root (PFNs, kpagecount, switching user)")


def run_shmkit(*args, timeout=120, **kw):
    return subprocess.run([sys.executable, "-m", "toolkit", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, **kw)


def nobody_python_missing():
    """Why no interpreter uid 65534 can run loads this Python's compiled modules (the tests run on a
    pyenv 3.13 where the system's Python is 3.11), or None: what acting as that user needs."""
    from toolkit.errors import NotFound
    from toolkit.measure.runas import NOBODY, _python_for

    try:
        _python_for(NOBODY)
    except NotFound as err:
        return str(err)
    return None


@pytest.fixture(scope="session")
def nobody_env():
    """A world-readable copy of shmkit and its dependencies for Debian's /usr/bin/python3, so that
    uid 65534 (which cannot enter root's home, where the default python lives) can run it."""
    if not is_root:
        pytest.skip("needs root to switch to uid 65534")
    from toolkit.errors import NotFound
    from toolkit.measure.runas import make_runtime

    try:
        rt = make_runtime()
    except NotFound as err:  # e.g. the tests run on a pyenv 3.13 and the system's Python is 3.11
        pytest.skip(f"no interpreter uid 65534 can run that loads this Python's compiled modules: {err}")
    check = subprocess.run([rt.python, "-c", "import toolkit, sysv_ipc, posix_ipc, click, rich, elftools"],
                           env=rt.env, user=NOBODY, group=NOBODY, extra_groups=[], cwd=rt.root,
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    yield {"python": rt.python, "env": rt.env, "cwd": rt.root, "runtime": rt}
    rt.close()


def run_as_nobody(nobody_env, *args, timeout=120):
    return subprocess.run([nobody_env["python"], "-m", "toolkit", *args], env=nobody_env["env"],
                          user=NOBODY, group=NOBODY, extra_groups=[], cwd=nobody_env["cwd"],
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def reserved_hugepages():
    """Reserve a few huge pages for one test, and give them back (vm.nr_hugepages restored in finally)."""
    from toolkit.proc.system import read_meminfo

    path = "/proc/sys/vm/nr_hugepages"
    if not is_root:
        pytest.skip("reserving huge pages needs root")
    before = open(path).read().strip()
    try:
        with open(path, "w") as f:
            f.write(str(int(before) + 4))
    except OSError as err:
        pytest.skip(f"this machine does not let us reserve huge pages: {err}")
    try:
        if read_meminfo().get("HugePages_Free", 0) < 2:
            pytest.skip("the kernel could not find memory for huge pages")
        yield
    finally:
        with open(path, "w") as f:
            f.write(before)
