"""The main job: System V, POSIX and a shared library side by side, in N peer processes."""
from __future__ import annotations

import os
import secrets

from toolkit import mechanisms
from toolkit.errors import BadInput, LimitExceeded
from toolkit.measure import footprint as fp
from toolkit.measure.janitor import Janitor
from toolkit.measure.library import global_write, text_sharing
from toolkit.measure.peer import PeerGroup, made_by_exited_peer
from toolkit.measure.setup import measure_explicit, measure_library
from toolkit.mechanisms.dso import resolve_library
from toolkit.proc.maps import read_maps
from toolkit.proc.pagemap import PAGE_SIZE, kpagecount_readable, probe_pfns_visible
from toolkit.proc.system import read_limits, read_meminfo, read_sysvipc_shm
from toolkit.records import Comparison, MechanismResult, Visibility

TITLES = {"sysv": "System V", "posix": "POSIX", "dso_text": "library text", "dso_data": "library data"}


def check_request(size: int, peers: int, limits=None):
    if size <= 0:
        raise BadInput(f"--size must be positive (got {size})")
    if peers < 2:
        raise BadInput(f"--peers must be at least 2: one peer writes, another reads (got {peers})")
    limits = limits or read_limits()
    for name in ("sysv", "posix"):
        mechanisms.get(name).check_size(size, limits)
    if limits.mem_available is not None and 2 * size > limits.mem_available:
        raise LimitExceeded(
            f"two regions of {size} bytes do not fit in available memory ({limits.mem_available} bytes MemAvailable)")
    return limits


def privileges() -> tuple:
    """(PFNs visible in pagemap, /proc/kpagecount readable)."""
    return probe_pfns_visible(), kpagecount_readable()


def _maps_name(pid, addr) -> str:
    m = next((m for m in read_maps(pid) if m.start == addr), None)
    return m.name if m else "?"


def _outlive_check(janitor, env=None) -> dict:
    """A peer creates one object of each kind and exits; are they still there? Then remove them."""
    out = {}
    _pid, handles = made_by_exited_peer(janitor, ("sysv", "posix"), env)
    for name, h in handles.items():
        mech = mechanisms.get(name)
        try:
            if name == "sysv":
                seg = next((s for s in read_sysvipc_shm() if s.shmid == h.shmid), None)
                out[name] = seg is not None and seg.nattch == 0
            else:
                out[name] = mech.exists(h)
        finally:
            mech.destroy(h)
            janitor.forget(h)
    return out


def run_compare(size: int = 64 << 20, peers: int = 4, library: str | None = None, repeat: int = 5,
                progress=lambda msg: None, env=None) -> Comparison:
    limits = check_request(size, peers)
    path = resolve_library(library)
    pfns_ok, kpc_ok = privileges()
    privileged = pfns_ok and kpc_ok
    notes = []
    if not privileged:
        notes.append("physical pages and kpagecount need root (CAP_SYS_ADMIN): shown as unavailable")
    shmem_before = read_meminfo().get("Shmem")
    vis, foot, owner_fds = {}, {}, {}
    with Janitor(env) as janitor:
        progress("starting peers")
        handles = {}
        with PeerGroup(peers, env) as group:
            try:
                # --- explicit: create, every peer attaches, then mark for removal at once
                for name in ("sysv", "posix"):
                    mech = mechanisms.get(name)
                    h = mech.new_handle(size)
                    janitor.watch(h)
                    if name == "posix":
                        owner_fds[name] = mech.create(h, keep_fd=True)
                    else:
                        mech.create(h)
                    janitor.watch(h)
                    handles[name] = h
                    progress(f"{name}: {peers} peers attach")
                    replies = group.call_all("attach", region=name, handle=h.to_json())
                    mode, owner = mech.describe(h)
                    listed = mech.listed(h)
                    maps_name = _maps_name(group[0].pid, replies[0]["addr"])
                    mech.destroy(h)  # IPC_RMID / shm_unlink: every peer is attached now
                    janitor.forget(h)
                    vis[name] = dict(mode=mode, owner=owner, listed=listed, maps_name=maps_name,
                                     ranges={r["pid"]: [(r["addr"], r["addr"] + r["length"])] for r in replies})
                    progress(f"{name}: first touch and reads")
                    group[0].call("touch", region=name, write=True)
                    for p in group.peers[1:]:
                        p.call("touch", region=name, write=False)
                    token = secrets.token_bytes(8)
                    off = (size // 2) & ~7
                    group[0].call("write", region=name, offset=off, data=token.hex())
                    seen = bytes.fromhex(group[1].call("read", region=name, offset=off, n=8)["data"])
                    vis[name]["sees"] = seen == token

                # --- implicit: every peer loads the library and reads all of its code in
                progress("library: peers load it")
                dso = mechanisms.get("dso")
                h = dso.new_handle(path=path)
                replies = group.call_all("attach", region="dso", handle=h.to_json())
                text = {r["pid"]: [tuple(x) for x in r["extra"]["text"]] for r in replies}
                data = {r["pid"]: [tuple(x) for x in r["extra"]["data"]] for r in replies}
                for p, r in zip(group, replies):
                    for lo, hi, _off in text[r["pid"]]:
                        p.call("touch", region="dso", write=False, addr=lo, length=hi - lo)
                mode, owner = dso.describe(h)
                lib_write = global_write(group[0], group[1], "dso", path,
                                         [tuple(x) for x in replies[0]["extra"]["data_file"]], pfns_ok)
                text_ranges = {pid: [(lo, hi) for lo, hi, _ in r] for pid, r in text.items()}
                text_pages = fp.pagemaps_of(text_ranges)  # read once: text sharing and the footprint use it
                sharing = text_sharing(path, text, data, privileged, text_pages)

                progress("reading smaps and pagemap")
                smaps = fp.smaps_of(group[i].pid for i in range(len(group)))
                shmem_during = read_meminfo().get("Shmem")
                for name in ("sysv", "posix"):
                    kernel = mechanisms.get(name).kernel_bytes(handles[name], owner_fds.get(name))
                    foot[name] = fp.region_footprint(name, size, vis[name]["ranges"], smaps, privileged, kernel)
                text_size = sum(hi - lo for lo, hi, _ in next(iter(text.values())))
                data_size = sum(hi - lo for lo, hi, _ in next(iter(data.values())))
                foot["dso_text"] = fp.region_footprint(
                    "dso_text", text_size, text_ranges, smaps, privileged, (None, "page cache"), text_pages)
                foot["dso_data"] = fp.region_footprint(
                    "dso_data", data_size, {pid: [(lo, hi) for lo, hi, _ in r] for pid, r in data.items()},
                    smaps, privileged, (None, "page cache"))
                lib_maps_names = {
                    "dso_text": _maps_name(group[0].pid, text[group[0].pid][0][0]),
                    "dso_data": _maps_name(group[0].pid, data[group[0].pid][0][0]) if data[group[0].pid] else "?",
                }
            finally:
                for name, h in handles.items():
                    mechanisms.get(name).destroy(h)
                    janitor.forget(h)
                for fd in owner_fds.values():
                    os.close(fd)

        progress("lifetime: objects made by a peer that exits")
        outlives = _outlive_check(janitor, env)
        progress("setup cost")
        setups = {name: measure_explicit(name, size, repeat, janitor) for name in ("sysv", "posix")}
        lib_setup = measure_library(path, repeat)

    results = []
    for name in ("sysv", "posix"):
        v = vis[name]
        results.append(MechanismResult(name, TITLES[name], Visibility(
            name, v["sees"], v["maps_name"], tuple(v["listed"]), v["mode"], v["owner"], outlives.get(name)),
            setups[name], foot[name]))
    results.append(MechanismResult("dso_text", TITLES["dso_text"], Visibility(
        "dso_text", None, lib_maps_names["dso_text"], dso.listed(h), mode, owner, None,
        "code is mapped r-x: nobody can write it"), lib_setup, foot["dso_text"]))
    results.append(MechanismResult("dso_data", TITLES["dso_data"], Visibility(
        "dso_data", lib_write.value_seen_by_b == lib_write.value_written if lib_write.symbol else None,
        lib_maps_names["dso_data"], dso.listed(h), mode, owner, None,
        f"peer A wrote {lib_write.symbol}" if lib_write.symbol else lib_write.note), lib_setup, foot["dso_data"]))
    return Comparison(size, peers, privileged, PAGE_SIZE, os.uname().release, path, tuple(results),
                      lib_write, sharing, shmem_before, shmem_during, tuple(notes))
