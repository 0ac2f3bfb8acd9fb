#!/usr/bin/env python3
"""Benchmark: `shmkit footprint --all --json` against smem, and `shmkit segments`, on a busy machine.

Two machines are made from this one: 150 processes that are all `sleep` (tiny: smem's best case), then
150 more that are idle Python interpreters (about 100 mappings each, like real services). Each command is
timed end to end (interpreter start-up included) in interleaved runs; medians and the ratio are printed.
Bytecode caching is left on for these runs (PYTHONDONTWRITEBYTECODE unset): that is how Python runs
for a user, and compiling our modules anew on every start is not what is being measured.
Targets (issue 5): footprint at most 0.5x smem's wall time; segments under 0.2 s with 500 processes.
Run: python3 bench/system_speed.py [RUNS]
"""
import os
import shutil
import statistics
import subprocess
import sys
import time


def count():
    return sum(1 for d in os.listdir("/proc") if d.isdigit())


def fill(n, sleepers):
    while count() < n:
        sleepers.append(subprocess.Popen(["sleep", "600"]))


ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(cmd):
    t0 = time.monotonic()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=ENV)
    return time.monotonic() - t0


def compare(runs, shmkit, smem):
    timed(shmkit + ["footprint", "--all", "--json"]), timed([smem])
    a, b = [], []
    for _ in range(runs):
        a.append(timed(shmkit + ["footprint", "--all", "--json"]))
        b.append(timed([smem]))
    ma, mb = statistics.median(a), statistics.median(b)
    print(f"  shmkit footprint --all --json: median {ma:.3f} s (min {min(a):.3f}, max {max(a):.3f})")
    print(f"  smem                         : median {mb:.3f} s (min {min(b):.3f}, max {max(b):.3f})")
    print(f"  ratio shmkit/smem            : {ma / mb:.2f}  (target <= 0.50)")


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    smem = shutil.which("smem")
    shmkit = [sys.executable, "-m", "toolkit"]
    sleepers = []
    try:
        fill(150, sleepers)
        if smem:
            print(f"{count()} processes (filled with sleep), {runs} interleaved runs each:")
            compare(runs, shmkit, smem)
            idle = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
            for _ in range(150):
                sleepers.append(subprocess.Popen([idle, "-c", "import time; time.sleep(600)"]))
            time.sleep(2)  # let them finish starting
            print(f"{count()} processes (150 more: idle Python interpreters):")
            compare(runs, shmkit, smem)
        else:
            print("smem is not installed: apt-get install smem")
        fill(500, sleepers)
        timed(shmkit + ["segments", "--json"])
        s = [timed(shmkit + ["segments", "--json"]) for _ in range(runs)]
        print(f"{count()} processes: shmkit segments --json: median {statistics.median(s):.3f} s "
              f"(min {min(s):.3f}, max {max(s):.3f})  (target < 0.2 s)")
    finally:
        for p in sleepers:
            p.kill()
        for p in sleepers:
            p.wait()


if __name__ == "__main__":
    main()
