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
from toolkit.measure.sandbox import ipc_sysctls, run_isolated
from toolkit.measure.setup import measure_explicit, measure_library
from toolkit.mechanisms.dso import resolve_library
from toolkit.proc.maps import read_maps
from toolkit.proc.pagemap import PAGE_SIZE, kpagecount_readable, probe_pfns_visible
from toolkit.proc.system import memory_bound, read_limits, read_meminfo
from toolkit.records import PHASES_NOTE, Comparison, MechanismResult, Visibility
from toolkit.units import size_words

TITLES = {"sysv": "System V", "posix": "POSIX", "dso_text": "library text", "dso_data": "library data"}


def check_request(size: int, peers: int, limits=None):
    if size <= 0:
        raise BadInput(f"--size must be positive (got {size})")
    if peers < 2:
        raise BadInput(f"--peers must be at least 2: one peer writes, another reads (got {peers})")
    limits = limits or read_limits()
    for name in ("sysv", "posix"):
        mechanisms.get(name).check_size(size, limits)
    bound = memory_bound(2 * size, limits)
    if bound:
        raise LimitExceeded(f"two regions of {size_words(size)} do not fit in {bound}")
    _fits_address_space(2 * size)
    return limits


def _fits_address_space(mapped: int) -> None:
    """Each peer maps both regions; under RLIMIT_AS (ulimit -v, inherited by the peers) that failed only at
    the first attach, as mmap's ENOMEM. Refused here only where it cannot fit at all; the interpreter's own
    mappings (about 20 MiB) vary, and a near miss is still named by the attach's error."""
    import resource

    soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    if soft != resource.RLIM_INFINITY and mapped > soft:
        raise LimitExceeded(f"each peer maps both regions ({size_words(mapped)}), and the address space of "
                            f"every process here is limited to {size_words(soft)} (RLIMIT_AS, ulimit -v)")


def privileges() -> tuple:
    """(PFNs visible in pagemap, /proc/kpagecount readable)."""
    return probe_pfns_visible(), kpagecount_readable()


def _maps_name(pid, addr) -> str:
    m = next((m for m in read_maps(pid) if m.start == addr), None)
    return m.name if m else "?"


EXPLICIT = ("sysv", "posix")


def lifetime_facts(names, progress=None) -> dict:
    """Where an object is listed and whether it outlives its creator: a peer creates one named object of
    each mechanism and exits. The objects stay named for the length of the check, so this runs in a
    private namespace where one can be made (run_isolated)."""
    out = {}
    with Janitor() as janitor:
        _pid, handles = made_by_exited_peer(janitor, names)
        for name, h in handles.items():
            mech = mechanisms.get(name)
            try:
                out[name] = {"outlives": mech.outlives(h), "listed": mech.listed(h)}
            finally:
                mech.destroy(h)
    return out


def _isolated_part(names, size, repeat, progress) -> dict:
    """What compare measures with objects named for a while or created by the hundred: lifetime facts
    and the setup-cost loops."""
    progress("lifetime: objects made by a peer that exits")
    facts = lifetime_facts(names)
    setups = {}
    for name in names:
        progress(f"{name}: setup cost")
        setups[name] = measure_explicit(name, size, repeat, progress=progress)
    return {"lifetime": facts, "setup": setups}


def run_compare(size: int = 64 << 20, peers: int = 4, library: str | None = None, repeat: int = 5,
                progress=lambda what, done=None, total=None: None, env=None) -> Comparison:
    check_request(size, peers)
    path = resolve_library(library)
    pfns_ok, kpc_ok = privileges()
    privileged = pfns_ok and kpc_ok
    notes = []
    if not privileged:
        from toolkit.proc.access import USERNS_ROOT, read_access

        notes.append("physical pages and kpagecount need root (CAP_SYS_ADMIN): shown as unavailable"
                     + (f"; {USERNS_ROOT}" if read_access().root_in_userns_only else ""))
    shmem_before = read_meminfo().get("Shmem")
    vis, foot, handles = {}, {}, {}
    with Janitor(env):  # the second line: removes what create_marked had not yet marked if we are killed
        progress("starting peers")
        with PeerGroup(peers, env, progress) as group:
            try:
                # --- explicit: created already marked for removal; every peer attaches through the handle
                for name in EXPLICIT:
                    mech = mechanisms.get(name)
                    h = handles[name] = mech.new_handle(size)
                    hold = mech.create_marked(h)
                    try:
                        progress(f"{name}: {peers} peers attach")
                        replies = group.call_all("attach", region=name, handle=h.to_json(), progress=progress)
                    finally:
                        mech.detach(hold)  # the parent never maps what it measures: Pss is size / peers
                    mode, owner = mech.describe(h)
                    vis[name] = dict(mode=mode, owner=owner, maps_name=_maps_name(group[0].pid, replies[0]["addr"]),
                                     ranges={r["pid"]: [(r["addr"], r["addr"] + r["length"])] for r in replies})
                    progress(f"{name}: first touch and reads")
                    group[0].call("touch", region=name, write=True, work=size)
                    for i, p in enumerate(group.peers[1:], 2):
                        p.call("touch", region=name, write=False, work=size)
                        if peers > 20:
                            progress(f"{name}: peers read it", i, peers)
                    token = secrets.token_bytes(8)
                    off = (size // 2) & ~7
                    group[0].call("write", region=name, offset=off, data=token.hex())
                    seen = bytes.fromhex(group[1].call("read", region=name, offset=off, n=8)["data"])
                    vis[name]["sees"] = seen == token

                # --- implicit: every peer loads the library and reads all of its code in
                progress("library: peers load it")
                dso = mechanisms.get("dso")
                lib = dso.new_handle(path=path)
                replies = group.call_all("attach", region="dso", handle=lib.to_json(), progress=progress)
                text = {r["pid"]: [tuple(x) for x in r["extra"]["text"]] for r in replies}
                data = {r["pid"]: [tuple(x) for x in r["extra"]["data"]] for r in replies}
                for p, r in zip(group, replies):
                    for lo, hi, _off in text[r["pid"]]:
                        p.call("touch", region="dso", write=False, addr=lo, length=hi - lo, work=hi - lo)
                lib_mode, lib_owner = dso.describe(lib)
                lib_write = global_write(group[0], group[1], "dso", path,
                                         [tuple(x) for x in replies[0]["extra"]["data_file"]], pfns_ok)
                text_ranges = {pid: [(lo, hi) for lo, hi, _ in r] for pid, r in text.items()}
                text_pages = fp.pagemaps_of(text_ranges)  # read once: text sharing and the footprint use it
                sharing = text_sharing(path, text, {r["pid"]: r["extra"]["data_start"] for r in replies}, privileged,
                                       text_pages)

                progress("reading smaps and pagemap")
                smaps = fp.smaps_of(group[i].pid for i in range(len(group)))
                for p in group:  # a peer that died meanwhile left empty smaps, not a smaller footprint
                    p.check_alive("reading smaps and pagemap")
                shmem_during = read_meminfo().get("Shmem")
                for name in EXPLICIT:
                    kernel = mechanisms.get(name).kernel_bytes(handles[name])
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

    run = run_isolated("toolkit.measure.compare:_isolated_part", progress, work=size, env=env,
                       names=list(EXPLICIT), size=size, repeat=repeat)
    facts, setups = run.result["lifetime"], run.result["setup"]
    notes.append(f"lifetime and setup cost measured {run.where}")
    if ipc_sysctls().get("shm_rmid_forced") == "1":  # the private namespace took it: its facts are this host's
        notes.append("kernel.shm_rmid_forced is 1 in this IPC namespace: a System V segment goes at its last "
                     "detach, as if marked for removal (and one nobody attached, with its creator), so it neither "
                     "outlives its creator nor stays listed once detached")
    notes.append(PHASES_NOTE)
    lib_setup = measure_library(path, repeat)

    results = []
    for name in EXPLICIT:
        v, mech = vis[name], mechanisms.get(name)
        results.append(MechanismResult(name, TITLES[name], Visibility(
            name, v["sees"], v["maps_name"], tuple(facts[name]["listed"]), v["mode"], v["owner"],
            facts[name]["outlives"], reached_by=mech.reach), setups[name], foot[name]))
    results.append(MechanismResult("dso_text", TITLES["dso_text"], Visibility(
        "dso_text", None, lib_maps_names["dso_text"], dso.listed(lib), lib_mode, lib_owner, None,
        "code is mapped r-x: nobody can write it", dso.reach), lib_setup, foot["dso_text"]))
    results.append(MechanismResult("dso_data", TITLES["dso_data"], Visibility(
        "dso_data", lib_write.value_seen_by_b == lib_write.value_written if lib_write.symbol else None,
        lib_maps_names["dso_data"], dso.listed(lib), lib_mode, lib_owner, None,
        f"peer A wrote {lib_write.symbol}" if lib_write.symbol else lib_write.note, dso.reach),
        lib_setup, foot["dso_data"]))
    from toolkit.elf.headers import read_elf

    segments = tuple(s for s in read_elf(path).segments if s.type in ("LOAD", "GNU_RELRO"))
    return Comparison(size, peers, privileged, PAGE_SIZE, os.uname().release, path, tuple(results),
                      lib_write, sharing, shmem_before, shmem_during, tuple(notes), segments)
