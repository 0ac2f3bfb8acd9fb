"""Setup cost: create, attach, first touch, detach, destroy, each timed on its own."""
from __future__ import annotations

import time

from toolkit import mechanisms, vm
from toolkit.proc.maps import read_maps
from toolkit.records import Phase, SetupCost

PHASES = ("create", "attach", "first_touch", "detach", "destroy")


class _Timer:
    """Monotonic time and minor faults of one phase."""

    def __init__(self, samples, faults, name):
        self.samples, self.faults, self.name = samples, faults, name

    def __enter__(self):
        self.f0 = vm.minor_faults()
        self.t0 = time.monotonic()

    def __exit__(self, exc_type, *rest):
        t1 = time.monotonic()
        f1 = vm.minor_faults()
        if exc_type is None and self.record:
            self.samples[self.name].append(t1 - self.t0)
            self.faults[self.name].append(f1 - self.f0)


def _timers(record: bool, samples, faults):
    out = {}
    for name in samples:
        t = _Timer(samples, faults, name)
        t.record = record
        out[name] = t
    return out


def measure_explicit(name: str, size: int, repeat: int, janitor, warmup: int = 1) -> SetupCost:
    """System V or POSIX: every phase in this process, `repeat` times after `warmup` discarded runs."""
    mech = mechanisms.get(name)
    samples = {p: [] for p in PHASES}
    faults = {p: [] for p in PHASES}
    for i in range(warmup + repeat):
        t = _timers(i >= warmup, samples, faults)
        handle = mech.new_handle(size)
        janitor.watch(handle)
        att = None
        created = False
        try:
            with t["create"]:
                mech.create(handle)
            created = True
            janitor.watch(handle)  # now with its shmid
            with t["attach"]:
                att = mech.attach(handle)
            with t["first_touch"]:
                vm.populate_write(att.addr, att.length)
            with t["detach"]:
                mech.detach(att)
            att = None
            with t["destroy"]:
                mech.destroy(handle)
            created = False
        finally:
            if att is not None:
                mech.detach(att)
            if created:
                mech.destroy(handle)
            janitor.forget(handle)
    return SetupCost(name, tuple(Phase.from_samples(p, samples[p], faults[p]) for p in PHASES), vm.touch_method())


def measure_library(path: str, repeat: int, warmup: int = 1) -> SetupCost:
    """dlopen (attach), reading every code page in (first touch), dlclose (detach); nothing to create."""
    from toolkit.mechanisms.dso import Dso, library_mappings

    samples = {p: [] for p in ("attach", "first_touch", "detach")}
    faults = {p: [] for p in samples}
    already = bool(library_mappings(read_maps("self"), path)[0])
    for i in range(warmup + repeat):
        t = _timers(i >= warmup, samples, faults)
        with t["attach"]:
            lib = Dso.dlopen(path)
        try:
            text, _ = library_mappings(read_maps("self"), path)
            with t["first_touch"]:
                for m in text:
                    vm.populate_read(m.start, m.size)
        finally:
            with t["detach"]:
                Dso.dlclose(lib)
    phases = (Phase("create", None),) + tuple(Phase.from_samples(p, samples[p], faults[p]) for p in samples) + (Phase("destroy", None),)
    note = ("already mapped by the loader at start: dlopen only counts a reference, dlclose does not unmap"
            if already else "dlopen maps the file's PT_LOADs from the page cache (warm)")
    return SetupCost("dso", phases, "MADV_POPULATE_READ" if vm.has_madvise(vm.MADV_POPULATE_READ) else "read", note)
