"""Setup cost: each phase of a mechanism's life timed on its own (monotonic clock, minor faults).

The owner's phases run in this process: create, attach, first_touch, detach, destroy.
A second process's phases run in a peer: attach, read_through, detach of an existing object.
"""
from __future__ import annotations

import gc
import time

from toolkit import mechanisms, vm
from toolkit.records import PHASES, SECOND_PHASES, Phase, SetupCost


class Samples:
    """Seconds and minor faults per phase; `record` False during warm-up."""

    def __init__(self, names):
        self.names = tuple(names)
        self.seconds = {n: [] for n in names}
        self.faults = {n: [] for n in names}
        self.record = True

    def time(self, name):
        return _Timed(self, name)

    def add(self, name, seconds, faults):
        if self.record:
            self.seconds[name].append(seconds)
            self.faults[name].append(faults)

    def phases(self) -> tuple:
        return tuple(Phase.from_samples(n, self.seconds[n], self.faults[n]) for n in self.names if self.seconds[n])


class _Timed:
    def __init__(self, samples, name):
        self.samples, self.name = samples, name

    def __enter__(self):
        self.f0 = vm.minor_faults()
        self.t0 = time.monotonic()

    def __exit__(self, exc_type, *rest):
        t1 = time.monotonic()
        f1 = vm.minor_faults()
        if exc_type is None:
            self.samples.add(self.name, t1 - self.t0, f1 - self.f0)


def _no_progress(what, done=None, total=None):
    pass


PROGRESS_EVERY_S = 0.5  # between repetitions, never inside a timed phase


def owner_phases(name: str, size: int, repeat: int, warmup: int = 1, huge: bool = False,
                 progress=_no_progress) -> Samples:
    """Create, attach, mark, first touch, detach, destroy in this process, `repeat` times after `warmup`.
    Objects are marked right after attach, so a kill at any moment leaves nothing named but for the
    few microseconds of create + attach (the janitor's watch, or a private namespace, covers those)."""
    mech = mechanisms.get(name)
    s = Samples(PHASES)
    handles = [mech.new_handle(size, huge=huge) for _ in range(warmup + repeat)]
    gc_was_on = gc.isenabled()
    gc.disable()  # as timeit does
    total = warmup + repeat
    try:
        # Timed inline, clock read right around each call: a `with` block or a helper call would put
        # its own entry and exit (about half a microsecond) inside a 3 µs phase.
        clock, faults = time.monotonic, vm.minor_faults
        creates, named, holds_fd = mech.creates_objects, mech.named, mech.holds_fd
        shown = clock()
        for i, handle in enumerate(handles):
            s.record = i >= warmup
            att = None
            try:
                f0 = faults()
                t0 = clock()
                mech.create(handle)
                t1 = clock()
                f1 = faults()
                f2 = faults()
                t2 = clock()
                att = mech.attach(handle)
                t3 = clock()
                f3 = faults()
                if named:
                    f4 = faults()
                    t4 = clock()
                    mech.mark(handle)
                    t5 = clock()
                    s.add("mark", t5 - t4, faults() - f4)
                if creates:  # an anonymous mapping has nothing to create: no phase to time
                    s.add("create", t1 - t0, f1 - f0)
                s.add("attach", t3 - t2, f3 - f2)
                f0 = faults()
                t0 = clock()
                vm.populate_write(att.addr, att.length)
                t1 = clock()
                s.add("first_touch", t1 - t0, faults() - f0)
                f0 = faults()
                t0 = clock()
                mech.detach(att)
                t1 = clock()
                s.add("detach", t1 - t0, faults() - f0)
                if holds_fd:
                    f0 = faults()
                    t0 = clock()
                    mech.release(handle)
                    t1 = clock()
                    s.add("destroy", t1 - t0, faults() - f0)
            finally:
                # a signal may land between any two statements above: detach and destroy are idempotent
                if att is not None:
                    mech.detach(att)
                mech.destroy(handle)
            if t1 - shown > PROGRESS_EVERY_S:
                shown = t1
                progress(f"{name} {size} bytes", i + 1, total)
    finally:
        if gc_was_on:
            gc.enable()
    return s


def second_phases(name: str, size: int, repeat: int, peer, warmup: int = 1, huge: bool = False,
                  progress=_no_progress) -> Samples:
    """A peer attaches an object we made, marked and touched; reads every page once; detaches."""
    mech = mechanisms.get(name)
    s = Samples(SECOND_PHASES)
    shown = time.monotonic()
    for i in range(warmup + repeat):
        s.record = i >= warmup
        handle = mech.new_handle(size, huge=huge)
        att = mech.create_marked(handle)
        try:
            vm.populate_write(att.addr, att.length)
            reply = peer.call("second", handle=handle.to_json(), work=size, what=f"'second' ({name}, {size} bytes)")
        finally:
            mech.detach(att)
            mech.destroy(handle)
        for phase in SECOND_PHASES:
            s.add(phase, reply[phase][0], reply[phase][1])
        if time.monotonic() - shown > PROGRESS_EVERY_S:
            shown = time.monotonic()
            progress(f"{name} {size} bytes, second process", i + 1, warmup + repeat)
    return s


def measure_explicit(name: str, size: int, repeat: int, warmup: int = 1, progress=_no_progress) -> SetupCost:
    """The owner's phases as a SetupCost record (used by compare)."""
    return SetupCost(name, owner_phases(name, size, repeat, warmup, progress=progress).phases(), vm.touch_method())


DSO_PHASES = ("attach", "first_call", "first_touch", "detach")


def library_phases(path: str, repeat: int, warmup: int = 1, symbol: str | None = None, cold: bool = False) -> tuple:
    """dlopen (attach), a first call, reading the code in (first touch), dlclose (detach), in this process.
    Returns (Samples, note)."""
    import ctypes
    import os

    from toolkit.mechanisms.dso import Dso, library_mappings
    from toolkit.proc.maps import read_maps

    s = Samples(DSO_PHASES)
    already = bool(library_mappings(read_maps("self"), path)[0])
    unloaded = True
    for i in range(warmup + repeat):
        s.record = i >= warmup
        if cold:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
        with s.time("attach"):
            lib = Dso.dlopen(path)
        try:
            if symbol:
                fn = getattr(lib, symbol)
                fn.restype = ctypes.c_void_p
                with s.time("first_call"):
                    fn()
            text, _ = library_mappings(read_maps("self"), path)
            with s.time("first_touch"):
                for m in text:
                    vm.populate_read(m.start, m.size)
        finally:
            with s.time("detach"):
                Dso.dlclose(lib)
        if not already and library_mappings(read_maps("self"), path)[0]:
            unloaded = False
    if already:
        note = "already mapped by the loader at start: dlopen only counts a reference, dlclose does not unmap"
    elif not unloaded:
        note = "dlclose did not unmap it (NODELETE or a dependent keeps it): later runs reused the mapping"
    else:
        note = ("page cache cold: evicted with posix_fadvise(DONTNEED) before each run" if cold
                else "page cache warm") + "; dlopen maps its PT_LOADs, dlclose unmaps them"
    return s, note


def measure_library(path: str, repeat: int, warmup: int = 1) -> SetupCost:
    s, note = library_phases(path, repeat, warmup)
    by = {p.name: p for p in s.phases()}
    phases = (Phase("create", None), by["attach"], Phase("mark", None), by["first_touch"], by["detach"],
              Phase("destroy", None))
    method = "MADV_POPULATE_READ" if vm.has_madvise(vm.MADV_POPULATE_READ) else "read"
    return SetupCost("dso", phases, method, note)
