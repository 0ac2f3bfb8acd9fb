"""Run peers as another user (uid 65534, nobody): a world-readable runtime of shmkit and its dependencies.

The interpreter we run under may live where that user cannot go (root's home), so the runtime uses a
system interpreter the user can execute, with a copy of our package and its dependencies beside it.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile

NOBODY = 65534
SYSTEM_PYTHONS = ("/usr/bin/python3", "/usr/local/bin/python3")
DEPENDENCIES = ("sysv_ipc", "posix_ipc", "click", "pyelftools", "rich", "jinja2")  # jinja2: the html extra, if here


class Runtime:
    def __init__(self, root: str, python: str, env: dict, uid: int = NOBODY):
        self.root, self.python, self.env, self.uid = root, python, env, uid

    def run(self, *args, timeout=120):
        return subprocess.run([self.python, "-m", "toolkit", *args], env=self.env, user=self.uid, group=self.uid,
                              extra_groups=[], cwd=self.root, capture_output=True, text=True, timeout=timeout)

    def close(self):
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _files_of(dist_name, seen, out):
    from importlib import metadata

    key = re.sub(r"[-_.]+", "-", dist_name).lower()
    if key in seen:
        return
    seen.add(key)
    try:
        dist = metadata.distribution(dist_name)
    except metadata.PackageNotFoundError:
        return
    for f in dist.files or ():
        out.append(str(f.locate()))
    for req in dist.requires or ():
        if "extra ==" not in req:
            _files_of(re.split(r"[ ;<>=!~\[(]", req, 1)[0], seen, out)


def _python_for(uid: int) -> str:
    """An interpreter `uid` can run whose version is ours: sysv_ipc and posix_ipc are compiled for one
    CPython version (cpython-311...so), so a copy of them loads only in that version. Ours first (where the
    user may enter its folder), then the system's. NotFound, saying which were tried, where there is none."""
    from toolkit.errors import NotFound

    want = "%d.%d" % sys.version_info[:2]
    tried = []
    for python in dict.fromkeys([os.path.realpath(sys.executable), *SYSTEM_PYTHONS,
                                 f"/usr/bin/python{want}", f"/usr/local/bin/python{want}"]):
        if not os.access(python, os.X_OK):
            continue
        try:
            r = subprocess.run([python, "-I", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                               user=uid, group=uid, extra_groups=[], cwd="/", capture_output=True, text=True,
                               timeout=10)
        except (OSError, subprocess.SubprocessError) as err:
            tried.append(f"{python}: {err}")
            continue
        got = r.stdout.strip()
        if r.returncode == 0 and got == want:
            return python
        tried.append(f"{python}: " + (f"Python {got}" if r.returncode == 0 else "not runnable by that user"))
    raise NotFound(f"no Python {want} that uid {uid} can run, for a copy of the compiled sysv_ipc and posix_ipc "
                   f"this one has (tried {'; '.join(tried) or 'none found'})")


def make_runtime(uid: int = NOBODY) -> Runtime:
    """Copy toolkit and its dependencies into a fresh world-readable folder. Needs root to be of use."""
    python = _python_for(uid)
    root = tempfile.mkdtemp(prefix="shmkit-runas-")
    site = os.path.join(root, "site")
    files = []
    for dist in DEPENDENCIES:
        _files_of(dist, set(), files)
    bases = sorted((p for p in sys.path if p and "-packages" in p), key=len, reverse=True)
    for src in files:
        base = next((b for b in bases if src.startswith(b.rstrip("/") + "/")), None)
        if base is None or not os.path.isfile(src):
            continue
        dst = os.path.join(site, os.path.relpath(src, base))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy2(src, dst)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    shutil.copytree(here, os.path.join(site, "toolkit"), ignore=shutil.ignore_patterns("__pycache__"))
    for d, _dirs, fs in os.walk(root):
        os.chmod(d, 0o755)
        for f in fs:
            os.chmod(os.path.join(d, f), 0o644)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": site, "HOME": root, "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
    return Runtime(root, python, env, uid)
