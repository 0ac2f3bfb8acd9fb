"""The shmkit command end to end: JSON, the table, errors, SIGKILL at any moment, unprivileged runs."""
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import LIBDIR, REPO, run_as_nobody, run_shmkit

from toolkit.proc.system import read_limits


def test_compare_json_shape():
    r = run_shmkit("compare", "--size", "8M", "--peers", "3", "--repeat", "2", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["size_bytes"] == 8 << 20 and d["peers"] == 3 and isinstance(d["privileged"], bool)
    assert set(d["mechanisms"]) == {"sysv", "posix", "dso_text", "dso_data"}
    for name, m in d["mechanisms"].items():
        assert set(m["visibility"]) >= {"peer_sees_write", "maps_name", "listed_in", "mode"}
        assert set(m["setup"]) >= {"create_s", "attach_s", "first_touch_s", "detach_s", "destroy_s"}
        assert set(m["footprint"]) >= {"rss_sum_bytes", "pss_sum_bytes", "physical_bytes", "per_peer"}
        assert len(m["footprint"]["per_peer"]) == 3
    assert d["mechanisms"]["sysv"]["footprint"]["rss_sum_bytes"] == 3 * (8 << 20)
    assert d["mechanisms"]["dso_data"]["visibility"]["peer_sees_write"] is False
    assert d["mechanisms"]["dso_text"]["setup"]["create_s"] is None


def test_compare_table():
    r = run_shmkit("compare", "--size", "4M", "--peers", "2", "--repeat", "1", env={**os.environ, "COLUMNS": "160"})
    assert r.returncode == 0, r.stderr
    for word in ("System V", "POSIX", "library text", "library data", "visibility", "setup", "footprint", "Pss sum"):
        assert word in r.stdout
    assert "peer B still reads" in r.stdout
    assert "the same PFNs in both peers" in r.stdout  # not "in all 2 peers"


@pytest.mark.parametrize("args,needle", [
    (["--size", "0"], "--size must be positive"),
    (["--size", "1.5"], "not a whole number of bytes"),
    (["--size", "12Q"], "cannot read size"),
    (["--peers", "0"], "'--peers': must be at least 2"),
    (["--library", "/etc/hostname"], "not an ELF file"),
    (["--library", "no-such-lib-xyz"], "no shared library named"),
    (["--library", os.path.join(LIBDIR, "libc.so")], "not an ELF file"),
    (["--library", os.path.join(LIBDIR, "libc.a")], "an ar archive, not an ELF file (a static library"),
    (["--repeat", "0"], "must be at least 1"),
])
def test_bad_input_one_line_no_traceback(args, needle):
    r = run_shmkit("compare", *args)
    assert r.returncode != 0
    assert needle in r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert len([line for line in r.stderr.splitlines() if line.startswith(("Error", "shmkit"))]) >= 1


def test_size_beyond_limits_one_line():
    lim = read_limits()
    r = run_shmkit("compare", "--size", str(lim.dev_shm_free + (1 << 30)))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "does not fit" in r.stderr or "past" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("delay", [0.15, 0.3, 0.5, 0.8, 1.2, 1.8])
def test_sigkill_at_any_moment_leaves_nothing(delay):
    """SIGKILL the compare process itself; the leak check (conftest) waits and finds nothing left."""
    p = subprocess.Popen([sys.executable, "-m", "toolkit", "compare", "--size", "32M", "--peers", "3", "--json"],
                         cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay * random.uniform(0.8, 1.2))
    p.send_signal(signal.SIGKILL)
    p.wait()


@pytest.mark.parametrize("delay", [0.3, 0.6, 0.9, 1.2, 1.5])
def test_sigterm_cleans_up(delay):
    """SIGTERM at several moments (the setup-cost loop included): cleanup runs, no traceback, no leak."""
    p = subprocess.Popen([sys.executable, "-m", "toolkit", "compare", "--size", "32M", "--peers", "3"],
                         cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(delay * random.uniform(0.8, 1.2))
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=30)
    assert "Traceback" not in err, err


def test_unprivileged_compare(nobody_env):
    r = run_as_nobody(nobody_env, "compare", "--size", "4M", "--peers", "2", "--repeat", "1", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["privileged"] is False
    for m in d["mechanisms"].values():
        assert m["footprint"]["physical_bytes"] is None
        assert m["footprint"]["kpagecount_min"] is None
    assert d["mechanisms"]["sysv"]["visibility"]["peer_sees_write"] is True
    assert d["mechanisms"]["sysv"]["footprint"]["pss_sum_bytes"] == 4 << 20
    assert d["text_sharing"]["same_pfns_in_all_peers"] is None


def test_unprivileged_table_says_root_is_needed(nobody_env):
    r = run_as_nobody(nobody_env, "compare", "--size", "4M", "--peers", "2", "--repeat", "1")
    assert r.returncode == 0, r.stderr
    assert "needs root" in r.stdout
    phys = next(line for line in r.stdout.splitlines() if "physical" in line)
    assert " 0 B" not in phys


def test_python_m_toolkit_and_lazy_imports():
    code = ("import sys; from toolkit.cli.main import cli; cli.main(['--help'], standalone_mode=False); "
            "heavy = [m for m in ('rich', 'elftools', 'sysv_ipc', 'posix_ipc') if m in sys.modules]; "
            "print('HEAVY', heavy)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert "compare" in r.stdout and "HEAVY []" in r.stdout
    # a table in a pipe is laid out by shmkit itself: no rich (its imports cost 50 ms)
    code = ("import sys; from toolkit.cli.main import cli; cli.main(['footprint', '--all'], standalone_mode=False); "
            "print('HEAVY', [m for m in ('rich', 'elftools', 'numpy') if m in sys.modules])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert "memory per process" in r.stdout and "HEAVY []" in r.stdout, r.stdout[-300:] + r.stderr


def test_demo_compare_runs():
    r = subprocess.run([sys.executable, "demos/compare.py", "4M", "2"], capture_output=True, text=True,
                       cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "read them back" in r.stdout and "still reads" in r.stdout


def test_readme_test_command_is_the_ci_command():
    readme = open(os.path.join(REPO, "README.md")).read()
    ci = open(os.path.join(REPO, ".ci", "run")).read()
    cmd = "pip install -e '.[test]' && python3 -m pytest"
    assert cmd in readme and cmd in ci


@pytest.mark.parametrize("after", [0.0, 0.05, 0.2])
def test_sigkill_while_objects_exist(after):
    """Wait until compare has made an object, then SIGKILL it: the janitor and peers clean up."""
    from conftest import dev_shm_names, sysv_ids

    before_s, before_p = sysv_ids(), dev_shm_names()
    p = subprocess.Popen([sys.executable, "-m", "toolkit", "compare", "--size", "32M", "--peers", "3", "--json"],
                         cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not (sysv_ids() - before_s or dev_shm_names() - before_p):
        assert p.poll() is None and time.monotonic() < deadline, "compare made no object"
        time.sleep(0.002)
    time.sleep(after)
    p.send_signal(signal.SIGKILL)
    p.wait()


def test_permission_denied_is_one_line_as_nobody(nobody_env):
    r = run_as_nobody(nobody_env, "elf", "--pid", "1")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "permission denied" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_sigterm_inside_a_finaliser_still_exits_143_without_a_traceback(tmp_path):
    """A SIGTERM that lands while the collector runs a __del__ (a Popen's, say) would be printed as
    "Exception ignored" with a traceback and lost; shmkit's handler waits for the finaliser to return."""
    prog = tmp_path / "slow_del.py"
    prog.write_text(textwrap.dedent(f"""
        import signal, sys, time
        sys.path.insert(0, {REPO!r})
        from toolkit.cli.main import _terminate
        signal.signal(signal.SIGTERM, _terminate)
        class Slow:
            def __del__(self):
                t = time.monotonic()
                while time.monotonic() - t < 0.5:
                    pass
        print("ready", flush=True)
        x = Slow()
        del x
        time.sleep(10)
    """))
    p = subprocess.Popen([sys.executable, str(prog)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    p.stdout.readline()
    time.sleep(0.2)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=20)
    assert p.returncode == 143 and "Traceback" not in err, err
