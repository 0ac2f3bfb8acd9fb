"""`compare` on the live kernel: the facts the issue names, measured."""
import json
import os
import subprocess
import time

import pytest
from conftest import is_root, run_shmkit

from toolkit.errors import BadInput, LimitExceeded, NotELF, NotFound
from toolkit.measure.compare import run_compare
from toolkit.proc.pagemap import PAGE_SIZE
from toolkit.proc.system import read_limits

SIZE = 16 << 20
PEERS = 4


@pytest.fixture(scope="module")
def result():
    return run_compare(SIZE, PEERS, repeat=2)


def by(result, name):
    return next(m for m in result.mechanisms if m.mechanism == name)


def test_explicit_writes_are_seen_library_data_writes_are_not(result):
    assert by(result, "sysv").visibility.peer_sees_write is True
    assert by(result, "posix").visibility.peer_sees_write is True
    assert by(result, "dso_data").visibility.peer_sees_write is False
    assert by(result, "dso_text").visibility.peer_sees_write is None
    w = result.library_write
    assert w.symbol == "optind" and w.value_seen_by_b == w.value_before != w.value_written


@pytest.mark.parametrize("name", ["sysv", "posix"])
def test_footprint_of_a_fully_touched_region(result, name):
    f = by(result, name).footprint
    assert len(f.per_peer) == PEERS
    for p in f.per_peer:
        assert abs(p.pss - SIZE // PEERS) <= PAGE_SIZE
        assert p.rss == SIZE and p.shared_dirty + p.shared_clean == SIZE and p.uss == 0
    assert abs(f.pss_sum - SIZE) <= PEERS * PAGE_SIZE
    assert f.rss_sum == PEERS * SIZE
    assert f.kernel_bytes == SIZE
    if is_root:
        assert f.physical_bytes == SIZE
        assert f.kpagecount_min == f.kpagecount_max == PEERS
    else:
        assert f.physical_bytes is None


def test_visibility_rows(result):
    sysv, posix = by(result, "sysv").visibility, by(result, "posix").visibility
    assert sysv.maps_name.startswith("/SYSV") and sysv.maps_name.endswith("(deleted)")
    assert "/proc/sysvipc/shm" in sysv.listed_in
    assert posix.maps_name.startswith("/dev/shm/shmkit-") and posix.listed_in == ("/dev/shm",)
    assert sysv.mode == posix.mode == "0600"
    assert sysv.outlives_creator and posix.outlives_creator
    assert by(result, "dso_text").visibility.listed_in == ("/proc/PID/maps only",)


def test_setup_phases(result):
    for name in ("sysv", "posix"):
        s = by(result, name).setup
        expected = ["create", "attach", "mark", "first_touch", "detach"] + (["destroy"] if name == "posix" else [])
        assert [p.name for p in s.phases] == expected  # System V: its last detach frees it
        assert all(p.median_s > 0 and p.repeat == 2 for p in s.phases)
        touch = s.phase("first_touch")
        assert touch.minor_faults >= SIZE // PAGE_SIZE * 0.9  # one fault per page, populated
        assert s.phase("create").minor_faults < 8  # create touches nothing


def test_library_text_is_one_copy(result):
    t = result.text_sharing
    f = by(result, "dso_text").footprint
    assert t.pages > 0 and len(f.per_peer) == PEERS
    assert len(set(t.text_to_data)) == 1  # PIC: the distance between segments is fixed
    if is_root:
        assert t.same_pfns_in_all_peers is True
        assert t.kpagecount_min >= PEERS
        assert f.rss_sum / f.physical_bytes == pytest.approx(PEERS, rel=0.02)
    else:
        assert t.same_pfns_in_all_peers is None and f.physical_bytes is None


def test_library_data_is_per_process(result):
    w = result.library_write
    if is_root:
        assert w.pfn_a is not None and w.pfn_b is not None and w.pfn_a != w.pfn_b
    f = by(result, "dso_data").footprint
    assert all(p.private_dirty > 0 for p in f.per_peer)


@pytest.fixture(scope="module")
def big_data_library(tmp_path_factory):
    """A library with 64 KiB of initialised globals: most of its data pages nobody writes."""
    d = tmp_path_factory.mktemp("lib")
    src = d / "bigdata.c"
    src.write_text("int shmkit_counter = 7;\nint shmkit_table[16384] = {1, 2, 3};\n"
                   "int shmkit_get(int i) { return shmkit_table[i] + shmkit_counter; }\n")
    out = d / "libbigdata.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-o", str(out), str(src)], check=True)
    os.sync()  # smaps counts page-cache pages still dirty from the write as Private_Dirty: flush them
    return str(out)


def test_copy_on_write_of_a_clean_data_page(big_data_library):
    """Peer A writes a data page still shared with the page cache: it becomes A's own copy."""
    c = run_compare(1 << 20, 2, library=big_data_library, repeat=1)
    w = c.library_write
    if w.cow_page_offset is None:
        pytest.fail(f"no clean data page in libz: {w.note}")
    assert w.cow_file_before is True and w.cow_file_after is False
    assert w.private_dirty_after - w.private_dirty_before == PAGE_SIZE
    if is_root:
        assert w.cow_pfn_before != w.cow_pfn_after
    assert by(c, "dso_data").visibility.peer_sees_write is False
    assert w.symbol.startswith("shmkit_")


@pytest.mark.parametrize("kwargs,error", [
    (dict(size=0, peers=4), BadInput),
    (dict(size=1 << 20, peers=0), BadInput),
    (dict(size=1 << 20, peers=1), BadInput),
    (dict(size=1 << 20, peers=2, library="/etc/hostname"), NotELF),
    (dict(size=1 << 20, peers=2, library="no-such-lib-xyz"), NotFound),
])
def test_bad_requests(kwargs, error):
    with pytest.raises(error):
        run_compare(**kwargs)


def test_size_beyond_memory_is_refused():
    lim = read_limits()
    with pytest.raises(LimitExceeded):
        run_compare(lim.dev_shm_free + (1 << 30), 2)


def test_a_size_that_is_not_whole_pages_is_measured_against_the_pages_it_holds():
    from toolkit.report.compare import findings

    size = PAGE_SIZE + 904  # two pages' worth of kernel memory for a little more than one page
    c = run_compare(size=size, peers=2, repeat=1)
    for m in c.mechanisms:
        if m.mechanism in ("sysv", "posix"):
            assert m.footprint.rss_sum == 2 * 2 * PAGE_SIZE  # each of 2 peers maps both pages
    lines = [ln for ln in findings(c) if "Rss counts" in ln]
    assert len(lines) == 2 and all("the region's 2 pages 2.0 times over 2 peers" in ln for ln in lines), lines
    assert all("Pss sums to 1.00 x" in ln for ln in lines), lines
    shmem = next(ln for ln in findings(c) if ln.startswith("/proc/meminfo Shmem"))
    grew = c.shmem_during - c.shmem_before
    assert (grew == 2 * 2 * PAGE_SIZE) or "lags" in shmem, shmem  # the kernel's per-CPU batches, said
    # the table says the size asked for, not "4.0 KiB" beside an Rss of two pages
    import io

    from toolkit.report.compare import render
    from toolkit.report.view import Console

    buf = io.StringIO()
    render(c, Console(file=buf, width=200))
    table = buf.getvalue()
    assert f"{size} B regions" in table, table
    region = next(ln for ln in table.splitlines() if ln.strip().startswith("region "))
    assert region.count(f"{size} B") == 2, region


@pytest.mark.slow
def test_a_witness_tool_that_never_answers_is_not_waited_on_for_ever(tmp_path):
    """`ipcs -m` is asked as a second witness of where a segment is listed; one that hangs (a wrapper, a
    broken /proc) is given up on, and compare ends with the kernel's own listing as evidence."""
    fake = tmp_path / "ipcs"
    fake.write_text("#!/bin/sh\nexec sleep 600\n")
    fake.chmod(0o755)
    t0 = time.monotonic()
    r = run_shmkit("compare", "--size", "4K", "--peers", "2", "--repeat", "1", "--json", timeout=120,
                   env={**os.environ, "PATH": f"{tmp_path}:{os.environ.get('PATH', '/usr/bin:/bin')}"})
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - t0 < 90
    listed = json.loads(r.stdout)["mechanisms"]["sysv"]["visibility"]["listed_in"]
    assert listed == ["/proc/sysvipc/shm"], listed  # the kernel's listing; the silent witness left out
