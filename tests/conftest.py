"""Fixtures that own their cleanup, leak checks around every test, and markers."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOBODY = 65534


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


def _dist_files(dist_name, seen, out):
    """Files of an installed distribution and of everything it requires."""
    from importlib import metadata
    import re

    key = re.sub(r"[-_.]+", "-", dist_name).lower()
    if key in seen:
        return
    seen.add(key)
    try:
        dist = metadata.distribution(dist_name)
    except metadata.PackageNotFoundError:
        return
    for f in dist.files or ():
        out.append(f.locate())
    for req in dist.requires or ():
        if "extra ==" in req:
            continue
        name = re.split(r"[ ;<>=!~\[(]", req, 1)[0]
        _dist_files(name, seen, out)


@pytest.fixture(scope="session")
def nobody_env():
    """A world-readable copy of shmkit and its dependencies for Debian's /usr/bin/python3, so that
    uid 65534 (which cannot enter root's home, where the default python lives) can run it."""
    if not is_root:
        pytest.skip("needs root to switch to uid 65534")
    python = "/usr/bin/python3"
    if not os.access(python, os.X_OK):
        pytest.skip("Debian's /usr/bin/python3 is not installed")
    root = tempfile.mkdtemp(prefix="shmkit-nobody-")
    os.chmod(root, 0o755)
    site = os.path.join(root, "site")
    files = []
    for dist in ("sysv_ipc", "posix_ipc", "click", "pyelftools", "rich", "psutil"):
        _dist_files(dist, set(), files)
    import site as _site  # noqa: F401

    for src in files:
        src = str(src)
        rel = None
        for base in sys.path:
            if base and src.startswith(base.rstrip("/") + "/") and "site-packages" in base:
                rel = os.path.relpath(src, base)
                break
        if rel is None or rel.startswith("..") or not os.path.isfile(src):
            continue
        dst = os.path.join(site, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy2(src, dst)
    shutil.copytree(os.path.join(REPO, "toolkit"), os.path.join(site, "toolkit"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    for d, dirs, fs in os.walk(root):
        os.chmod(d, 0o755)
        for f in fs:
            os.chmod(os.path.join(d, f), 0o644)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": site, "HOME": root, "LANG": "C.UTF-8",
           "PYTHONDONTWRITEBYTECODE": "1"}
    check = subprocess.run([python, "-c", "import toolkit, sysv_ipc, posix_ipc, click, rich, elftools"],
                           env=env, user=NOBODY, group=NOBODY, extra_groups=[], cwd=root, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    yield {"python": python, "env": env, "cwd": root}
    shutil.rmtree(root, ignore_errors=True)


def run_as_nobody(nobody_env, *args, timeout=120):
    return subprocess.run([nobody_env["python"], "-m", "toolkit", *args], env=nobody_env["env"],
                          user=NOBODY, group=NOBODY, extra_groups=[], cwd=nobody_env["cwd"],
                          capture_output=True, text=True, timeout=timeout)
