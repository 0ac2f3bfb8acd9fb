#!/usr/bin/env python3
"""Benchmark: what `--watch` costs while left running. The machine is filled to ~1000 processes (sleep),
`footprint --watch 1 --json` and `segments --watch 1 --json` each run for SECONDS with their output
discarded, and the CPU time they used (user + system, from the kernel's accounting of the child) is set
against the wall time. Target (issue 13): at most 5% of one core at a 1 s interval with 1000 processes.
Run: python3 bench/watch_cost.py [SECONDS] [PROCESSES]
"""
import os
import resource
import signal
import subprocess
import sys
import time

import busy


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 60
    target = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    with busy.sleepers() as sleepers:
        busy.fill(target, sleepers)
        n = busy.count()
        print(f"{n} processes, each watch left running {seconds:.0f} s at a 1 s interval:")
        for view in ("footprint", "segments"):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.monotonic()
            p = subprocess.Popen([sys.executable, "-m", "toolkit", view, "--watch", "1", "--json"],
                                 stdout=subprocess.DEVNULL)
            time.sleep(seconds)
            p.send_signal(signal.SIGINT)
            p.wait()
            wall = time.monotonic() - t0
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            # the start-up (interpreter, imports, the first scan) is paid once: a single scan's CPU, apart
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            subprocess.run([sys.executable, "-m", "toolkit", view, "--json"], stdout=subprocess.DEVNULL, check=True)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            once = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            print(f"  {view:<9} --watch 1: {cpu:.2f} s of CPU in {wall:.1f} s = {100 * cpu / wall:.1f}% of one core "
                  f"(target <= 5%); one start-up and scan alone: {once:.2f} s")
        # the floor: the kernel's own work for one scan (CPU of this process), as a share of a 1 s interval
        pids = [d for d in os.listdir("/proc") if d.isdigit()]
        fds = []
        for pid in pids:
            try:
                fds.append(os.open(f"/proc/{pid}/smaps_rollup", os.O_RDONLY))
            except OSError:
                pass

        def rollups():
            for fd in fds:
                try:
                    os.pread(fd, 65536, 0)
                except OSError:
                    pass

        def maps_and_fds():
            for pid in pids:
                try:
                    with open(f"/proc/{pid}/maps", "rb") as f:
                        f.read()
                    for n in os.listdir(f"/proc/{pid}/fd"):
                        os.readlink(f"/proc/{pid}/fd/{n}")
                except OSError:
                    pass

        # what segments --watch asks of the kernel: the shared mappings (PROCMAP_QUERY) and the descriptor
        # links, each through a kept descriptor
        from toolkit.proc.maps import SharedMapsQuery

        query = SharedMapsQuery() if SharedMapsQuery.supported() else None
        kept = []
        for pid in pids:
            try:
                kept.append((os.open(f"/proc/{pid}/maps", os.O_RDONLY), os.open(f"/proc/{pid}/fd", os.O_RDONLY)))
            except OSError:
                pass

        def kept_maps_and_fds():
            for maps, folder in kept:
                try:
                    query.shared(maps)
                except OSError:
                    pass
                try:
                    for n in os.listdir(folder):
                        os.readlink(n, dir_fd=folder)
                except OSError:
                    pass

        floors = [("footprint", rollups, "a pread of every smaps_rollup, kept open"),
                  ("segments", maps_and_fds, "every maps text and descriptor link, opened anew")]
        if query is not None:
            floors.append(("segments", kept_maps_and_fds, "shared mappings by PROCMAP_QUERY and descriptor links, "
                           "kept open"))
        for name, fn, what in floors:
            fn()
            c0 = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
            for _ in range(10):
                fn()
            cpu = (sum(resource.getrusage(resource.RUSAGE_SELF)[:2]) - c0) / 10
            print(f"  floor for {name:<9}: {cpu * 1e3:.1f} ms of CPU per scan = {100 * cpu:.1f}% of one core at 1 s "
                  f"({what})")
        for fd in fds + [fd for pair in kept for fd in pair]:
            os.close(fd)


if __name__ == "__main__":
    main()
