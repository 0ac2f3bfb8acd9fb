#!/usr/bin/env python3
"""Benchmark: where the wall time of `compare --size 1G --peers 16` goes, phase by phase, and how much
of it is outside the kernel work it measures (page faults on first touch and reads, page-table walks
for smaps and pagemap). Target (issue 13): at most 25% outside.

run_compare runs here with a progress callback that stamps each phase with the wall clock and the CPU
time of this process and every peer (user and system, from /proc/PID/stat of the living ones and
RUSAGE_CHILDREN for the reaped). A phase's system time is the kernel work; its wall time beyond that
(user time, waiting on a peer's answer, starting processes) is counted as outside. With two cores two
processes may work in the kernel at once; a phase is never counted as less than 0 outside.
Run as root: python3 bench/compare_breakdown.py [SIZE] [PEERS]   (defaults 1G 16)
"""
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TICK = os.sysconf("SC_CLK_TCK")


def _descendants(pid):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                kids = [int(x) for x in f.read().split()]
        except OSError:
            continue
        out += kids
        todo += kids
    return out


def cpu_now():
    """(user, system) seconds of this process, its reaped children and its living descendants."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    user, system = me.ru_utime + kids.ru_utime, me.ru_stime + kids.ru_stime
    for pid in _descendants(os.getpid()):
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rpartition(b")")[2].split()
            user += int(fields[11]) / TICK
            system += int(fields[12]) / TICK
        except (OSError, IndexError, ValueError):
            pass  # exited between the listing and the read: counted in RUSAGE_CHILDREN once reaped
    return user, system


def main():
    from toolkit.measure.compare import run_compare
    from toolkit.units import parse_size

    size = parse_size(sys.argv[1]) if len(sys.argv) > 1 else 1 << 30
    peers = int(sys.argv[2]) if len(sys.argv) > 2 else 16
    marks = []

    def progress(what, done=None, total=None):
        label = what.split(" (")[0]
        if not marks or marks[-1][0] != label:
            marks.append((label, time.monotonic(), *cpu_now()))

    t0, u0, s0 = time.monotonic(), *cpu_now()
    marks.append(("checks and start", t0, u0, s0))
    run_compare(size, peers, progress=progress)
    marks.append(("end", time.monotonic(), *cpu_now()))
    wall = marks[-1][1] - t0
    rows = {}
    for (label, t, u, s), (_, t2, u2, s2) in zip(marks, marks[1:]):
        r = rows.setdefault(label, [0.0, 0.0, 0.0])
        r[0] += t2 - t
        r[1] += u2 - u
        r[2] += s2 - s
    print(f"compare --size {sys.argv[1] if len(sys.argv) > 1 else '1G'} --peers {peers}: {wall:.2f} s wall")
    print(f"  {'phase':<44} {'wall s':>7} {'user s':>7} {'sys s':>7} {'outside s':>9}")
    outside_total = 0.0
    for label, (w, u, s) in sorted(rows.items(), key=lambda kv: -kv[1][0]):
        outside = max(0.0, w - s)
        outside_total += outside
        if w >= 0.01:
            print(f"  {label[:44]:<44} {w:7.2f} {u:7.2f} {s:7.2f} {outside:9.2f}")
    print(f"outside the kernel work: {outside_total:.2f} s of {wall:.2f} s = {100 * outside_total / wall:.0f}% "
          f"(target <= 25%)")


if __name__ == "__main__":
    main()
