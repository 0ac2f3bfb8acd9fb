"""A busy machine for the benchmarks: idle processes added up to a count, all killed at the end."""
import contextlib
import os
import subprocess


def count() -> int:
    return sum(1 for d in os.listdir("/proc") if d.isdigit())


def fill(n, started, argv=("sleep", "3600")) -> None:
    """Start argv until the machine has n processes; each is added to `started`."""
    while count() < n:
        started.append(subprocess.Popen(list(argv)))


@contextlib.contextmanager
def sleepers():
    """A list to start processes into; every one is killed and reaped on the way out."""
    started = []
    try:
        yield started
    finally:
        for p in started:
            p.kill()
        for p in started:
            p.wait()
