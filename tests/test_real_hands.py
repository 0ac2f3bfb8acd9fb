"""In real hands: 80-column terminals, closed pipes, no arguments, odd files and processes, hostile names,
unprivileged monitoring."""
import ctypes
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from conftest import LIBDIR, REPO, run_as_nobody, run_shmkit

from toolkit import mechanisms
from toolkit.measure.peer import PeerGroup

LIBC = mechanisms.get("dso").new_handle(path=None).path


def at_80(*args, **kw):
    r = run_shmkit(*args, env={**os.environ, "COLUMNS": "80"}, **kw)
    assert r.returncode == 0, r.stderr
    assert all(len(line) <= 80 for line in r.stdout.splitlines()), "a line is wider than 80 columns"
    return r.stdout


def _one_line(out: str, *whole) -> bool:
    """Every value appears whole on one line of the table (not cut, not folded)."""
    return any(all(v in line for v in whole) for line in out.splitlines())


# ------------------------------------------------------------------ 80 columns


@pytest.fixture
def shared(tmp_path):
    """A System V segment and a POSIX object that one peer maps."""
    sysv, posix = mechanisms.get("sysv"), mechanisms.get("posix")
    hs = [sysv.new_handle(1 << 20), posix.new_handle(1 << 20)]
    with PeerGroup(1) as peers:
        try:
            for h in hs:
                mechanisms.get(h.mechanism).create(h)
                peers.call_all("attach", region=h.mechanism, handle=h.to_json())
            yield hs, peers[0].pid
        finally:
            for h in hs:
                mechanisms.get(h.mechanism).destroy(h)


def test_footprint_at_80_columns_shows_every_number(shared):
    from toolkit.measure.system import scan_footprint
    from toolkit.report.system import render_footprint
    from toolkit.report.view import Console
    from toolkit.units import human_bytes

    _, pid = shared
    r = scan_footprint()  # one scan, rendered at 80 columns: the peer's row must show its numbers whole
    row = next(p for p in r.processes if p.pid == pid)
    buf = io.StringIO()
    render_footprint(r, "process", "pss", Console(file=buf, width=80))
    out = buf.getvalue()
    assert _one_line(out, str(pid), human_bytes(row.rss), human_bytes(row.pss)), out
    assert all(len(line) <= 80 for line in out.splitlines())
    assert "…" not in at_80("footprint", "--all")
    for by in ("user", "kind", "library"):
        assert "…" not in at_80("footprint", "--by", by)


def test_segments_at_80_columns_keeps_ids_whole(shared):
    (s, p), pid = shared
    out = at_80("segments")
    assert _one_line(out, str(s.shmid), f"0x{s.key:08x}", "1.0 MiB", f"{pid} ")  # the ipcrm -m SHMID hint works
    assert _one_line(out, p.name.lstrip("/"), "1.0 MiB")
    assert "…" not in out
    wide = run_shmkit("segments", env={**os.environ, "COLUMNS": "200"}).stdout
    assert _one_line(wide, str(s.shmid), "0600", "root")  # and still good at 200


def test_stories_at_80_columns_fold_where_columns_is_set():
    """With COLUMNS=80 in a pipe, demos and explain printed lines of up to 138 characters (the tables
    took the width; the stories did not), and a fold parted "152.0" from "KiB,"."""
    for args in (["demo", "protection"], ["explain", "--peers", "2"]):
        out = at_80(*args)
        assert "Verdict:" in out, out
        lines = out.splitlines()
        for upper, lower in zip(lines, lines[1:]):  # a number and its unit stay on one line
            unit = (lower.split() or [""])[0].rstrip(",;:")
            assert not (upper[-1:].isdigit() and unit in ("B", "KiB", "MiB", "GiB", "µs", "ms", "ns")), (upper, lower)
    piped = run_shmkit("demo", "protection", env={k: v for k, v in os.environ.items() if k != "COLUMNS"}).stdout
    assert any(len(line) > 80 for line in piped.splitlines())  # no width asked for: a line per claim, for grep


def test_bench_compare_and_elf_at_80_columns():
    out = at_80("bench", "--sizes", "4K", "--mechanisms", "sysv,posix", "--repeat", "3")
    assert re.search(r"^create\s+\d+(\.\d+)? µs\s+\d+(\.\d+)? µs\s*$", out, re.M), out
    assert "…" not in out and "cre…" not in out
    out = at_80("compare", "--size", "4M", "--peers", "2", "--repeat", "1")
    assert _one_line(out, "Rss sum", "8.0 MiB", "8.0 MiB") and _one_line(out, "Pss sum", "4.0 MiB", "4.0 MiB")
    assert "…" not in out and "outlives its" in out
    out = at_80("elf", LIBC)
    assert "Program Headers:" in out and re.search(r"^  LOAD +0x[0-9a-f]{16} 0x[0-9a-f]{16} 0x[0-9a-f]{16}$", out, re.M)
    out = at_80("elf", "--pid", str(os.getpid()), "libc")
    assert _one_line(out, "R E", "r-xp") and "…" not in out
    out = at_80("elf", "--aslr", "2")  # lines of 102 and 142 characters before; addresses kept whole
    assert all(len(line) <= 80 for line in out.splitlines()), out
    assert len(re.findall(r"\bloaded at 0x[0-9a-f]+, text 0x[0-9a-f]+, data\s+0x[0-9a-f]+, text->data 0x[0-9a-f]+",
                          out)) == 2, out


@given(st.text(alphabet=st.sampled_from("ab \n\u4e2d\u0301-/"), max_size=120), st.integers(min_value=1, max_value=50))
def test_prose_wraps_to_the_width_and_loses_nothing(text, width):
    """The plain-text layout under every table and note: no line wider than the terminal (a wide character
    takes two columns), and every character but the spaces where lines break is still there, in order."""
    from toolkit.report.view import cell_len, wrap

    lines = wrap(text, width)
    assert all(cell_len(line) <= max(width, 2) for line in lines)  # a 2-column character in 1 column: alone
    assert "".join(lines).replace(" ", "") == text.replace(" ", "").replace("\n", "")


@given(st.text(alphabet=st.sampled_from("ab "), max_size=80), st.integers(min_value=2, max_value=30))
def test_no_folded_line_starts_with_a_space(text, width):
    """'... is gone too  [shown]' folded after 'too' began the next line with ' [shown]': the second of the
    two spaces was kept as the first character of the line."""
    from toolkit.report.view import wrap

    assert not any(line.startswith(" ") for line in wrap(text.strip(" "), width)[1:])


@given(st.lists(st.sampled_from(["28.0", "KiB", "0", "B", "7.5", "µs,", "µs", "KiB,", "MiB;", "word", "a"]),
                max_size=30), st.integers(min_value=9, max_value=40))
def test_a_number_and_its_unit_are_not_parted_by_a_line_break(tokens, width):
    """'Rss 152.0 KiB, Pss' folded as 'Rss 152.0' / 'KiB, Pss': a unit with its comma is still a unit."""
    from toolkit.report.view import wrap

    lines = wrap(" ".join(tokens), width)
    for upper, lower in zip(lines, lines[1:]):
        first = lower.split(" ")[0].rstrip(",;")
        assert not (upper[-1:].isdigit() and first in ("KiB", "MiB", "B", "µs")), (upper, lower)
    assert " ".join(lines).split() == " ".join(tokens).split()


def test_wide_characters_keep_the_columns_aligned():
    from toolkit.report.view import Column, Console, View, cell_len, render

    rows = [("\u4e2d\u6587-name", 4096), ("ascii-name", 8192)]
    view = View("t", (Column("name", lambda r: r[0], text=True), Column("bytes", lambda r: r[1], right=True)), rows)
    buf = io.StringIO()
    render(view, Console(file=buf, width=40))
    lines = [line for line in buf.getvalue().splitlines() if "name" in line and "\u2500" not in line][1:]
    assert len(lines) == 2 and len({cell_len(line) for line in lines}) == 1, lines


def test_views_render_whole_numbers_at_any_width():
    from toolkit.report.view import Column, Console, View, render

    rows = [(123456789, "a very long command line " * 8, 4096 * 10**6)]
    view = View("t", (Column("pid", lambda r: r[0], right=True), Column("command", lambda r: r[1], text=True),
                      Column("bytes", lambda r: r[2], right=True), Column("extra", lambda r: 7, optional=1)), rows)
    for width in (40, 60, 80, 200):
        buf = io.StringIO()
        render(view, Console(file=buf, width=width))
        out = buf.getvalue()
        assert _one_line(out, "123456789", "4096000000"), out
        assert all(len(line) <= width for line in out.splitlines())


def test_prose_moved_under_the_table_names_its_row():
    """At 80 columns `footprint --by object` moves "charged to" under the table, a line per row: each line
    must say which object it is about, not only its kind (47 lines of "library_text: charged to ...")."""
    from toolkit.report.view import Column, Console, View, render

    rows = [("library_text", "/usr/lib/x86_64-linux-gnu/libc.so.6", "/system.slice/a.service 100%"),
            ("library_data", "/usr/lib/x86_64-linux-gnu/libc.so.6", "/system.slice/b.service 100%"),
            ("library_text", "/usr/lib/x86_64-linux-gnu/libm.so.6", "/user.slice 100%")]
    view = View("t", (Column("kind", lambda r: r[0]), Column("name", lambda r: r[1], text=True, ident=True),
                      Column("bytes", lambda r: 10**12, right=True), Column("bytes 2", lambda r: 10**12, right=True),
                      Column("charged to", lambda r: r[2], text=True)), rows)
    buf = io.StringIO()
    render(view, Console(file=buf, width=60))
    flat = " ".join(buf.getvalue().split())  # the terminal folds these lines; the words are what count
    for kind, name, charged in rows:
        assert f"{kind} {name}: charged to {charged}" in flat, buf.getvalue()


def test_a_narrow_table_leaves_out_empty_columns_before_ones_that_hold_something():
    """`footprint --by cgroup` at 80 columns left out a cgroup's memfd (964 KiB) and kept columns of zeros."""
    from toolkit.report.view import Column, Console, View, render

    rows = [("/system.slice/a.service", 964 * 1024, 0, 0)]
    view = View("t", (Column("cgroup", lambda r: r[0], text=True),
                      Column("memfd", lambda r: r[1], right=True, optional=3),
                      Column("tmpfs", lambda r: r[2], right=True, optional=1),
                      Column("hugetlb", lambda r: r[3], right=True, optional=2)), rows)
    buf = io.StringIO()
    render(view, Console(file=buf, width=32))
    out = buf.getvalue()
    assert "987136" in out and "memfd" in out.splitlines()[1], out
    assert "left out at 32 columns: hugetlb;" in " ".join(out.split()), out


# ------------------------------------------------------------------ Unix citizenship


@pytest.mark.parametrize("args", [
    ["footprint"], ["footprint", "--json"], ["segments"], ["segments", "--json"], ["export", "--prometheus"],
    ["elf", LIBC], ["elf", "--json", LIBC], ["elf", "--pid", "self"], ["elf", "--aslr", "2"],
    ["compare", "--size", "1M", "--peers", "2", "--repeat", "1"], ["demo", "pic"],
    ["bench", "--sizes", "4K", "--mechanisms", "sysv", "--repeat", "2"], ["explain", "--peers", "2"], ["--help"],
    # a file that is our stdout: the archive or page to a pipe whose reader goes away
    ["snapshot", "-"], ["snapshot", "/dev/stdout"],
    ["compare", "--size", "4K", "--peers", "2", "--repeat", "1", "--json", "--html", "/dev/stdout"],
])
def test_a_closed_pipe_ends_quietly_with_status_0(args):
    if args[:2] == ["elf", "--pid"]:
        args = ["elf", "--pid", str(os.getpid())]
    p = subprocess.Popen([sys.executable, "-m", "toolkit", *args], cwd=REPO, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    p.stdout.readline()  # like `| head -1`
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 0, err
    assert "Broken pipe" not in err and "Traceback" not in err and "Exception ignored" not in err


@pytest.mark.parametrize("args", [[], ["segments", "--json"], ["footprint"], ["elf", LIBC], ["snapshot", "-"]])
def test_a_closed_stdout_is_one_line_and_status_1(args):
    # `shmkit ... >&-`: Python starts with sys.stdout None, and the first write was a traceback
    r = subprocess.run([sys.executable, "-m", "toolkit", *args], stderr=subprocess.PIPE, text=True, cwd=REPO,
                       preexec_fn=lambda: os.close(1), timeout=60)
    assert r.returncode == 1 and r.stderr == "Error: standard output is closed\n", r.stderr
    # and a closed stderr loses the message, not the exit status
    r = subprocess.run([sys.executable, "-m", "toolkit", "footprint", "999999999"], stdout=subprocess.PIPE,
                       cwd=REPO, preexec_fn=lambda: os.close(2), timeout=60)
    assert r.returncode == 1 and r.stdout == b""


@pytest.mark.parametrize("unbuffered", ["1", ""])
@pytest.mark.parametrize("args", [[], ["segments"], ["footprint", "--json"], ["elf", LIBC], ["snapshot", "-"],
                                  ["footprint", "--watch", "1", "--json"]])
def test_a_full_stdout_is_one_line_naming_it_and_status_1(args, unbuffered):
    """`shmkit ... > /dev/full` (or a full disk): buffered, the failed write left data that Python's flush at
    exit tried again ("Exception ignored in: <stdout>", status 120); unbuffered, the line named no file."""
    env = {**os.environ, "PYTHONUNBUFFERED": unbuffered}
    with open("/dev/full", "wb") as full:
        r = subprocess.run([sys.executable, "-m", "toolkit", *args], stdout=full, stderr=subprocess.PIPE, text=True,
                           cwd=REPO, env=env, timeout=60)
    assert r.returncode == 1 and r.stderr == "Error: cannot write standard output: No space left on device\n", \
        (r.returncode, r.stderr)


def test_an_output_file_in_a_removed_current_folder_is_refused_before_the_run(tmp_path):
    """The shell still in a folder that was removed: getcwd() fails, and 'snapshot x.tar.gz' or '--html x'
    said only 'Error: No such file or directory', naming nothing (compare's after its whole run)."""
    gone = tmp_path / "gone"
    gone.mkdir()
    run = "from toolkit.cli.main import main; main()"  # -c: no sys.path entry made from the current folder
    for args in (["snapshot", "x.tar.gz"], ["compare", "--size", "4K", "--peers", "2", "--html", "x.html"],
                 ["bench", "--sizes", "4K", "--csv", "x.csv"], ["explain", "--markdown", "x.md"]):
        script = f'cd "{gone}" && rmdir "{gone}" && code="$1" && shift && exec "$0" -c "$code" "$@"'
        r = subprocess.run(["sh", "-c", script, sys.executable, run, *args], capture_output=True, text=True,
                           timeout=60, env={**os.environ, "PYTHONPATH": REPO})
        gone.mkdir()
        assert r.returncode == 2 and "which no longer exists" in r.stderr, (args, r.stderr)
        assert len(r.stderr.splitlines()) == 1, r.stderr


def test_too_few_descriptors_is_one_line_naming_the_limit():
    import resource

    def few():
        resource.setrlimit(resource.RLIMIT_NOFILE, (12, 12))

    r = subprocess.run([sys.executable, "-m", "toolkit", "compare", "--size", "4K", "--peers", "2", "--repeat", "1"],
                       capture_output=True, text=True, cwd=REPO, preexec_fn=few, timeout=60)
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r.stderr
    assert "Too many open files" in r.stderr and "RLIMIT_NOFILE" in r.stderr and "12" in r.stderr


def _read_only_dev_shm():
    """preexec_fn: a mount namespace of its own whose /dev/shm is an empty read-only tmpfs."""
    libc = ctypes.CDLL(None, use_errno=True)
    MS_RDONLY, MS_REC, MS_PRIVATE = 1, 0x4000, 0x40000
    if libc.unshare(0x00020000) != 0 or libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        os._exit(97)
    if libc.mount(b"tmpfs", b"/dev/shm", b"tmpfs", MS_RDONLY, None) != 0:
        os._exit(98)


def test_a_read_only_dev_shm_is_named_and_does_not_hide_behind_cleanup():
    if os.geteuid() != 0:
        pytest.skip("a mount namespace with a read-only /dev/shm is made as root here")
    r = subprocess.run([sys.executable, "-m", "toolkit", "compare", "--size", "64K", "--peers", "2", "--repeat", "1"],
                       capture_output=True, text=True, cwd=REPO, preexec_fn=_read_only_dev_shm, timeout=120)
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r.stderr
    # the failure itself, not the cleanup's unlink of a name that was never made (EROFS too)
    assert "cannot create a POSIX object in /dev/shm" in r.stderr and "Read-only file system" in r.stderr


def test_an_address_space_limit_is_named_before_or_at_the_failing_attach():
    import resource

    def limited():
        resource.setrlimit(resource.RLIMIT_AS, (120 << 20, resource.RLIM_INFINITY))

    def compare(size):
        return subprocess.run([sys.executable, "-m", "toolkit", "compare", "--size", size, "--peers", "2",
                               "--repeat", "1"], capture_output=True, text=True, cwd=REPO, preexec_fn=limited,
                              timeout=120)

    r = compare("64M")  # both regions alone exceed it: refused before a peer starts
    assert r.returncode == 1 and "each peer maps both regions" in r.stderr and "RLIMIT_AS" in r.stderr, r.stderr
    r = compare("58M")  # fits on paper, not with the interpreter's own mappings: the attach says why
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r.stderr
    assert "Cannot allocate memory" in r.stderr and "RLIMIT_AS, ulimit -v" in r.stderr, r.stderr


def test_no_arguments_prints_the_help():
    r = run_shmkit()
    assert r.returncode == 0 and r.stdout.startswith("Usage: shmkit") and "compare" in r.stdout
    assert len(r.stdout.splitlines()) > 10 and r.stderr == ""


@pytest.mark.parametrize("args, needle", [
    (["bench", "--repeat", "0"], "at least 1"), (["compare", "--repeat", "0"], "at least 1"),
    (["bench", "--mechanisms", ""], "none given"), (["bench", "--pin", "99"], "CPU 99"),
    (["bench", "--plot", "x.txt"], ".png"), (["elf", "--pid", "1", "--aslr", "3"], "--pid and --aslr"),
    (["demo", "lifetime", "--library", "libz.so.1"], "--library applies"), (["footprint", "--by", "x"], "--by"),
    (["footprint", "--no-pfns"], "--by cgroup and --by object"),
    (["footprint", "--by", "cgroup", "--watch", "1"], "--watch shows"),
    (["footprint", "--by", "library", "--watch", "1"], "--watch shows"),
    (["segments", "--watch", "1", "--from", "x.tar.gz"], "snapshot (--from) never changes"),
    (["footprint", "--by", "user", "--sort", "pid"], "--sort pid does not apply to --by user"),
    (["footprint", "--by", "cgroup", "--sort", "rss"], "--sort rss does not apply to --by cgroup"),
    (["footprint", "--by", "library", "--sort", "pss"], "--sort pss does not apply"),
    (["compare", "--size", "0"], "must be positive"), (["elf", "--pid", "-5"], "x>=1"),
    (["footprint", "0"], "x>=1"),
    (["footprint", "--watch", "nan"], "from 0.1 to 86400"), (["segments", "--watch", "inf"], "from 0.1 to 86400"),
    (["footprint", "--watch", "0.001"], "from 0.1 to 86400"),
    # an empty name (an unset shell variable) once read as 'not given': --from "" reported this machine
    *[(args, "an empty name") for args in (
        ["footprint", "--from", ""], ["segments", "--root", ""], ["export", "--prometheus", ""], ["snapshot", ""],
        ["compare", "--html", ""], ["compare", "--library", ""], ["bench", "--csv", ""], ["bench", "--plot", ""],
        ["demo", "pic", "--library", ""], ["explain", "--markdown", ""])],
    # an output file whose folder is missing is refused before the run, not after it
    (["explain", "--markdown", "/nonexistent/x.md"], "its folder does not exist"),
    (["bench", "--csv", "/nonexistent/x.csv"], "its folder does not exist"),
    (["compare", "--html", "/nonexistent/x.html"], "its folder does not exist"),
    # '-' once quietly became a file named '-' in the current folder
    *[(args, "'-' is not standard output here") for args in (
        ["bench", "--csv", "-"], ["explain", "--markdown", "-"], ["compare", "--html", "-"])],
    (["snapshot", "x.zip"], "a snapshot is a tar archive"),
])
def test_usage_errors_exit_2_before_anything_runs(args, needle):
    t0 = time.monotonic()
    r = run_shmkit(*args)
    assert r.returncode == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert time.monotonic() - t0 < 10  # refused at once, not after measuring


def test_as_nobody_an_unwritable_folder_is_refused_before_the_run_and_snapshot_dash_writes_a_roots_pipe(nobody_env):
    """A folder this user may not write was found out only when the run was over ("cannot write ...:
    Permission denied" after a whole bench). And `snapshot -` opened /dev/stdout anew, which a pipe of
    another user's (made by root's shell, as under sudo -u) refuses: it writes fd 1 now."""
    import io
    import tarfile
    import tempfile

    folder = tempfile.mkdtemp(prefix="shmkit-test-")  # root's, 0700 by mkdtemp: 0755 lets nobody in, not write
    os.chmod(folder, 0o755)
    try:
        for args in (["compare", "--size", "4K", "--peers", "2", "--html", f"{folder}/x.html"],
                     ["bench", "--sizes", "4K", "--csv", f"{folder}/x.csv"], ["snapshot", f"{folder}/s.tar.gz"]):
            t0 = time.monotonic()
            r = run_as_nobody(nobody_env, *args)
            assert r.returncode == 2 and "its folder may not be written by this user" in r.stderr, (args, r.stderr)
            assert r.stdout == "" and time.monotonic() - t0 < 10, args  # refused at once, nothing measured
        r = subprocess.run([nobody_env["python"], "-m", "toolkit", "snapshot", "-"], env=nobody_env["env"],
                           user=65534, group=65534, extra_groups=[], cwd=nobody_env["cwd"], capture_output=True,
                           timeout=120)
        assert r.returncode == 0 and r.stderr.decode().startswith("standard output: "), r.stderr
        assert "host/proc/self/status" in tarfile.open(fileobj=io.BytesIO(r.stdout)).getnames()
    finally:
        shutil.rmtree(folder)


# ------------------------------------------------------------------ odd files and processes


def test_elf_refuses_a_fifo_without_opening_it(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    r = run_shmkit("elf", str(fifo), timeout=20)  # opening it for reading would block forever
    assert r.returncode == 1 and "is a FIFO" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run_shmkit("elf", "/dev/null", timeout=20)
    assert r.returncode == 1 and "character device" in r.stderr


def test_a_library_that_is_not_a_regular_file_is_refused_without_opening_it(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for args in (["demo", "globals", "--library", str(fifo)], ["compare", "--library", "/dev/zero"],
                 ["bench", "--sizes", "4K", "--mechanisms", "dso", "--library", str(fifo)]):
        r = run_shmkit(*args, timeout=30)  # opening the FIFO to read its header would block forever
        assert r.returncode == 1 and "not a regular file, so not a shared library" in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1


def test_library_names_are_searched_in_this_machines_multiarch_folders(monkeypatch):
    from toolkit.mechanisms import dso

    monkeypatch.setattr(sys.implementation, "_multiarch", "aarch64-linux-gnu", raising=False)
    assert dso._library_dirs()[:2] == ("/usr/lib/aarch64-linux-gnu", "/lib/aarch64-linux-gnu")
    monkeypatch.undo()
    found = dso.resolve_library("libz.so.1")  # the loader's own answer is the oracle
    loaded = ctypes.CDLL("libz.so.1")
    with open("/proc/self/maps") as f:
        paths = {line.split()[-1] for line in f if "libz.so" in line}
    assert found in {os.path.realpath(p) for p in paths}, (found, paths)
    del loaded


def test_elf_goes_on_past_every_bad_path_and_escapes_what_files_hold(tmp_path):
    from elfgen import make_elf

    interp = b"/lib\x1b]0;owned\x07\n/ld.so\0"
    segments = [("LOAD", 0, 0, 0x1800, 0x1800, 5, 0x1000), ("LOAD", 0x1F00, 0x2F00, 0x200, 0x400, 6, 0x1000),
                ("INTERP", 0x1600, 0x1600, len(interp), len(interp), 4, 1)]
    blob = bytearray(make_elf(64, True, 62, segments=segments))
    blob[0x1600:0x1600 + len(interp)] = interp
    assert blob[0x2201:0x2206] == b".text"
    blob[0x2201:0x2206] = b"\x1b[2J\n"  # a section name that would clear the screen
    odd = os.path.join(os.fsencode(tmp_path), b"lib\xff\nodd.so")
    with open(odd, "wb") as f:
        f.write(blob)
    os.symlink(tmp_path / "loop-b", tmp_path / "loop-a")
    os.symlink(tmp_path / "loop-a", tmp_path / "loop-b")
    bad = [str(tmp_path / "loop-a"), os.path.join(LIBC, "x"), "/" + "n" * 300]
    r = subprocess.run([sys.executable, "-m", "toolkit", "elf", *bad, odd, LIBC], capture_output=True,
                       cwd=REPO, timeout=60, env={**os.environ, "COLUMNS": "200"})
    out, err = r.stdout.decode(), r.stderr.decode()
    assert r.returncode == 1
    assert b"\x1b" not in r.stdout + r.stderr  # nothing the files or names hold reaches the terminal raw
    lines = err.splitlines()
    assert len(lines) == 3, err  # one line per bad path, and the batch went on
    assert "Too many levels of symbolic links" in lines[0] and "Not a directory" in lines[1]
    assert "too long" in lines[2]
    assert out.count("Program Headers:") == 2 and LIBC in out
    assert "lib\\xff\\nodd.so" in out and "Interpreter: /lib\\x1b]0;owned\\x07\\n/ld.so" in out
    assert re.search(r"   00     \\x1b\[2J\\n\n", out), out
    docs = json.loads(subprocess.run([sys.executable, "-m", "toolkit", "elf", "--json", odd, LIBC],
                                     capture_output=True, cwd=REPO, timeout=60).stdout)
    assert docs[0]["path"].endswith("lib\\xff\\nodd.so") and docs[1]["path"] == LIBC


def test_output_files_are_replaced_whole_and_devices_fifos_and_links_stay_what_they_are(tmp_path):
    import stat
    import threading

    from toolkit.outfile import replacing

    kept = tmp_path / "kept.prom"
    kept.write_text("old\n")
    os.chmod(kept, 0o640)
    with pytest.raises(RuntimeError):
        with replacing(str(kept)) as f:
            f.write(b"half of a new")
            raise RuntimeError("the writer failed")
    assert kept.read_text() == "old\n" and os.listdir(tmp_path) == ["kept.prom"]  # no .part left
    r = run_shmkit("export", "--prometheus", str(kept))
    assert r.returncode == 0 and "shmkit_segments_complete" in kept.read_text()
    assert stat.S_IMODE(os.stat(kept).st_mode) == 0o640  # the file's own mode survives
    link = tmp_path / "latest.prom"
    link.symlink_to(kept)
    assert run_shmkit("export", "--prometheus", str(link)).returncode == 0
    assert link.is_symlink() and "shmkit_segments_complete" in kept.read_text()

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()))
    reader.start()
    r = run_shmkit("export", "--prometheus", str(fifo), timeout=60)
    reader.join(30)
    assert r.returncode == 0 and b"shmkit_segments_complete" in got[0] and stat.S_ISFIFO(os.stat(fifo).st_mode)

    # a FIFO nobody reads is waited for a limited time, and the error says what was missing
    from toolkit.outfile import _open_fifo

    t0 = time.monotonic()
    with pytest.raises(OSError, match="no process opened it for reading in 0.3 s"):
        _open_fifo(str(fifo), wait_s=0.3)
    assert 0.3 <= time.monotonic() - t0 < 5

    # every output file goes through the one writer: CSV, plot and hand-out too
    got.clear()
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()))
    reader.start()
    r = run_shmkit("bench", "--sizes", "4K", "--mechanisms", "sysv", "--repeat", "3", "--csv", str(fifo), timeout=120)
    reader.join(30)
    assert r.returncode == 0 and got[0].startswith(b"mechanism,size_bytes,phase,") and stat.S_ISFIFO(os.stat(fifo).st_mode)

    if os.geteuid() != 0:
        pytest.skip("making a device node (a copy of /dev/full) needs root")
    full = tmp_path / "full"
    os.mknod(full, stat.S_IFCHR | 0o666, os.makedev(1, 7))
    for args in (["export", "--prometheus", str(full)], ["snapshot", str(full)],
                 ["explain", "--peers", "2", "--markdown", str(full)]):
        r = run_shmkit(*args)
        assert r.returncode == 1 and r.stderr.strip() == f"Error: cannot write {full}: No space left on device"
        assert stat.S_ISCHR(os.stat(full).st_mode)  # a rename would have put a plain file in its place
    snap = subprocess.run([sys.executable, "-m", "toolkit", "snapshot", "/dev/stdout"], capture_output=True,
                          cwd=REPO, timeout=120)
    assert snap.returncode == 0 and snap.stdout[:2] == b"\x1f\x8b" and b"processes" in snap.stderr


def test_a_locale_that_is_not_utf8_gets_ascii_not_a_traceback():
    sleeper = subprocess.Popen(["bash", "-c", 'exec -a "café-µ" sleep 60'])
    try:
        time.sleep(0.3)
        env = {**os.environ, "PYTHONIOENCODING": "ascii", "COLUMNS": "120"}
        r = run_shmkit("footprint", str(sleeper.pid), env=env)
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
        assert "caf\\xe9-u" in r.stdout and "-" * 40 in r.stdout  # the name escaped, the rule in ASCII
        r = run_shmkit("segments", env=env)
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_truncated_library_says_so_and_claims_nothing_it_cannot_know(tmp_path):
    cut = tmp_path / "libc-cut.so"
    cut.write_bytes(open(LIBC, "rb").read(3000))
    r = run_shmkit("elf", str(cut))
    assert r.returncode == 1
    assert re.search(r"truncated: LOAD \d\d ends at 0x[0-9a-f]+, the file has 3000 bytes", r.stderr), r.stderr
    assert "Program Headers:" in r.stdout  # what the headers say is still shown
    hazards = r.stdout.split("Hazards:")[1]
    for verdict in ("text relocations", "position independent", "RELRO"):
        line = next(ln for ln in hazards.splitlines() if verdict in ln)
        assert "unknown" in line, line
    d = json.loads(run_shmkit("elf", "--json", str(cut)).stdout)
    assert d["textrel"] is None and d["relro"] is None and d["pic"] is None and d["truncated"]
    full = json.loads(run_shmkit("elf", "--json", LIBC).stdout)
    assert full["textrel"] is False and full["relro"] in ("partial", "full") and full["truncated"] is None


def test_a_pid_given_twice_or_a_threads_id_is_counted_once():
    script = "import threading, time, os, sys; threading.Thread(target=time.sleep, args=(30,), daemon=True).start(); " \
             "print(' '.join(os.listdir('/proc/self/task')), flush=True); sys.stdin.read()"
    p = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        tid = next(int(t) for t in p.stdout.readline().split() if int(t) != p.pid)
        alone = json.loads(run_shmkit("footprint", "--json", str(p.pid)).stdout)
        twice = json.loads(run_shmkit("footprint", "--json", str(tid), str(p.pid), str(p.pid)).stdout)
        assert [r["pid"] for r in twice["processes"]] == [p.pid]  # a thread's id is its process's memory
        assert twice["totals"]["rss_bytes"] == twice["processes"][0]["rss_bytes"] > 0
        assert abs(twice["totals"]["rss_bytes"] - alone["totals"]["rss_bytes"]) < 1 << 20  # not doubled
    finally:
        p.stdin.close()
        p.wait(10)


def test_kernel_threads_are_counted_only_where_the_filters_would_take_them():
    kthreads = [p for p in os.listdir("/proc") if p.isdigit() and
                int(open(f"/proc/{p}/stat").read().rpartition(")")[2].split()[6]) & 0x00200000]
    if not kthreads:
        pytest.skip("no kernel thread is visible in this PID namespace")
    name = open(f"/proc/{kthreads[0]}/comm").read().strip()
    same = [p for p in kthreads if open(f"/proc/{p}/comm").read().strip() == name]

    def counted(*args):
        return json.loads(run_shmkit("footprint", "--json", *args).stdout)["kernel_threads"]

    assert counted() >= len(kthreads) - 2  # some may exit meanwhile
    assert counted("--match", "^no such command line$") == 0  # was every kernel thread on the machine
    assert counted("--user", "65534") == 0  # kernel threads are root's
    assert counted("--user", "0") >= 1
    assert counted("--match", "^\\[" + re.escape(name) + "\\]$") in range(1, len(same) + 1)


def test_zombies_and_kernel_threads_are_named():
    z = subprocess.Popen(["true"])
    deadline = time.monotonic() + 5
    while open(f"/proc/{z.pid}/stat").read().rpartition(")")[2].split()[0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    try:
        r = run_shmkit("elf", "--pid", str(z.pid))
        assert r.returncode == 1 and f"process {z.pid} is a zombie: it has no address space" in r.stderr
        d = json.loads(run_shmkit("footprint", "--json").stdout)
        assert d["zombies"] >= 1 and z.pid not in {p["pid"] for p in d["processes"]}
        kthread = next(int(p) for p in os.listdir("/proc") if p.isdigit() and
                       int(open(f"/proc/{p}/stat").read().rpartition(")")[2].split()[6]) & 0x00200000)
        r = run_shmkit("elf", "--pid", str(kthread))
        assert r.returncode == 1 and "kernel thread" in r.stderr
    finally:
        z.wait()


def test_the_ledger_says_what_it_skipped_as_the_process_view_does():
    """footprint PID --by object/cgroup printed an empty table and exited 0 for a PID that was gone, and
    said nothing of a named zombie or kernel thread: the process view makes the first an error and notes
    the others."""
    z = subprocess.Popen(["true"])
    deadline = time.monotonic() + 5
    while open(f"/proc/{z.pid}/stat").read().rpartition(")")[2].split()[0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    gone = subprocess.Popen(["true"])
    gone.wait()
    kthreads = [int(p) for p in os.listdir("/proc") if p.isdigit() and
                int(open(f"/proc/{p}/stat").read().rpartition(")")[2].split()[6]) & 0x00200000]
    try:
        for by in ("cgroup", "object"):
            d = json.loads(run_shmkit("footprint", "--by", by, "--json", str(z.pid), *map(str, kthreads[:1])).stdout)
            assert "1 zombie skipped (exited, no memory left)" in d["notes"], d
            if kthreads:
                assert "1 kernel thread skipped (no user memory)" in d["notes"], d
            r = run_shmkit("footprint", "--by", by, str(gone.pid))
            assert r.returncode == 1 and r.stderr.strip().endswith(f"process {gone.pid} does not exist (it may have "
                                                                   "exited)"), r
            assert run_shmkit("footprint", str(gone.pid)).stderr == r.stderr  # as the process view says it
    finally:
        z.wait()

# ------------------------------------------------------------------ hostile names


HOSTILE = [b"shmkit-test-new\nline", b"shmkit-test-tab\there", b"shmkit-test-esc\x1b[31mred", b"shmkit-test-\xff\xfe",
           "shmkit-test-\u202eroot".encode()]  # a right-to-left override: the row would read backwards


@pytest.fixture
def hostile_names():
    made = []
    try:
        for raw in HOSTILE:
            path = b"/dev/shm/" + raw
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            os.write(fd, b"x")
            os.close(fd)
            made.append(path)
        yield made
    finally:
        for path in made:
            os.unlink(path)


def test_hostile_names_are_escaped_in_tables_and_json(hostile_names):
    r = run_shmkit("segments", env={**os.environ, "COLUMNS": "200"})
    assert r.returncode == 0, r.stderr
    table = r.stdout
    assert "shmkit-test-new\\nline" in table and "shmkit-test-tab\\there" in table
    assert "shmkit-test-esc\\x1b[31mred" in table and "shmkit-test-\\xff\\xfe" in table
    assert "\x1b" not in table and "line" not in [ln.strip() for ln in table.splitlines()]  # no fake row
    assert "shmkit-test-\\u202eroot" in table and "\u202e" not in table
    raw = subprocess.run([sys.executable, "-m", "toolkit", "segments", "--json"], cwd=REPO, capture_output=True)
    raw.stdout.decode("utf-8")  # strictly valid UTF-8
    d = json.loads(raw.stdout)  # and strict JSON
    by_hex = {o["name_hex"]: o for o in d["posix"]}
    for name in HOSTILE:
        assert name.hex() in by_hex  # the exact bytes, beside the escaped text
        assert "\udcff" not in by_hex[name.hex()]["name"]
    assert by_hex[HOSTILE[3].hex()]["name"] == "shmkit-test-\\xff\\xfe"


# ------------------------------------------------------------------ unprivileged monitoring


def test_as_nobody_a_root_mapped_object_is_not_an_orphan_and_nothing_is_a_false_zero(nobody_env, shared):
    (s, p), pid = shared
    r = run_as_nobody(nobody_env, "segments", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    obj = next(o for o in d["posix"] if "/" + o["name"] == p.name)
    assert obj["orphan"] is None and d["complete"] is False  # root's peer maps it; nobody cannot see that
    seg = next(o for o in d["sysv"] if o["shmid"] == s.shmid)
    assert seg["orphan"] is False  # the kernel's nattch says 1
    text = run_as_nobody(nobody_env, "export", "--prometheus").stdout
    assert "shmkit_pss_complete 0" in text
    assert not re.search(r"^shmkit_pss_bytes\{.*\} 0$", text, re.M) and "shmkit_pss_bytes{" not in text
    assert re.search(r'^shmkit_orphan_unknown_objects\{kind="posix"\} [1-9]', text, re.M)
    out = run_as_nobody(nobody_env, "footprint", "--json").stdout
    assert json.loads(out)["privileged"] is False
    assert json.loads(run_shmkit("footprint", "--json").stdout)["privileged"] is (os.geteuid() == 0)


def test_as_nobody_user_and_match_leave_out_processes_they_do_not_ask_for(nobody_env):
    sleeper = subprocess.Popen(["sleep", "60"])  # root's, and unreadable to nobody
    try:
        d = json.loads(run_as_nobody(nobody_env, "footprint", "--json").stdout)
        assert d["denied"] >= 1 and d["complete"] is False  # all processes: root's are missing, and said
        for args in (["--user", "nobody"], ["--match", "^no such command line$"]):
            r = run_as_nobody(nobody_env, "footprint", "--json", *args)
            d = json.loads(r.stdout)
            # root's processes are not what was asked for: not 'missing' from the answer
            assert d["denied"] == 0 and d["complete"] is True and d["notes"] == [], (args, d["notes"])
        d = json.loads(run_as_nobody(nobody_env, "footprint", "--json", "--match", "^sleep 60$").stdout)
        assert d["denied"] >= 1 and d["complete"] is False and d["processes"] == []  # asked for, not readable
        assert any("not readable" in n for n in d["notes"])
    finally:
        sleeper.kill()
        sleeper.wait()


# ------------------------------------------------------------------ --watch


def test_watch_prints_a_json_line_per_scan_with_what_changed_and_ends_cleanly_on_ctrl_c():
    import signal

    p = subprocess.Popen([sys.executable, "-m", "toolkit", "footprint", "--watch", "0.5", "--json"], cwd=REPO,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = json.loads(p.stdout.readline())
        newcomer = subprocess.Popen(["sleep", "30"])
        try:
            later = None
            for _ in range(20):  # the newcomer shows up within a few scans, marked new
                doc = json.loads(p.stdout.readline())
                if newcomer.pid in {q["pid"] for q in doc["processes"]}:
                    later = doc
                    break
            assert later is not None and later["changes"].get(str(newcomer.pid)) == "new", later["changes"]
            assert first["time"] <= later["time"] and first["changes"] == {}
        finally:
            newcomer.kill()
            newcomer.wait()
        p.send_signal(signal.SIGINT)
        assert p.wait(timeout=10) == 0
        assert "Traceback" not in p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()


def test_watch_segments_marks_a_new_segment():
    p = subprocess.Popen([sys.executable, "-m", "toolkit", "segments", "--watch", "0.3", "--json"], cwd=REPO,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sysv = mechanisms.get("sysv")
    try:
        json.loads(p.stdout.readline())
        h = sysv.create_fresh(4096)
        try:
            for _ in range(20):
                doc = json.loads(p.stdout.readline())
                if any(o["shmid"] == h.shmid for o in doc["sysv"]):
                    break
            assert f"sysv {h.shmid}" in doc["changes"]["new"], doc["changes"]  # named, as "gone" names them
        finally:
            sysv.destroy(h)
    finally:
        p.kill()
        p.wait()


def test_watch_on_a_terminal_redraws_in_place_and_ends_on_ctrl_c():
    """On a terminal --watch redraws with rich Live: the table and its heading are drawn, the screen is
    redrawn in place (cursor moves, not a scroll of copies) and Ctrl-C ends it with status 0."""
    import pty
    import select
    import signal

    leader, follower = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", "toolkit", "footprint", "--watch", "0.3"], cwd=REPO,
                         stdin=follower, stdout=follower, stderr=follower, env={**os.environ, "COLUMNS": "100"},
                         start_new_session=True)
    os.close(follower)
    out = b""
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and out.count(b"(Ctrl-C ends)") < 3:
            if select.select([leader], [], [], 0.5)[0]:
                try:
                    out += os.read(leader, 65536)
                except OSError:
                    break
        os.killpg(p.pid, signal.SIGINT)
        assert p.wait(timeout=10) == 0
    finally:
        if p.poll() is None:
            p.kill()
        os.close(leader)
    text = out.decode("utf-8", "replace")
    assert text.count("(Ctrl-C ends)") >= 3 and "memory per process" in text and "Traceback" not in text
    assert "\x1b[" in text  # redrawn in place by cursor movement


def test_watch_keeps_rollups_open_and_follows_each_process_exactly():
    """--watch's kept descriptors: each scan gives what a fresh scan gives (a process that grows is seen
    growing, one that execs shows its new command), and a process that exits is dropped with its
    descriptor (no descriptor outlives it)."""
    from toolkit.measure.system import HeldRollups, scan_footprint

    grow = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.readline(); b = b'x' * (16 << 20); "
                             "print('grown', flush=True); sys.stdin.readline()"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    brief = subprocess.Popen(["sleep", "30"])
    changes = subprocess.Popen(["sh", "-c", "read x; exec sleep 31"], stdin=subprocess.PIPE)
    held = HeldRollups()
    try:
        time.sleep(0.3)
        first = {p.pid: p for p in scan_footprint(held=held).processes}
        assert grow.pid in held.entries and brief.pid in held.entries
        fd = held.entries[brief.pid][0]
        grow.stdin.write("\n")
        grow.stdin.flush()
        assert grow.stdout.readline().strip() == "grown"
        brief.kill()
        brief.wait()
        assert first[changes.pid].command.startswith("sh -c")
        changes.stdin.write(b"\n")
        changes.stdin.flush()
        time.sleep(0.3)  # it execs: a new address space under the same pid
        again = {p.pid: p for p in scan_footprint(held=held).processes}
        assert again[changes.pid].command == "sleep 31"  # the kept descriptor failed with ESRCH: read anew
        fresh = {p.pid: p for p in scan_footprint().processes}
        assert again[grow.pid].rss == fresh[grow.pid].rss >= first[grow.pid].rss + (16 << 20)
        assert brief.pid not in again and brief.pid not in held.entries
        assert not os.path.exists(f"/proc/self/fd/{fd}") or os.readlink(f"/proc/self/fd/{fd}") != \
            f"/proc/{brief.pid}/smaps_rollup"
    finally:
        held.close()
        for p in (grow, brief, changes):
            p.kill()
            p.wait()
    assert held.entries == {}


def test_watch_remembers_kernel_threads_until_they_exit():
    """A kernel thread has no rollup; --watch keeps a descriptor of its /proc/PID instead of finding it
    out again every scan, and lets it go (the pid looked at anew) once the thread has exited."""
    from toolkit.measure.system import HeldRollups, scan_footprint
    from toolkit.proc.fs import default_fs

    if default_fs().task_state(2) != "kernel thread":
        pytest.skip("kthreadd (pid 2) is not visible: not in the first pid namespace")
    held = HeldRollups()
    try:
        first = scan_footprint(held=held)
        assert 2 in held.kernel and 2 not in held.entries and first.kernel_threads >= 1
        assert scan_footprint(held=held).kernel_threads >= 1 and 2 in held.kernel
        # a thread that exits: stood in for by a process whose /proc/PID descriptor is kept the same way
        brief = subprocess.Popen(["sleep", "30"])
        held.kernel[brief.pid] = os.open(f"/proc/{brief.pid}", os.O_RDONLY | os.O_DIRECTORY)
        assert held.read(default_fs(), brief.pid) is HeldRollups.KERNEL_THREAD
        brief.kill()
        brief.wait()
        assert held.read(default_fs(), brief.pid) is None and brief.pid not in held.kernel
    finally:
        held.close()
    assert held.kernel == {} and held.entries == {}


def test_stories_fold_at_the_width_on_a_terminal_and_stay_one_line_in_a_pipe():
    from toolkit.records import Step, Story
    from toolkit.report.story import render_text

    evidence = ("/usr/lib/x86_64-linux-gnu/libc.so.6: its rw-p mapping has 3 of 7 pages still the page cache's "
                "(Shared_Clean 12288 bytes) and one write made Private_Dirty 16384 -> 20480 bytes",)
    story = Story("s", "A title", (Step("A claim long enough to need a second line at eighty columns, and then some "
                                        "more words", evidence, True),), "a verdict " * 12)
    folded = io.StringIO()
    render_text(story, folded, width=80)
    lines = folded.getvalue().splitlines()
    assert all(len(line) <= 80 for line in lines) and lines[3].startswith("1. A claim")
    assert "".join(folded.getvalue().split()) == "".join(
        f"A title======={'1. '}{story.steps[0].claim}[shown]{evidence[0]}Verdict: {story.verdict}".split())
    piped = io.StringIO()
    render_text(story, piped)  # not a terminal: a line per claim and per piece of evidence, for grep
    assert f"     {evidence[0]}" in piped.getvalue().splitlines()


def test_watch_segments_names_who_attached_and_detached_since_the_last_scan():
    """A segment that was there both times: the pids that began or stopped mapping it are the change (in
    the JSON record and in the table's change column), not only segments that appeared or went."""
    from toolkit.measure.watch import segment_change, segments_changes
    from toolkit.measure.system import scan_segments

    sysv = mechanisms.get("sysv")
    h = sysv.create_fresh(4096)
    p = subprocess.Popen([sys.executable, "-m", "toolkit", "segments", "--watch", "0.3", "--json"], cwd=REPO,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def first_change(kind):  # within 30 scans (9 s), never an endless read of the watch's output
        for _ in range(30):
            line = p.stdout.readline()
            assert line, f"segments --watch ended: {p.stderr.read()}"
            found = json.loads(line)["changes"][kind]
            if found:
                return found
        raise AssertionError(f"no {kind} change in 30 scans")

    try:
        with PeerGroup(2) as peers:
            assert any(o["shmid"] == h.shmid for o in json.loads(p.stdout.readline())["sysv"])
            before = scan_segments()
            peers.call_all("attach", region="s", handle=h.to_json())
            attached = first_change("attached")
            assert attached == {f"sysv {h.shmid}": sorted(q.pid for q in peers)}, attached
            middle = scan_segments()
            ch = segments_changes(before, middle)
            seg = next(o for o in middle.sysv if o.shmid == h.shmid)
            assert segment_change(seg, ch) == " ".join(f"+{q}" for q in sorted(q.pid for q in peers))
            assert segment_change(seg, ch, most=1) == f"+{min(q.pid for q in peers)} (+1 more)"
            peers[1].call("detach", region="s")
            detached = first_change("detached")
            assert detached == {f"sysv {h.shmid}": [peers[1].pid]}, detached
            assert segment_change(seg, segments_changes(middle, scan_segments())) == f"-{peers[1].pid}"
    finally:
        p.kill()
        p.wait()
        sysv.destroy(h)


def test_a_writer_killed_mid_file_leaves_nothing_in_the_folder(tmp_path):
    """A file being written has no name until it is whole (O_TMPFILE): a SIGKILL of shmkit (a cgroup or
    OOM kill of the tree) during a snapshot or a page leaves no .part file behind."""
    try:
        os.close(os.open(tmp_path, os.O_TMPFILE | os.O_WRONLY, 0o600))
    except OSError as err:
        pytest.skip(f"the file system of {tmp_path} has no O_TMPFILE ({err.strerror}): a .part file is used there")
    target = tmp_path / "out.html"
    code = ("import sys, time\nfrom toolkit.outfile import replacing\n"
            f"with replacing({str(target)!r}) as f:\n"
            "    f.write(b'x' * 100000); f.flush(); print('writing', flush=True); time.sleep(60)\n")
    p = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "writing"
        assert os.listdir(tmp_path) == []  # nothing named while it is being written
        p.kill()
    finally:
        p.kill()
        p.wait()
    assert os.listdir(tmp_path) == []
    from toolkit.outfile import replacing

    with replacing(str(target)) as f:
        f.write(b"whole")
    assert os.listdir(tmp_path) == ["out.html"] and target.read_bytes() == b"whole"
    assert (target.stat().st_mode & 0o777) == 0o644 & ~os.umask(os.umask(0))


def test_a_library_whose_path_is_not_utf8_is_shown_escaped_everywhere(tmp_path):
    """--library, elf --aslr and --pid, footprint --by library: the path is anyone's bytes. Nothing is
    written raw to the terminal, no JSON carries a lone surrogate (\\udcff) that strict parsers refuse,
    and no hand-out ends in a UnicodeEncodeError after the whole run."""
    folder = os.path.join(os.fsencode(tmp_path), b"odd\xffdir")
    os.mkdir(folder)
    lib = os.path.join(folder, b"libodd.so")
    shutil.copy(os.path.join(LIBDIR, "libz.so.1"), lib)
    os.chmod(tmp_path, 0o755)
    env = {**os.environ, "COLUMNS": "100", "LC_ALL": "C.UTF-8"}

    def run(*args):
        r = subprocess.run([sys.executable, "-m", "toolkit", *args], capture_output=True, cwd=REPO, timeout=180,
                           env=env)
        assert r.returncode == 0 and b"Traceback" not in r.stderr, (args, r.stderr[-400:])
        r.stdout.decode("utf-8")  # strict: no raw 0xff reached the terminal
        assert b"\\udc" not in r.stdout, args
        text = r.stdout.decode()
        # JSON escapes the backslash: the same \\xff the table shows; a table must show it once, not twice
        return text.replace("\\\\", "\\") if "--json" in args else text

    page, notes = tmp_path / "p.html", tmp_path / "n.md"
    for args in (["compare", "--size", "4K", "--peers", "2", "--repeat", "1", "--html", str(page)],
                 ["demo", "globals"], ["explain", "--peers", "2", "--markdown", str(notes)]):
        text = run(*args, "--library", lib)
        assert "odd\\xffdir" in text, args
        assert "odd\\xffdir" in run(*args[:1], *(a for a in args[1:] if a not in (str(page), str(notes))
                                                  and a not in ("--html", "--markdown")), "--json", "--library", lib)
    for f in (page, notes):
        assert "odd\\xffdir" in f.read_bytes().decode("utf-8")
    assert "odd\\xffdir" in run("elf", "--aslr", "2", lib) and "odd\\xffdir" in run("elf", "--aslr", "2", "--json", lib)
    loader = subprocess.Popen([sys.executable, "-c", "import ctypes, sys, time; ctypes.CDLL(sys.argv[1]); "
                               "print('up', flush=True); time.sleep(60)", lib], stdout=subprocess.PIPE, text=True)
    try:
        assert loader.stdout.readline().strip() == "up"
        for args in (["footprint", "--by", "library"], ["footprint", "--by", "library", "--json"],
                     ["footprint", "--by", "object", "--json"], ["elf", "--pid"], ["elf", "--json", "--pid"]):
            assert "odd\\xffdir" in run(*args, str(loader.pid)), args
    finally:
        loader.kill()
        loader.wait()


def test_a_newline_in_a_mapped_name_is_the_files_own_byte(tmp_path):
    """maps writes a newline in a name as \\012; the name shmkit keeps is the file's (to open it, and for
    name_hex), shown as \\n like the /dev/shm listing shows it."""
    folder = tmp_path / "new\nline"
    folder.mkdir()
    lib = folder / "libnl.so"
    shutil.copy(os.path.join(LIBDIR, "libz.so.1"), lib)
    os.chmod(tmp_path, 0o755)
    loader = subprocess.Popen([sys.executable, "-c", "import ctypes, sys, time; ctypes.CDLL(sys.argv[1]); "
                               "print('up', flush=True); time.sleep(60)", str(lib)], stdout=subprocess.PIPE, text=True)
    try:
        assert loader.stdout.readline().strip() == "up"
        with open(f"/proc/{loader.pid}/maps", "rb") as f:
            assert b"new\\012line" in f.read()  # what the kernel writes
        (joined,) = json.loads(run_shmkit("elf", "--pid", str(loader.pid), "--json", "libnl").stdout)
        assert bytes.fromhex(joined["path_hex"]) == os.fsencode(lib) and "new\\nline" in joined["path"]
        d = json.loads(run_shmkit("footprint", "--by", "library", "--json", str(loader.pid)).stdout)
        assert any(bytes.fromhex(u["path_hex"]) == os.fsencode(lib) for u in d["libraries"])
        table = run_shmkit("footprint", "--by", "library", str(loader.pid), env={**os.environ, "COLUMNS": "200"}).stdout
        assert "new\\nline/libnl.so" in table
    finally:
        loader.kill()
        loader.wait()


def test_shmmni_reached_is_named_not_no_space_left_on_device():
    """shmget's ENOSPC names no limit: with kernel.shmmni segments already made (in an IPC namespace of
    our own, where the limit may be changed), the error says which limit."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare(1) to lower kernel.shmmni in a private IPC namespace")
    python = sys.executable  # a venv's own: its realpath is the base interpreter, without our packages
    script = (f"echo 1 > /proc/sys/kernel/shmmni && {python} -c 'import sysv_ipc; "
              f"sysv_ipc.SharedMemory(None, sysv_ipc.IPC_CREX, size=4096)' && "
              f"exec {python} -m toolkit compare --size 4K --peers 2 --repeat 1")
    r = subprocess.run(["unshare", "--ipc", "sh", "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "kernel.shmmni=1 segments already" in r.stderr, r.stderr


def test_root_in_a_user_namespace_is_not_called_privileged():
    """A rootless container's root has every capability in its own user namespace, and reads PFNs of 0:
    footprint said "privileged": true and the ledger dropped its physical columns without a word; a
    process outside the namespace was refused for "capabilities we lack"."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs unshare(1) and root to make a user namespace with a PID namespace")
    python = sys.executable
    inside = subprocess.run(["unshare", "--user", "--map-root-user", "--pid", "--fork", "--mount-proc", "sh", "-c",
                             f"grep CapEff /proc/self/status; {python} -m toolkit footprint --json; "
                             f"{python} -m toolkit footprint --by cgroup --json"],
                            capture_output=True, text=True, cwd=REPO, timeout=120)
    if inside.returncode != 0 and "unshare" in inside.stderr:
        pytest.skip(f"no user namespace here: {inside.stderr.strip()}")
    caps, rest = inside.stdout.split("\n", 1)
    assert int(caps.split()[1], 16) >> 21 & 1  # CAP_SYS_ADMIN, in its own namespace
    decoder = json.JSONDecoder()
    foot, at = decoder.raw_decode(rest)
    ledger, _ = decoder.raw_decode(rest[at:].lstrip())
    assert foot["privileged"] is False and ledger["privileged"] is False
    assert any("rootless container" in n and "CAP_SYS_ADMIN on the host" in n for n in ledger["notes"]), ledger
    outside = subprocess.run(["unshare", "--user", "--map-root-user", python, "-m", "toolkit", "footprint", "1"],
                             capture_output=True, text=True, cwd=REPO, timeout=60)
    assert outside.returncode == 1 and "root only inside a user namespace" in outside.stderr, outside.stderr


def test_a_dev_shm_out_of_inodes_is_named_not_no_space_left():
    """A tmpfs with bytes to spare and no inode left (nr_inodes) fails shm_open with ENOSPC, which reads as
    'full': compare's error and segments' note say it is the inodes. Made in a mount namespace of our
    own, so the host's /dev/shm is untouched."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare(1) for a private /dev/shm")
    python = sys.executable  # a venv's own: its realpath is the base interpreter, without our packages
    script = ("mount -t tmpfs -o size=64m,nr_inodes=3 tmpfs /dev/shm && touch /dev/shm/a /dev/shm/b && "
              f"{python} -m toolkit segments --json; {python} -m toolkit compare --size 4K --peers 2 --repeat 1")
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
    notes = json.loads(r.stdout)["notes"]
    assert any("has no inode left" in n and "nr_inodes" in n for n in notes), notes
    assert "every inode of /dev/shm is in use" in r.stderr, r.stderr


def test_a_dev_shm_that_is_not_a_tmpfs_is_said_to_be_one_of_disk_files():
    """In a chroot or a minimal container /dev/shm can be a plain folder of the root file system:
    shm_open still works, but the objects are disk files and the size shown is the disk's."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare(1) for a private /dev/shm")
    import tempfile

    folder = tempfile.mkdtemp(prefix="shmkit-test-disk-shm-")
    try:
        script = f"mount --bind {folder} /dev/shm && {sys.executable} -m toolkit segments --json"
        r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                           capture_output=True, text=True, cwd=REPO, timeout=120)
        assert r.returncode == 0, r.stderr
        notes = json.loads(r.stdout)["notes"]
        assert any(n.startswith("/dev/shm ") and "is not a tmpfs but" in n for n in notes), notes
        assert not any("not a tmpfs" in n for n in json.loads(run_shmkit("segments", "--json").stdout)["notes"])
    finally:
        os.rmdir(folder)
