"""Parsers on recorded /proc text: a Linux 6.x tree and the same process as Linux 4.9 printed it."""
import os
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from toolkit.errors import NoSuchProcess, NotFound
from toolkit.proc import ProcFS
from toolkit.proc.maps import (
    _by_columns,
    parse_maps,
    parse_smaps,
    parse_smaps_fields,
    read_maps,
    read_rollup,
    read_smaps,
    rollup_from_smaps,
)
from toolkit.proc.pagemap import decode_pagemap, read_kpagecount
from toolkit.proc.system import parse_meminfo, parse_sysvipc_shm, read_sysvipc_shm
from toolkit.records import Mapping, PageRange

DATA = os.path.join(os.path.dirname(__file__), "data")
NEW = ProcFS(os.path.join(DATA, "proc_new"))
OLD = ProcFS(os.path.join(DATA, "proc_old"))


def test_maps_line_fields():
    m = Mapping.from_line("7faf74194000-7faf74196000 rw-s 00000000 00:01 28                         /SYSV000070bd (deleted)")
    assert (m.start, m.end, m.perms, m.offset, m.device, m.inode) == (0x7FAF74194000, 0x7FAF74196000, "rw-s", 0, "00:01", 28)
    assert m.path == "/SYSV000070bd" and m.deleted and m.shared and m.size == 8192
    assert m.name == "/SYSV000070bd (deleted)"
    anon = Mapping.from_line("7ffd1000-7ffd2000 rw-p 00000000 00:00 0 ")
    assert anon.path == "" and not anon.deleted and not anon.shared
    spaced = Mapping.from_line("1000-2000 r--p 00001000 fe:00 12  /tmp/a file with spaces")
    assert spaced.path == "/tmp/a file with spaces" and spaced.offset == 0x1000


def test_recorded_maps_and_smaps_agree():
    maps = read_maps(4242, NEW)
    smaps = read_smaps(4242, NEW)
    assert [e.mapping for e in smaps] == maps
    sysv = [e for e in smaps if e.mapping.path.startswith("/SYSV")]
    assert len(sysv) == 1
    # sysv_ipc's constructor memset the 2-page segment: resident, and Private because one process maps it
    e = sysv[0]
    assert e["Rss"] == 8192 and e["Private_Dirty"] == 8192 and e["Shared_Dirty"] == 0
    assert e.get("Pss_Dirty") == 8192
    assert "sh" in e.vmflags  # VmFlags: shared mapping
    assert e["THPeligible"] in (0, 1)  # unit-less field kept as is


def test_smaps_from_old_kernel_without_pss_dirty():
    new, old = read_smaps(4242, NEW), read_smaps(4242, OLD)
    assert len(new) == len(old)
    assert all(e.get("Pss_Dirty") is None for e in old)
    assert [e["Pss"] for e in old] == [e["Pss"] for e in new]


FIELDS = ("Rss", "Pss", "Private_Dirty", "Anonymous", "Shared_Hugetlb", "Private_Hugetlb", "Pss_Dirty")


def _wanted(entries):
    return [(e.mapping, {k: v for k, v in e.fields.items() if k in FIELDS}) for e in entries]


@pytest.mark.parametrize("tree", [NEW, OLD], ids=["linux-6", "linux-4.9"])
def test_smaps_columns_equal_the_full_parse(tree):
    """The fixed-table reading of smaps gives exactly what the line-by-line parser gives, on both layouts."""
    data = tree.read_bytes(4242, "smaps")
    assert _by_columns(data, FIELDS) is not None  # the fast way was taken
    assert _wanted(parse_smaps_fields(data, FIELDS)) == _wanted(parse_smaps(data.decode()))


def test_smaps_columns_refuse_a_layout_that_is_not_a_table():
    """A mapping with one field fewer (as no kernel prints, but a hand-made or cut file may) is not read as a
    table: the regular expression reads it, mapping by mapping, still exact (the missing field counts 0)."""
    text = NEW.read_bytes(4242, "smaps").decode()
    lines = text.splitlines(keepends=True)
    cut = "".join(line for i, line in enumerate(lines) if not (line.startswith("Anonymous:") and i < 40))
    assert _by_columns(cut.encode(), FIELDS) is None
    full = [(m, {"Anonymous": 0, **f}) for m, f in _wanted(parse_smaps(cut))]
    assert _wanted(parse_smaps_fields(cut.encode(), FIELDS)) == full
    # a file cut in the middle of a mapping
    half = "".join(lines[: len(lines) // 2 + 3])
    read = _wanted(parse_smaps_fields(half.encode(), FIELDS))
    assert read[:-1] == _wanted(parse_smaps(half))[:-1]
    last = _wanted(parse_smaps(half))[-1]
    assert read[-1] == (last[0], {k: last[1].get(k, 0) for k in read[-1][1]})


def test_rollup_recorded_and_fallback_to_summing_smaps():
    rolled = read_rollup(4242, NEW)
    assert rolled.from_rollup
    fallback = read_rollup(4242, OLD)  # Linux 4.9 has no smaps_rollup
    assert not fallback.from_rollup
    summed = rollup_from_smaps(4242, read_smaps(4242, NEW))
    for key in ("Rss", "Private_Dirty", "Shared_Clean", "Swap"):
        assert fallback.get(key) == summed.get(key)
    # the recorded rollup was read a moment after smaps (the reader itself allocates): check its own form
    assert 0 < rolled.get("Pss") <= rolled.get("Rss")
    assert rolled.get("Pss_Anon") + rolled.get("Pss_File") + rolled.get("Pss_Shmem") <= rolled.get("Pss") + 4096
    assert "Size" not in rolled.fields and "Pss_Dirty" not in fallback.fields


def test_vanished_process_is_a_typed_error():
    with pytest.raises(NoSuchProcess):
        read_maps(999999, NEW)
    with pytest.raises(NotFound):
        read_sysvipc_shm(ProcFS(DATA))


def test_sysvipc_shm_recorded():
    (seg,) = read_sysvipc_shm(NEW)
    assert seg.key == 28861 and seg.shmid == 28 and seg.mode == 0o600 and seg.size == 8192
    assert seg.nattch == 1 and seg.rss == 8192 and seg.swap == 0 and not seg.marked_for_removal


def test_sysvipc_shm_without_rss_columns_and_marked_for_removal():
    text = ("       key      shmid perms       size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime      ctime\n"
            "         0      32769  1600    1048576  1200  1201      2  1000  1000  1000  1000 1700000000          0 1700000000\n")
    (seg,) = parse_sysvipc_shm(text)
    assert seg.rss is None and seg.swap is None
    assert seg.marked_for_removal and seg.mode & 0o777 == 0o600 and seg.key == 0
    assert parse_sysvipc_shm("") == []


def test_meminfo():
    info = parse_meminfo(open(os.path.join(DATA, "proc_new", "meminfo")).read())
    assert info["MemTotal"] > 0 and "Shmem" in info and info["HugePages_Total"] >= 0


def _word(pfn=0, present=True, swapped=False, file=False, excl=False, soft=False):
    return pfn | present << 63 | swapped << 62 | file << 61 | excl << 56 | soft << 55


def test_pagemap_decode_all_bits():
    words = [_word(0x1234, file=True), _word(0, present=False), _word(0x99, excl=True, soft=True),
             _word(0, present=False, swapped=True)]
    rng = decode_pagemap(1, 0x1000, struct.pack("<4Q", *words))
    assert rng.pfns_visible
    assert rng.pfns == [0x1234, None, 0x99, None]
    assert rng.present == [True, False, True, False]
    assert rng.swapped == [False, False, False, True]
    assert rng.file_or_shared_anon == [True, False, False, False]
    assert rng.exclusive == [False, False, True, False]
    assert rng.soft_dirty == [False, False, True, False]
    assert rng.distinct_pfns() == {0x1234, 0x99}


def test_pagemap_hidden_pfns_are_none_never_zero():
    # what an unprivileged reader gets: present pages with the PFN field zeroed
    rng = decode_pagemap(1, 0, struct.pack("<2Q", _word(0, excl=True), _word(0)))
    assert not rng.pfns_visible
    assert rng.pfns == [None, None] and rng.distinct_pfns() is None
    assert rng.present_count == 2


@given(st.lists(st.integers(min_value=0, max_value=(1 << 64) - 1), max_size=64))
def test_pagemap_decode_never_crashes(words):
    rng = decode_pagemap(1, 0, struct.pack(f"<{len(words)}Q", *words))
    assert len(rng) == len(words) == len(rng.pfns)
    for w, pfn in zip(words, rng.pfns):
        if pfn is not None:
            assert w >> 63 and pfn == w & PageRange.PFN_MASK


def test_kpagecount_reads_runs(tmp_path):
    counts = list(range(100, 200))
    (tmp_path / "kpagecount").write_bytes(struct.pack(f"<{len(counts)}Q", *counts))
    got = read_kpagecount([5, 3, 4, 50, 51, 99, None, 4], ProcFS(str(tmp_path)))
    assert got == {3: 103, 4: 104, 5: 105, 50: 150, 51: 151, 99: 199}


def test_parse_maps_skips_blank_lines():
    assert len(parse_maps("1000-2000 r--p 00000000 00:00 0\n\n")) == 1


def test_physical_pages_with_and_without_numpy_agree():
    """The C-speed decoding (translate masks; numpy above a size) gives what the per-page reading gives."""
    from array import array

    from toolkit.proc import pagemap
    from toolkit.records import PageRange

    words = array("Q", [
        (1 << 63) | 5, (1 << 63) | (1 << 55) | 5, (1 << 63) | (1 << 61) | 7,  # present (soft-dirty, file bits)
        (1 << 63) | (1 << 62) | 123,  # swapped: not a PFN
        0, (1 << 63) | (1 << 56) | 9, (1 << 61) | 11])  # absent; exclusive; file bit but not present
    r = PageRange(1, 0, 4096, words, True)
    assert r.pfns == [5, 5, 7, None, None, 9, None]
    assert r.distinct_pfns() == {5, 7, 9} and r.present_count == 5
    before = pagemap.NUMPY_FROM_PAGES
    try:
        for threshold in (1, 1 << 62):
            pagemap.NUMPY_FROM_PAGES = threshold
            assert pagemap.physical_pages([r, r], counts=False)[0] == 3
    finally:
        pagemap.NUMPY_FROM_PAGES = before
    hidden = PageRange(1, 0, 4096, words, False)
    assert hidden.pfns == [None] * 7 and pagemap.physical_pages([hidden]) == (None, None, None)


def test_a_snapshot_of_a_64k_page_host_is_read_in_its_own_pages(tmp_path):
    """Replaying a snapshot from an aarch64 host with 64 KiB pages on this one: pagemap is indexed and PFNs
    are counted in the recorded host's pages, never this machine's (unrecorded words would read as absent)."""
    import json

    from toolkit.proc.pagemap import read_pagemap

    page, start = 65536, 0x7F0000000000
    host = tmp_path / "host"
    (host / "proc" / "42").mkdir(parents=True)
    (host / "snapshot.json").write_text(json.dumps({"format": 1, "page_size": page}))
    present = 1 << 63
    words = struct.pack("<4Q", present | 0x1000, present | 0x1001, 0, present | 0x1000)
    (host / "proc" / "42" / "pagemap.runs.json").write_text(json.dumps({"runs": [[start // page * 8, words.hex()]]}))
    fs = ProcFS.at_host(str(host))
    assert fs.recorded and fs.page_size == page
    r = read_pagemap(42, start, start + 4 * page, fs)
    assert len(r) == 4 and r.page_size == page and r.start == start
    assert r.pfns == [0x1000, 0x1001, None, 0x1000]
    assert ProcFS().page_size == os.sysconf("SC_PAGE_SIZE")


@given(st.lists(st.tuples(st.integers(0, 40), st.binary(min_size=1, max_size=12)), max_size=12),
       st.lists(st.tuples(st.integers(0, 300), st.integers(0, 30)), min_size=1, max_size=8))
def test_recorded_runs_read_as_the_bytes_they_hold_and_zeros_between(gaps, wanted):
    """A replay's reads of pagemap, kpagecount and kpagecgroup are served from the recorded runs found by
    bisection (a scan of all runs per read made replaying 21,000 runs take 70 s): any read gives the
    recorded bytes where it overlaps runs, zeros elsewhere, as a read of the whole recorded file would."""
    import json

    from toolkit.proc.fs import _RecordedRuns

    runs, at, whole = [], 0, bytearray(1000)  # room past the last run and read
    for gap, data in gaps:  # disjoint runs, as a recorder writes them, given out of order
        at += gap
        runs.append([at, data.hex()])
        whole[at:at + len(data)] = data
        at += len(data)
    got = _RecordedRuns(json.dumps({"runs": runs[::-1]})).read(wanted)
    assert got == [bytes(whole[o:o + n]) for o, n in wanted]
    # a run inside another (a hand-made file) hides nothing of the outer one
    nested = _RecordedRuns(json.dumps({"runs": [[0, "01" * 100], [10, "02" * 10]]}))
    assert nested.read([(50, 4), (5, 10)]) == [b"\1" * 4, b"\1" * 5 + b"\2" * 5]


def test_per_pfn_words_keep_their_pfns_when_a_read_comes_back_short():
    """kpagecount/kpagecgroup words are decoded in one pass over all runs; a run read short (the end of
    the file, a damaged recording) must not shift the values of the runs after it onto other PFNs."""
    from toolkit.proc import pagemap

    class Words:  # the word of PFN p is p + 7; the run starting at PFN 20 comes back with one word and a half
        def __init__(self, short):
            self.short = short

        def read_at(self, rel, runs):
            blobs = [b"".join(struct.pack("<Q", off // 8 + i + 7) for i in range(n // 8)) for off, n in runs]
            return [b[:12] if self.short and off == 20 * 8 else b for b, (off, _) in zip(blobs, runs)]

    pfns = [3, 1, 2, 20, 21, 22, 40, 2]
    assert pagemap._read_per_pfn("kpagecount", pfns, Words(False)) == {p: p + 7 for p in set(pfns)}
    assert pagemap._read_per_pfn("kpagecount", pfns, Words(True)) == {1: 8, 2: 9, 3: 10, 20: 27, 40: 47}


def test_mountinfo_is_read_by_one_parser_with_every_field_the_views_use():
    from toolkit.proc.mounts import read_mounts

    fs = ProcFS.at_host(os.path.join(os.path.dirname(__file__), "data", "hosts", "base"))
    mounts = read_mounts("self", fs)
    shm = [m for m in mounts if m.point == "/dev/shm"]
    assert shm and shm[-1].fstype == "tmpfs" and ":" in shm[-1].device
    assert any(m.point == "/proc" and m.fstype == "proc" for m in mounts)
    assert read_mounts(999999, fs) == []  # an unreadable or missing file: nothing, not an error


def test_a_recorded_tree_names_uids_from_its_own_passwd(tmp_path):
    """--root DIR: DIR/etc/passwd names the recorded host's uids, not this machine's passwd; a uid it does not
    name stays a number; a tree with no passwd (and no snapshot names) falls back to this machine's."""
    from toolkit.proc.fs import ProcFS

    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\npg-on-a:x:65534:65534::/:/bin/false\n")
    fs = ProcFS.at_host(str(tmp_path))
    assert fs.user_name(65534) == "pg-on-a" and fs.user_name(0) == "root" and fs.user_name(4242) == "4242"
    assert fs.uid_of("pg-on-a") == 65534 and fs.uid_of("nobody") is None
    bare = tmp_path / "bare"
    bare.mkdir()
    import pwd

    assert ProcFS.at_host(str(bare)).user_name(0) == pwd.getpwuid(0).pw_name
