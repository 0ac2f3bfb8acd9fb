#!/usr/bin/env python3
"""Benchmark: the ledger (`footprint --by cgroup` / `--by object`) against `footprint --all`, and its PFN work
against a bare read of the same pagemap ranges, side by side in one run.

The machine gets 150 idle Python interpreters (about 100 mappings each, like real services), and `sleep`s up to
PROCESSES processes in all if given. Ratios:
  1. whole commands (interpreter start-up included), `--by cgroup --json --no-pfns` and `--by object --json
     --no-pfns` over `footprint --all --json` (and, for reference, the same with PFNs);
  2. in process, scan_ledger(pfns=True) - scan_ledger(pfns=False): the extra cost of physical
     pages and charges, over a bare read (pread, nothing decoded) of every pagemap range it reads.
Targets (issue 11): 1. at most 2x; 2. at most 3x. Medians of interleaved runs; the first run of each is
discarded. Run as root: python3 bench/ledger_speed.py [RUNS] [PROCESSES]
"""
import os
import statistics
import subprocess
import sys
import time

import busy

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(cmd):
    t0 = time.monotonic()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=ENV)
    return time.monotonic() - t0


def clock(fn):
    t0 = time.monotonic()
    fn()
    return time.monotonic() - t0


def interleaved(runs, **fns):
    for fn in fns.values():
        fn()  # warm-up, discarded
    out = {k: [] for k in fns}
    for _ in range(runs):
        for k, fn in fns.items():
            out[k].append(fn())
    return {k: statistics.median(v) for k, v in out.items()}


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    processes = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    from toolkit.measure.ledger import scan_ledger
    from toolkit.measure.snapshot import _shared_ranges
    from toolkit.proc.fs import default_fs
    from toolkit.proc.pagemap import PAGE_SIZE

    idle = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    with busy.sleepers() as sleepers:
        sleepers += [subprocess.Popen([idle, "-c", "import time; time.sleep(600)"]) for _ in range(150)]
        busy.fill(processes, sleepers)
        time.sleep(2)
        n = busy.count()
        shmkit = [sys.executable, "-m", "toolkit", "footprint"]
        m = interleaved(runs, all=lambda: timed(shmkit + ["--all", "--json"]),
                        cgroup=lambda: timed(shmkit + ["--by", "cgroup", "--json", "--no-pfns"]),
                        object=lambda: timed(shmkit + ["--by", "object", "--json", "--no-pfns"]),
                        cgroup_pfns=lambda: timed(shmkit + ["--by", "cgroup", "--json"]),
                        object_pfns=lambda: timed(shmkit + ["--by", "object", "--json"]))
        print(f"{n} processes, {runs} interleaved runs, medians of whole commands (start-up included):")
        for k, label in (("all", "--all"), ("cgroup", "--by cgroup --no-pfns"), ("object", "--by object --no-pfns"),
                         ("cgroup_pfns", "--by cgroup (PFNs)"), ("object_pfns", "--by object (PFNs)")):
            target = "  (target <= 2)" if k in ("cgroup", "object") else ""
            print(f"  footprint {label:<24} {m[k]:.3f} s   ratio to --all {m[k] / m['all']:.2f}{target}")
        fs = default_fs()
        ranges = list(_shared_ranges(fs))

        by_pid = {}  # one open of each process's pagemap for all its ranges, as the ledger reads them
        for pid, start, end in ranges:
            by_pid.setdefault(pid, []).append((start // PAGE_SIZE * 8, (end - start) // PAGE_SIZE * 8))

        def bare():
            for pid, runs in by_pid.items():
                try:
                    fs.read_at((pid, "pagemap"), runs)
                except Exception:  # noqa: BLE001 - a process that exited: as the ledger skips it
                    pass

        from toolkit.measure.system import _pool_map, scan_footprint

        pids = [d for d in os.listdir("/proc") if d.isdigit()]

        def smaps(pid):
            try:
                with open(f"/proc/{pid}/smaps", "rb") as f:
                    return len(f.read())
            except OSError:
                return 0

        m = interleaved(runs, plain=lambda: clock(lambda: scan_footprint()),
                        unpriv=lambda: clock(lambda: scan_ledger(pfns=False)),
                        priv=lambda: clock(lambda: scan_ledger(pfns=True)), bare=lambda: clock(bare),
                        smaps=lambda: clock(lambda: _pool_map(smaps, pids)))
        pages = sum((e - s) // PAGE_SIZE for _, s, e in ranges)
        print(f"in process ({len(ranges)} shared mappings, {pages} pages):")
        print(f"  scan_footprint (smaps_rollup)      {m['plain'] * 1e3:8.1f} ms")
        print(f"  scan_ledger without PFNs           {m['unpriv'] * 1e3:8.1f} ms   ratio to footprint --all's scan "
              f"{m['unpriv'] / m['plain']:.2f}")
        print(f"  bare read of every smaps (threads) {m['smaps'] * 1e3:8.1f} ms   ratio {m['smaps'] / m['plain']:.2f}: "
              "the kernel's own floor for a per-mapping view")
        extra = m["priv"] - m["unpriv"]
        print(f"  scan_ledger with PFNs              {m['priv'] * 1e3:8.1f} ms   (PFN work {extra * 1e3:.1f} ms)")
        print(f"  bare pread of those pagemap ranges {m['bare'] * 1e3:8.1f} ms   ratio PFN work / bare read "
              f"{extra / m['bare']:.2f}  (target <= 3)")


if __name__ == "__main__":
    main()
