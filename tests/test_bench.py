"""`shmkit bench`: behaviour, not speed."""
import csv
import json
import os
import subprocess
import sys

import pytest
from conftest import REPO, run_shmkit

from toolkit.errors import BadInput, LimitExceeded
from toolkit.measure.bench import run_bench
from toolkit.measure.setup import PHASES, SECOND_PHASES
from toolkit.proc.pagemap import PAGE_SIZE
from toolkit.proc.system import read_limits, read_meminfo

SIZES = [16 << 10, 1 << 20]


@pytest.fixture(scope="module")
def result():
    return run_bench(sizes=SIZES, repeat=3)


# which phases each mechanism has once objects are marked right after attach
EXPECTED_PHASES = {
    "sysv": {"create", "attach", "mark", "first_touch", "detach"},  # the last detach frees it: no destroy
    "posix": set(PHASES),  # destroy: closing the last descriptor of the unlinked object
    "memfd": {"create", "attach", "first_touch", "detach", "destroy"},  # never named: nothing to mark
    "anon": {"attach", "first_touch", "detach"},  # no object apart from the mapping
}


def test_every_phase_present_and_positive(result):
    rows = {(r.mechanism, r.size_bytes, r.phase): r for r in result.rows}
    for size in SIZES:
        for mech in ("sysv", "posix", "memfd", "anon"):
            assert {p for (m, sz, p) in rows if m == mech and sz == size} - set(SECOND_PHASES) == EXPECTED_PHASES[mech]
            for phase in EXPECTED_PHASES[mech]:
                r = rows[(mech, size, phase)]
                assert r.median_s > 0 and r.p10_s <= r.median_s <= r.p90_s and r.min_s <= r.median_s and r.repeat == 3
        for mech in ("sysv", "posix", "memfd"):
            for phase in SECOND_PHASES:
                assert rows[(mech, size, phase)].median_s > 0
        assert (("anon", size, "second_attach")) not in rows  # nobody else can attach it
    dso = {r.phase: r for r in result.rows if r.mechanism == "dso"}
    assert {"attach", "first_touch", "detach"} <= set(dso) and all(r.median_s > 0 for r in dso.values())


def test_first_touch_faults_once_per_page(result):
    for r in result.rows:
        if r.phase == "first_touch" and r.mechanism != "dso":
            pages = r.size_bytes // PAGE_SIZE
            if result.machine["touch_method"] == "MADV_POPULATE_WRITE":
                assert pages <= r.minor_faults <= pages + 2
            else:
                assert pages * 0.9 <= r.minor_faults <= pages + 8
            assert r.ns_per_page > 0 and r.gb_per_s > 0


def test_second_process_read_through_faults(result):
    rows = {(r.mechanism, r.size_bytes, r.phase): r for r in result.rows}
    big = SIZES[-1]
    sysv, posix = rows[("sysv", big, "read_through")], rows[("posix", big, "read_through")]
    pages = big // PAGE_SIZE
    assert sysv.minor_faults == pages  # System V segments have no fault-around
    assert 1 <= posix.minor_faults < pages  # several pages per fault on a tmpfs file mapping
    assert any("fault-around" in f for f in result.findings)
    assert any(f.startswith("sysv:") and "one fault per page" in f for f in result.findings)


def test_machine_block(result):
    m = result.machine
    assert m["kernel"] and m["page_size"] == PAGE_SIZE and m["touch_method"] in ("MADV_POPULATE_WRITE", "memset")


@pytest.mark.parametrize("sizes,error", [
    ([0], BadInput), ([-4096], BadInput), ([], BadInput),
])
def test_bad_sizes(sizes, error):
    with pytest.raises(error):
        run_bench(sizes=sizes, repeat=1)


def test_sizes_that_cannot_fit_are_refused_before_anything_starts():
    lim = read_limits()
    with pytest.raises(LimitExceeded):
        run_bench(sizes=[4096, lim.dev_shm_free + (1 << 30)], repeat=1)
    with pytest.raises(LimitExceeded):
        run_bench(sizes=[lim.mem_available + (1 << 30)], mechs=("anon",), repeat=1)


def test_a_library_that_cannot_be_loaded_is_refused_before_anything_is_measured():
    """The dso rows come last: a --library that is not one was found after every other mechanism had been
    measured, seconds to minutes later."""
    for library, needle in (("no-such-lib-xyz", "no shared library named 'no-such-lib-xyz'"),
                            ("/etc/hostname",
                             "not an ELF file (text, perhaps a linker script), so not a shared library")):
        r = run_shmkit("bench", "--library", library, timeout=30)
        assert r.returncode == 1 and r.stderr.strip().endswith(needle), r.stderr
        assert len(r.stderr.splitlines()) == 1, r.stderr  # no progress: nothing was measured
    r = run_shmkit("bench", "--mechanisms", "sysv", "--library", "libc.so.6")
    assert r.returncode == 2 and "--library applies to the dso rows" in r.stderr  # not silently ignored


def test_unknown_mechanism():
    with pytest.raises(BadInput, match="unknown mechanism"):
        run_bench(sizes=[4096], mechs=("nope",), repeat=1)


def test_hugepages_refused_when_none_reserved():
    if read_meminfo().get("HugePages_Free", 0):
        pytest.skip("this machine has huge pages reserved; the refusal path cannot be shown")
    r = run_shmkit("bench", "--hugepages", "--sizes", "2M", "--mechanisms", "sysv")
    assert r.returncode == 1 and "no huge pages are reserved" in r.stderr and "Traceback" not in r.stderr


def test_hugepages_run(reserved_hugepages):
    res = run_bench(sizes=[2 << 20, 4 << 20], mechs=("sysv", "memfd", "anon"), repeat=2, huge=True)
    touch = {r.mechanism: r for r in res.rows if r.phase == "first_touch" and r.size_bytes == 2 << 20}
    for mech in ("sysv", "memfd", "anon"):
        assert touch[mech].minor_faults <= 2  # one huge page, one fault
    # findings that match their numbers: a huge page per fault is not fault-around, and amortisation
    # is claimed only where the per-page cost fell
    sysv_read = next(f for f in res.findings if f.startswith("sysv: a second process's first read"))
    assert "one fault per huge page" in sysv_read and "fault-around" not in sysv_read
    by = {(r.mechanism, r.size_bytes, r.phase): r for r in res.rows}
    for f in res.findings:
        if "amortised" in f:
            mech = f.split(":")[0]
            assert by[(mech, 2 << 20, "first_touch")].ns_per_page > by[(mech, 4 << 20, "first_touch")].ns_per_page
    with pytest.raises(BadInput, match="multiple of the huge page size"):
        run_bench(sizes=[4096], mechs=("sysv",), repeat=1, huge=True)
    with pytest.raises(BadInput, match="tmpfs"):
        run_bench(sizes=[2 << 20], mechs=("posix",), repeat=1, huge=True)
    with_dso = run_bench(sizes=[2 << 20], mechs=("anon", "dso"), repeat=2, huge=True)
    assert any("--hugepages does not apply to a library" in n for n in with_dso.notes), with_dso.notes


def test_cli_json_csv_plot_and_pin(tmp_path):
    out_csv, out_png = tmp_path / "b.csv", tmp_path / "b.png"
    r = run_shmkit("bench", "--sizes", "4K,64K", "--repeat", "2", "--mechanisms", "sysv,posix", "--pin", "0",
                   "--json", "--csv", str(out_csv), "--plot", str(out_png))
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["machine"]["pinned_cpu"] == 0 and d["machine"]["page_size"] == PAGE_SIZE
    keys = {"mechanism", "size_bytes", "phase", "median_s", "p10_s", "p90_s", "min_s", "repeat", "minor_faults"}
    assert d["results"] and all(keys <= set(x) for x in d["results"])
    assert {x["size_bytes"] for x in d["results"]} == {4096, 65536}
    rows = list(csv.DictReader(open(out_csv)))
    assert len(rows) == len(d["results"])
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_table_and_bad_input():
    r = run_shmkit("bench", "--sizes", "4K", "--repeat", "2", "--mechanisms", "sysv,anon",
                   env={**os.environ, "COLUMNS": "200"})
    assert r.returncode == 0, r.stderr
    assert "first touch" in r.stdout and "sysv" in r.stdout
    for args, needle in ((["--sizes", "0"], "must be positive"), (["--sizes", "4Q"], "cannot read size"),
                         (["--mechanisms", "sysv,bogus"], "unknown mechanism"), (["--repeat", "0"], "at least 1")):
        r = run_shmkit("bench", *args)
        assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr  # usage, as compare's


def test_every_plot_panel_has_at_least_two_labelled_times(tmp_path, monkeypatch):
    """A panel whose times lie within one decade (create: 3.9 to 6.5 µs) had one labelled tick or none on
    its log axis: its curves could not be read against anything."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from toolkit.records import BenchResult, BenchRow
    from toolkit.report.bench import plot

    times = {"create": (3.9e-6, 6.5e-6), "attach": (3.6e-6, 4.1e-6), "first_touch": (4e-6, 9e-5)}
    rows = tuple(BenchRow(mech, size, phase, t * (1.1 if mech == "posix" else 1.0), None, None, None, 3, 0, 1)
                 for phase, (a, b) in times.items() for mech in ("sysv", "posix")
                 for size, t in ((4096, a), (65536, b)))
    figures = []
    monkeypatch.setattr(plt, "close", figures.append)  # keep the figure to look at its axes
    plot(BenchResult({"kernel": "test"}, rows), str(tmp_path / "p.png"), "png")
    panels = [ax for ax in figures[0].axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["create", "attach", "first touch"]
    for ax in panels:
        lo, hi = ax.get_ylim()
        shown = {t.label1.get_text() for t in ax.yaxis.get_major_ticks() + ax.yaxis.get_minor_ticks()
                 if t.label1.get_visible() and t.label1.get_text() and lo <= t.get_loc() <= hi}
        assert len(shown) >= 2, (ax.get_title(), shown, (lo, hi))


def test_plot_without_matplotlib_says_so(tmp_path):
    code = ("import sys; sys.modules['matplotlib'] = None; from toolkit.cli.main import main; "
            f"main(['bench', '--sizes', '4K', '--plot', '{tmp_path / 'x.png'}'])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 1 and "needs matplotlib" in r.stderr and "Traceback" not in r.stderr


def test_demo_setup_cost():
    r = subprocess.run([sys.executable, "demos/setup_cost.py", "1M"], capture_output=True, text=True, cwd=REPO,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert "first touch" in r.stdout and "pages per fault" in r.stdout
