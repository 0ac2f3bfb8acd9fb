#!/usr/bin/env python3
"""Benchmark: `shmkit footprint --all --json` against smem, and `shmkit segments`, on a busy machine.

Two machines are made from this one: 150 processes that are all `sleep` (tiny: smem's best case), then
150 more that are idle Python interpreters (about 100 mappings each, like real services). Each command is
timed end to end (interpreter start-up included) in interleaved runs; medians and the ratio are printed.
Bytecode caching is left on for these runs (PYTHONDONTWRITEBYTECODE unset): that is how Python runs
for a user, and compiling our modules anew on every start is not what is being measured.
A third machine fills this one with `sleep` to 1000 processes. `footprint --all` runs as JSON and as a table,
under this interpreter and, where smem's first line names another (Debian's /usr/bin/python3), under that
one too, from a copy of shmkit and its dependencies: the same interpreter on both sides.
Targets (issues 5 and 13): footprint at most 0.5x smem's wall time with about 150 processes and 0.2x with
about 1000; segments under 0.2 s with 500 processes (here measured with 1000).
Run: python3 bench/system_speed.py [RUNS]
"""
import os
import shutil
import statistics
import subprocess
import sys
import time

import busy
from busy import count, fill


ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
ENV["COLUMNS"] = "80"


def timed(cmd, env=None):
    t0 = time.monotonic()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=env or ENV, cwd="/")
    return time.monotonic() - t0


# What any Python tool doing footprint's job pays at least: start, import click (every shmkit command
# parses its options with it), read the three files footprint reads of each process (one thread), write
# JSON. No parsing, no sums, none of shmkit's own modules: where this alone nears the target, the target
# is at what Python and click allow.
READS = r"""
import click, json, os
rows = []
for pid in os.listdir("/proc"):
    if pid.isdigit():
        row = {}
        for name in ("stat", "smaps_rollup", "cmdline"):
            try:
                fd = os.open(f"/proc/{pid}/{name}", os.O_RDONLY)
            except OSError:
                continue
            try:
                row[name] = len(os.read(fd, 65536))
            except OSError:
                pass
            os.close(fd)
        rows.append(row)
print(json.dumps(rows))
"""


def compare(runs, shmkit, smem, same=None):
    """footprint --all as JSON and as a table (to a pipe, 80 columns) against smem, interleaved. `same`:
    (python, env) of a copy of shmkit for the interpreter smem runs under, where that is another one: the
    side by side that leaves the choice of interpreter out, with that interpreter's floors (start and import
    click, which every shmkit command pays; then READS above)."""
    forms = {"footprint --all --json": (shmkit + ["footprint", "--all", "--json"], None),
             "footprint --all (table)": (shmkit + ["footprint", "--all"], None)}
    if same is not None:
        python, env = same
        forms["... --json, smem's python"] = ([python, "-m", "toolkit", "footprint", "--all", "--json"], env)
        forms["... (table), smem's python"] = ([python, "-m", "toolkit", "footprint", "--all"], env)
        forms["floor: import click"] = ([python, "-c", "import click"], env)
        forms["floor: click, reads, json"] = ([python, "-c", READS], env)
    forms["floor: click, reads, json (ours)"] = ([shmkit[0], "-c", READS], None)
    forms["smem"] = ([smem], None)
    for cmd, env in forms.values():
        timed(cmd, env)  # warm-up, discarded (and bytecode written)
    times = {k: [] for k in forms}
    for _ in range(runs):
        for k, (cmd, env) in forms.items():
            times[k].append(timed(cmd, env))
    m = {k: statistics.median(v) for k, v in times.items()}
    for k, v in times.items():
        ratio = f"  ratio to smem {m[k] / m['smem']:.2f}" + ("" if k.startswith("floor") else f" (target {TARGET(count())})") \
            if k != "smem" else ""
        print(f"  {k:<34} median {m[k]:.3f} s (min {min(v):.3f}, max {max(v):.3f}){ratio}")


def smem_python(smem):
    """The interpreter smem's first line names (Debian's: /usr/bin/python3), if not ours."""
    with open(smem, "rb") as f:
        line = f.readline()
    python = line[2:].split()[0].decode() if line.startswith(b"#!") and line[2:].split() else None
    if not python or not os.access(python, os.X_OK) or os.path.realpath(python) == os.path.realpath(sys.executable):
        return None
    return python


def TARGET(n):
    return "<= 0.2" if n >= 900 else "<= 0.5"


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    smem = shutil.which("smem")
    shmkit = [sys.executable, "-m", "toolkit"]
    same, runtime = None, None
    if smem and smem_python(smem):
        from toolkit.measure.runas import make_runtime

        runtime = make_runtime()  # shmkit and its dependencies copied beside smem's interpreter
        if os.path.realpath(runtime.python) == os.path.realpath(smem_python(smem)):
            same = (runtime.python, {**{k: v for k, v in runtime.env.items() if k != "PYTHONDONTWRITEBYTECODE"},
                                     "COLUMNS": "80"})
            print(f"shmkit runs under {sys.executable} and, as smem does, under {runtime.python}")
    with busy.sleepers() as sleepers:
        fill(150, sleepers)
        if smem:
            print(f"{count()} processes (filled with sleep), {runs} interleaved runs each:")
            compare(runs, shmkit, smem, same)
            idle = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
            for _ in range(150):
                sleepers.append(subprocess.Popen([idle, "-c", "import time; time.sleep(600)"]))
            time.sleep(2)  # let them finish starting
            print(f"{count()} processes (150 more: idle Python interpreters):")
            compare(runs, shmkit, smem, same)
            fill(1000, sleepers)
            print(f"{count()} processes (filled with sleep):")
            compare(runs, shmkit, smem, same)
        else:
            print("smem is not installed: apt-get install smem")
        fill(500, sleepers)
        timed(shmkit + ["segments", "--json"])
        s = [timed(shmkit + ["segments", "--json"]) for _ in range(runs)]
        print(f"{count()} processes: shmkit segments --json: median {statistics.median(s):.3f} s "
              f"(min {min(s):.3f}, max {max(s):.3f})  (target < 0.2 s)")
    if runtime is not None:
        runtime.close()


if __name__ == "__main__":
    main()
