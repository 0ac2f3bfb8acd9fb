"""The /proc readers against the live kernel."""
import os
import subprocess
import sys
import time

import psutil
import pytest
from conftest import requires_root

from toolkit import vm
from toolkit.errors import NoSuchProcess
from toolkit.proc.maps import (
    find_mapping,
    has_smaps_rollup,
    read_maps,
    read_rollup,
    read_smaps,
)
from toolkit.proc.pagemap import (
    PAGE_SIZE,
    kpagecount_readable,
    probe_pfns_visible,
    read_kpagecount,
    read_pagemap,
    read_pfn_arrays,
)
from toolkit.proc.system import read_limits, read_meminfo


@pytest.fixture
def anon_region():
    """8 private pages between two PROT_NONE guard pages, so the kernel cannot merge the region
    with a neighbouring anonymous mapping."""
    n = 8
    base = vm.mmap((n + 2) * PAGE_SIZE, vm.PROT_NONE, vm.MAP_PRIVATE | vm.MAP_ANONYMOUS)
    addr = base + PAGE_SIZE
    vm.mprotect(addr, n * PAGE_SIZE, vm.PROT_READ | vm.PROT_WRITE)
    yield addr, n
    vm.munmap(base, (n + 2) * PAGE_SIZE)


def test_smaps_of_a_fresh_private_region(anon_region):
    addr, n = anon_region
    vm.write(addr, b"x")
    vm.write(addr + 2 * PAGE_SIZE, b"y")
    e = find_mapping(read_smaps("self"), addr)
    assert e.mapping.start == addr and e.mapping.size == n * PAGE_SIZE and e.mapping.perms == "rw-p"
    assert e["Rss"] == 2 * PAGE_SIZE and e["Private_Dirty"] == 2 * PAGE_SIZE and e["Anonymous"] == 2 * PAGE_SIZE


def test_pagemap_of_own_pages(anon_region):
    addr, n = anon_region
    vm.write(addr + PAGE_SIZE, b"z")
    rng = read_pagemap("self", addr, addr + n * PAGE_SIZE)
    assert len(rng) == n
    assert rng.present == [False, True] + [False] * (n - 2)
    assert rng.exclusive[1] and not rng.file_or_shared_anon[1]
    if os.geteuid() == 0:
        assert rng.pfns_visible and rng.pfns[1] and rng.pfns[0] is None


@requires_root
def test_kpagecount_of_own_page(anon_region):
    addr, _ = anon_region
    vm.write(addr, b"k")
    pfn = read_pagemap("self", addr, addr + 1).pfns[0]
    assert probe_pfns_visible() and kpagecount_readable()
    assert read_kpagecount([pfn]) == {pfn: 1}


@requires_root
def test_pfn_arrays_of_many_ranges_read_at_once_are_each_ranges_own(anon_region):
    """The ledger's one read of a process's pagemap for all its ranges gives, range by range, the PFNs a
    read of that range alone gives: unaligned ends, an empty range, an absent page (0)."""
    addr, n = anon_region
    for i in (0, 3, 7):
        vm.write(addr + i * PAGE_SIZE, b"p")
    ranges = [(addr, addr + n * PAGE_SIZE), (addr + 3 * PAGE_SIZE + 5, addr + 4 * PAGE_SIZE), (addr, addr),
              (addr + PAGE_SIZE, addr + 3 * PAGE_SIZE + 1), (addr + 7 * PAGE_SIZE, addr + n * PAGE_SIZE)]
    got = read_pfn_arrays("self", ranges)
    assert [list(a) for a in got] == [list(read_pagemap("self", lo, hi).pfn_array()) for lo, hi in ranges]
    assert got[0][0] and not got[0][1] and got[1][0] == got[0][3] and len(got[2]) == 0


def test_rollup_matches_psutil():
    rollup = read_rollup(os.getpid())
    assert rollup.from_rollup == has_smaps_rollup()
    info = psutil.Process().memory_full_info()
    # the two reads are moments apart in a running interpreter: allow a little drift
    assert abs(rollup.get("Pss") - info.pss) < 2 << 20


def test_vanished_process():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    with pytest.raises(NoSuchProcess):
        read_smaps(p.pid)
    with pytest.raises(NoSuchProcess):
        read_maps(p.pid)


def test_limits_and_meminfo():
    lim = read_limits()
    assert lim.shmmax > 0 and lim.shmall > 0 and lim.shmmni > 0 and lim.page_size == PAGE_SIZE
    assert lim.dev_shm_free is not None and lim.mem_available > 0
    assert "Shmem" in read_meminfo()


def test_smaps_columns_equal_the_full_parse_for_every_process():
    """Every readable process's live smaps, read as a table of columns and line by line: the same."""
    from toolkit.proc.maps import _by_columns, parse_smaps, parse_smaps_fields

    fields = ("Rss", "Pss", "Private_Dirty", "Anonymous", "Shared_Hugetlb", "Private_Hugetlb")
    checked = 0
    for pid in [d for d in os.listdir("/proc") if d.isdigit()]:
        try:
            with open(f"/proc/{pid}/smaps", "rb") as f:
                data = f.read()
        except OSError:
            continue
        if not data:
            continue
        assert _by_columns(data, fields) is not None, pid
        full = [(e.mapping, {k: e.fields[k] for k in fields if k in e.fields}) for e in parse_smaps(data.decode("utf-8", "surrogateescape"))]
        assert [(e.mapping, e.fields) for e in parse_smaps_fields(data, fields)] == full, pid
        checked += 1
    assert checked >= 3


def test_read_whole_gives_what_reading_to_the_end_gives():
    """One read for one-record /proc files and cmdline, reading on when the buffer comes back full: a
    command line of 100,000 bytes arrives whole, as does every smaps_rollup."""
    from toolkit.proc.fs import default_fs

    fs = default_fs()
    long_arg = "x" * 100_000
    p = subprocess.Popen([sys.executable, "-c", "import sys, time; time.sleep(30)", long_arg])
    try:
        time.sleep(0.3)
        assert fs.read_whole(p.pid, "cmdline") == fs.read_bytes(p.pid, "cmdline")
        assert long_arg.encode() in fs.read_whole(p.pid, "cmdline")
        assert fs.read_whole(p.pid, "smaps_rollup").count(b"\n") == fs.read_bytes(p.pid, "smaps_rollup").count(b"\n")
        assert fs.read_whole("self", "status").startswith(b"Name:")
    finally:
        p.kill()
        p.wait()
