"""`shmkit bench`: every mechanism's setup phases across sizes, with spread and faults."""
from __future__ import annotations

import os
import platform

from toolkit import mechanisms, vm
from toolkit.errors import BadInput, LimitExceeded
from toolkit.measure.janitor import Janitor
from toolkit.measure.peer import PeerGroup
from toolkit.measure.sandbox import run_isolated
from toolkit.measure.setup import Samples, owner_phases, second_phases
from toolkit.proc.system import memory_bound, read_limits, read_meminfo
from toolkit.records import PHASES_NOTE, BenchResult, BenchRow, Phase
from toolkit.report.view import escape  # a library's path is anyone's bytes
from toolkit.units import counted, size_words

DEFAULT_SIZES = (4 << 10, 64 << 10, 1 << 20, 16 << 20, 256 << 20)
EXPLICIT = ("sysv", "posix", "memfd", "anon")
ALL = EXPLICIT + ("dso",)
# a function of no arguments to make the "first call" with
KNOWN_CALLS = {"libsqlite3.so": "sqlite3_libversion", "libyaml-0.so": "yaml_get_version_string",
               "libz.so": "zlibVersion", "libbz2.so": "BZ2_bzlibVersion", "liblzma.so": "lzma_version_number"}


def calibrated_repeat(size: int) -> int:
    """More repetitions for small sizes, where one run is short and noise is large."""
    return max(5, min(200, (256 << 20) // size // 4))


def warmups(size: int) -> int:
    return 2 if size <= (1 << 20) else 1


def check_sizes(sizes, mechs, huge: bool, limits=None) -> None:
    limits = limits or read_limits()
    if not sizes:
        raise BadInput("no sizes given")
    for size in sizes:
        if size <= 0:
            raise BadInput(f"sizes must be positive (got {size})")
    mem = read_meminfo()
    if huge:
        hp = mem.get("Hugepagesize", 2048 * 1024)
        free = mem.get("HugePages_Free", 0)
        if free == 0:
            raise LimitExceeded("--hugepages: no huge pages are reserved (HugePages_Free is 0); "
                                "reserve some with: sysctl vm.nr_hugepages=N")
        for size in sizes:
            if size % hp:
                raise BadInput(f"--hugepages: size {size_words(size)} is not a multiple of the huge page size ({size_words(hp)})")
            if size > free * hp:
                raise LimitExceeded(f"--hugepages: {size_words(size)} need {size // hp} huge pages, {free} are free")
        if "posix" in mechs:
            raise BadInput("--hugepages: POSIX objects live on tmpfs (/dev/shm), which has no hugetlb pages; "
                           "leave posix out with --mechanisms")
    for size in sizes:
        for name in mechs:
            if name in EXPLICIT:
                mechanisms.get(name).check_size(size, limits)
        bound = memory_bound(size, limits)
        if bound:
            raise LimitExceeded(f"{size_words(size)} do not fit in {bound}")


def machine_info(pin, huge, touch) -> dict:
    from toolkit.errors import ShmkitError
    from toolkit.proc.fs import default_fs

    try:
        text = default_fs().read_text("cpuinfo")
    except ShmkitError:
        text = ""
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "")
    return {
        "kernel": platform.release(), "cpu": model or platform.machine(), "cpus": os.cpu_count(),
        "page_size": vm.PAGE_SIZE, "python": platform.python_version(), "touch_method": touch,
        "read_method": "MADV_POPULATE_READ" if vm.has_madvise(vm.MADV_POPULATE_READ) else "read",
        "pinned_cpu": pin, "hugepages": huge,
        "hugepage_size": read_meminfo().get("Hugepagesize") if huge else None,
    }


def _rows(mech, size, samples: Samples):
    return [BenchRow.from_phase(mech, size, vm.PAGE_SIZE, p) for p in samples.phases()]


# libraries a fresh Python does not load by itself, so dlopen really maps them
DSO_CANDIDATES = ("libsqlite3.so.0", "libyaml-0.so.2", "libbz2.so.1.0", "liblzma.so.5", "libz.so.1")


def default_library(pid) -> str | None:
    """The first candidate installed here and not yet mapped in process pid."""
    from toolkit.errors import ShmkitError
    from toolkit.mechanisms.dso import library_mappings, resolve_library
    from toolkit.proc.maps import read_maps

    maps = read_maps(pid)
    for name in DSO_CANDIDATES:
        try:
            path = resolve_library(name)
        except ShmkitError:
            continue
        if not library_mappings(maps, path)[0]:
            return path
    return None


def run_bench(sizes=DEFAULT_SIZES, mechs=ALL, repeat=None, pin=None, huge=False, library=None,
              progress=lambda what, done=None, total=None: None) -> BenchResult:
    unknown = [m for m in mechs if m not in ALL]
    if not mechs:
        raise BadInput(f"no mechanism given; choose from {', '.join(ALL)}")
    if unknown:
        raise BadInput(f"unknown mechanism(s) {', '.join(unknown)}; choose from {', '.join(ALL)}")
    if repeat is not None and repeat < 1:
        raise BadInput("--repeat must be at least 1")
    sizes = sorted(set(sizes))
    check_sizes(sizes, mechs, huge)
    if library is not None and "dso" in mechs:  # a library that cannot be loaded: said before minutes of measuring
        from toolkit.mechanisms.dso import resolve_library

        library = resolve_library(library)
    if pin is not None:
        try:
            os.sched_setaffinity(0, {pin})  # peers inherit the affinity through fork+exec
        except (OSError, ValueError) as err:
            raise BadInput(f"--pin {pin}: {err}") from err
    # Thousands of objects, each named for the microseconds between create and mark: measured in a
    # private IPC namespace and /dev/shm where one can be made, so that no kill can leave one behind.
    run = run_isolated("toolkit.measure.bench:_measure", progress, work=max(sizes), sizes=sizes, mechs=list(mechs),
                       repeat=repeat, huge=huge, library=library)
    rows, notes = run.result["rows"], run.result["notes"]
    notes = [f"objects made {run.where}", PHASES_NOTE] + notes
    result = BenchResult(machine_info(pin, huge, vm.touch_method()), tuple(rows), (), tuple(notes))
    return BenchResult(result.machine, result.rows, tuple(findings(result)), result.notes)


def _measure(sizes, mechs, repeat, huge, library, progress) -> dict:
    """The measurement itself: {"rows": [BenchRow], "notes": [str]}. Runs wherever run_bench put it."""
    notes = []
    rows = []
    explicit = [m for m in mechs if m in EXPLICIT]
    total = len(explicit) * len(sizes) + ("dso" in mechs)
    done = 0
    with Janitor() as janitor, PeerGroup(1) as (peer,):
        janitor.watch_process(peer.pid)
        for size in sizes:
            n = repeat or calibrated_repeat(size)
            w = warmups(size)
            for name in explicit:
                progress(f"{name} {size} bytes x{n}", done, total)
                rows += _rows(name, size, owner_phases(name, size, n, w, huge, progress))
                if mechanisms.get(name).second_process:
                    rows += _rows(name, size, second_phases(name, size, n, peer, w, huge, progress))
                done += 1
        if "dso" in mechs:
            progress(f"dso {escape(library or '')}".strip(), done, total)
            rows += _library_rows(library, repeat or 20, peer, notes)
            if huge:  # the loader maps a library from the page cache, in base pages, whatever we ask
                notes.append("dso: --hugepages does not apply to a library, which the loader maps from the page "
                             "cache in base pages")
            done += 1
    progress("done", total, total)
    return {"rows": rows, "notes": notes}


def _library_rows(library, n, peer, notes):
    from toolkit.mechanisms.dso import resolve_library
    from toolkit.proc.pagemap import probe_pfns_visible

    path = resolve_library(library) if library else default_library(peer.pid)
    if path is None:
        notes.append("dso: none of " + ", ".join(DSO_CANDIDATES) + " is installed; give --library")
        return []
    base = os.path.basename(path)
    symbol = next((sym for prefix, sym in KNOWN_CALLS.items() if base.startswith(prefix)), None)
    cold = os.geteuid() == 0 and probe_pfns_visible()
    # measured in a fresh peer, where the library is not loaded yet
    reply = peer.call("library_phases", path=path, repeat=n, warmup=1, symbol=symbol, cold=cold,
                      work=(n + 1) * os.path.getsize(path))
    notes.append(f"dso ({escape(path)}): {reply['note']}"
                 + ("" if symbol else "; no known function to call, so no first_call phase"))
    size = os.path.getsize(path)
    rows = []
    for name in ("attach", "first_call", "first_touch", "detach"):
        sec, faults = reply["seconds"][name], reply["faults"][name]
        if sec:
            rows.append(BenchRow.from_phase("dso", size, vm.PAGE_SIZE, Phase.from_samples(name, sec, faults)))
    return rows


def findings(result: BenchResult) -> list:
    """Sentences derived from the measured faults and times, only where the numbers show them."""
    out = []
    rows = {(r.mechanism, r.size_bytes, r.phase): r for r in result.rows}
    sizes = sorted({r.size_bytes for r in result.rows if r.mechanism != "dso"})
    if not sizes:
        return out
    big = sizes[-1]
    huge = result.machine.get("hugepages")
    # base pages per huge page: one fault maps a whole huge page, which is not fault-around
    per_huge = (result.machine.get("hugepage_size") or 0) // vm.PAGE_SIZE if huge else 0
    for name in ("sysv", "posix", "memfd"):
        r = rows.get((name, big, "read_through"))
        if r and r.minor_faults:
            per_fault = r.pages / r.minor_faults
            if per_huge and abs(per_fault - per_huge) < 0.5 * per_huge:
                what = f"one fault per huge page ({per_huge} base pages each)"
            elif per_fault < 1.5:
                what = "one fault per page"
            else:
                what = f"about {per_fault:.0f} pages mapped per fault (fault-around)"
            out.append(f"{name}: a second process's first read of {counted(r.pages, 'page')} took "
                       f"{counted(r.minor_faults, 'minor fault')}: "
                       f"{what}; {r.ns_per_page:.0f} ns per page.")
    for name in EXPLICIT:
        r = rows.get((name, big, "first_touch"))
        if r and r.median_s:
            unit = "huge page" if per_huge else "page"
            out.append(f"{name}: first touch of {counted(r.pages, 'fresh page')}: {counted(r.minor_faults, 'minor fault')}, "
                       f"{r.ns_per_page:.0f} ns per page ({r.gb_per_s:.2f} GB/s): each {unit} is allocated and zeroed.")
    small = sizes[0]
    c = [(n, rows.get((n, small, "create")), rows.get((n, small, "attach"))) for n in EXPLICIT]
    c = [(n, (a.median_s or 0) + b.median_s) for n, a, b in c if a and b and b.median_s]
    if len(c) > 1:
        c.sort(key=lambda x: x[1])
        out.append(f"fixed cost (create + attach) at {small} bytes: " +
                   ", ".join(f"{n} {t * 1e6:.1f} µs" for n, t in c) + f"; {c[-1][0]} costs "
                   f"{c[-1][1] / c[0][1]:.1f}x {c[0][0]}.")
    for name in EXPLICIT:
        a, b = rows.get((name, small, "first_touch")), rows.get((name, big, "first_touch"))
        if a and b and a.ns_per_page and b.ns_per_page and big > small:
            if a.ns_per_page > 1.2 * b.ns_per_page:  # only what the numbers show
                out.append(f"{name}: per-page touch cost {a.ns_per_page:.0f} ns at {small} bytes vs "
                           f"{b.ns_per_page:.0f} ns at {big} bytes (fixed costs amortised over more pages).")
            else:
                out.append(f"{name}: per-page touch cost {a.ns_per_page:.0f} ns at {small} bytes vs "
                           f"{b.ns_per_page:.0f} ns at {big} bytes: about the same, so the cost is per page, "
                           "not a fixed cost per call.")
            break
    return out
