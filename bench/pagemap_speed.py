#!/usr/bin/env python3
"""Benchmark: physical-page analysis (distinct PFNs of a region in N peers, and the kpagecount range of
those pages, as compare and `elf --pid` count them) against a bare read of the same pagemap ranges.

A 1 GiB shared region is touched and mapped by 4 peers (compare's shape). Timed, medians of interleaved
runs after a warm-up: the bare preads alone; the analysis with numpy (used above NUMPY_FROM_PAGES pages
when installed) and without (array + translate + set). Target (issue 13): at most 3x the bare read.
Run as root (PFNs): python3 bench/pagemap_speed.py [SIZE_MIB] [PEERS] [RUNS]
"""
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    size = (int(sys.argv[1]) if len(sys.argv) > 1 else 1024) << 20
    peers = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 7
    from toolkit import mechanisms
    from toolkit.measure.peer import PeerGroup
    from toolkit.proc import pagemap
    from toolkit.proc.fs import default_fs
    from toolkit.proc.pagemap import PAGE_SIZE, physical_pages, read_pagemap

    if not pagemap.probe_pfns_visible():
        sys.exit("needs root: PFNs are hidden")
    fs = default_fs()
    sysv = mechanisms.get("sysv")
    h = sysv.new_handle(size)
    hold = sysv.create_marked(h)
    try:
        with PeerGroup(peers) as g:
            replies = g.call_all("attach", region="r", handle=h.to_json(), work=size)
            sysv.detach(hold)
            g[0].call("touch", region="r", write=True, work=size)
            for p in g.peers[1:]:
                p.call("touch", region="r", write=False, work=size)
            ranges = [(r["pid"], r["addr"], r["addr"] + r["length"]) for r in replies]

            def bare():
                for pid, lo, hi in ranges:
                    fs.read_at((pid, "pagemap"), [(lo // PAGE_SIZE * 8, (hi - lo) // PAGE_SIZE * 8)])

            def analysis(threshold):
                def run():
                    pagemap.NUMPY_FROM_PAGES = threshold
                    return physical_pages([read_pagemap(pid, lo, hi) for pid, lo, hi in ranges])
                return run

            fns = {"bare pread of the pagemap ranges": bare,
                   "analysis with numpy": analysis(1),
                   "analysis without numpy": analysis(1 << 62)}
            results = {}
            for name, fn in fns.items():
                results[name] = fn()  # warm-up; keeps the answer
            times = {k: [] for k in fns}
            for _ in range(runs):
                for name, fn in fns.items():
                    t0 = time.monotonic()
                    fn()
                    times[name].append(time.monotonic() - t0)
    finally:
        sysv.detach(hold)
        sysv.destroy(h)
    assert results["analysis with numpy"] == results["analysis without numpy"]
    count, lo, hi = results["analysis with numpy"]
    base = statistics.median(times["bare pread of the pagemap ranges"])
    print(f"{size >> 20} MiB in {peers} peers ({size // PAGE_SIZE} pages each): {count} distinct PFNs, "
          f"kpagecount {lo}-{hi}; medians of {runs} interleaved runs")
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"  {name:<34} {m * 1e3:8.1f} ms   ratio to the bare read {m / base:5.2f}"
              + ("  (target <= 3)" if name != "bare pread of the pagemap ranges" else ""))


if __name__ == "__main__":
    main()
