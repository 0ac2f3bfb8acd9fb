"""The paired demos: each sets mechanisms side by side, measures, and ends in a verdict from the numbers."""
from __future__ import annotations

import os
import secrets

from toolkit import mechanisms, vm
from toolkit.errors import PeerFailed, ShmkitError
from toolkit.measure.janitor import Janitor
from toolkit.measure.peer import Peer, PeerGroup, made_by_exited_peer
from toolkit.measure.sandbox import CLONE_NEWIPC, CLONE_NEWNS, ipc_sysctls, run_isolated
from toolkit.measure.sandbox import enter as _enter
from toolkit.proc.maps import find_mapping, read_maps, read_smaps
from toolkit.proc.pagemap import PAGE_SIZE, pfns_visible_here, read_pagemap
from toolkit.proc.system import read_sysvipc_shm
from toolkit.records import Step, Story
from toolkit.report.view import escape  # a library's path is anyone's bytes
from toolkit.units import counted


def _verdict(steps, good: str, bad: str) -> str:
    shown = [s for s in steps if s.holds is not None]
    if not shown:
        return "nothing could be shown on this machine: " + "; ".join(s.why_not for s in steps if s.why_not)
    if all(s.holds for s in shown):
        unshown = len(steps) - len(shown)
        return good + (f" ({counted(unshown, 'step')} could not be shown here)" if unshown else "")
    failed = [s.claim for s in shown if not s.holds]
    return bad + ": " + "; ".join(failed)


def _seg(shmid):
    return next((s for s in read_sysvipc_shm() if s.shmid == shmid), None)


# ------------------------------------------------------------------ lifetime


def _isolated(name: str) -> Story:
    """Run story `name` where its named objects cannot outlive the run (see measure.sandbox)."""
    run = run_isolated(f"toolkit.measure.stories:_{name}")
    return run.result._replace(where=run.where)


def lifetime() -> Story:
    return _isolated("lifetime")


def permissions() -> Story:
    return _isolated("permissions")


def namespaces() -> Story:
    return _isolated("namespaces")


def _lifetime(progress=None) -> Story:
    sysv, posix = mechanisms.get("sysv"), mechanisms.get("posix")
    steps = []
    with Janitor() as janitor:
        made = []
        try:
            # kernel.shm_rmid_forced=1 (hardened hosts; the private namespace takes this machine's value): a
            # segment nobody has attached goes with its creator, and any segment with its last detach
            forced = ipc_sysctls().get("shm_rmid_forced") == "1"
            creator_pid, handles = made_by_exited_peer(janitor, ("sysv", "posix"))
            made = list(handles.values())
            s_h, p_h = made
            seg = _seg(s_h.shmid)
            steps.append(Step(
                "A System V segment outlives the process that created it",
                (f"creator pid {creator_pid} has exited; /proc/sysvipc/shm "
                 + (f"still lists shmid {s_h.shmid} with nattch {seg.nattch} and cpid {seg.cpid}" if seg else
                    f"no longer lists shmid {s_h.shmid}")
                 + ("; kernel.shm_rmid_forced is 1 here: the kernel destroys a segment nobody is attached to when "
                    "its creator exits, and any segment at its last detach, as if marked for removal"
                    if forced else ""),),
                seg is not None and seg.nattch == 0 and seg.cpid == creator_pid))
            steps.append(Step(
                "A POSIX object outlives the process that created it",
                (f"/dev/shm{p_h.name} exists after its creator exited: {posix.exists(p_h)}",), posix.exists(p_h)))
            # IPC_RMID and shm_unlink while still attached
            with PeerGroup(1) as g:
                peer = g[0]
                alive = seg is not None  # gone with its creator where shm_rmid_forced is 1: nothing to mark
                gone_why = (f"shmid {s_h.shmid} did not outlive its creator"
                            + (" (kernel.shm_rmid_forced is 1 here)" if forced else ""))
                if alive:
                    peer.call("attach", region="s", handle=s_h.to_json())
                peer.call("attach", region="p", handle=p_h.to_json())
                token = secrets.token_hex(4)
                if alive:
                    sysv.destroy(s_h)
                    seg = _seg(s_h.shmid)
                    peer.call("write", region="s", offset=0, data=token)
                    still = peer.call("read", region="s", offset=0, n=4)["data"] == token
                    steps.append(Step(
                        "IPC_RMID on an attached segment only marks it: its key turns to 0, it lives on while attached",
                        (f"after IPC_RMID: key {seg.key if seg else '-'}, marked for destruction "
                         f"{seg.marked_for_removal if seg else '-'}, nattch {seg.nattch if seg else '-'}; "
                         f"the peer still reads its own write: {still}",),
                        seg is not None and seg.key == 0 and seg.marked_for_removal and still))
                else:
                    steps.append(Step("IPC_RMID on an attached segment only marks it: its key turns to 0, it lives "
                                      "on while attached", (), None, gone_why))
                posix.destroy(p_h)
                maps_name = next((m.name for m in read_maps(peer.pid) if m.path.endswith(p_h.name.lstrip("/"))), "?")
                peer.call("write", region="p", offset=0, data=token)
                still_p = peer.call("read", region="p", offset=0, n=4)["data"] == token
                steps.append(Step(
                    "shm_unlink of a mapped POSIX object removes the name at once; the mapping lives on",
                    (f"/dev/shm{p_h.name} exists: {posix.exists(p_h)}; the peer's maps show {maps_name!r}; "
                     f"it still reads its own write: {still_p}",),
                    not posix.exists(p_h) and maps_name.endswith("(deleted)") and still_p))
                if alive:
                    peer.call("detach", region="s")
                    gone = _seg(s_h.shmid) is None
                    steps.append(Step(
                        "The segment marked for removal goes at its last detach",
                        (f"after the peer's shmdt, shmid {s_h.shmid} in /proc/sysvipc/shm: {not gone}",), gone))
                else:
                    steps.append(Step("The segment marked for removal goes at its last detach", (), None, gone_why))
            # a library: nothing to clean
            before = ({s.shmid for s in read_sysvipc_shm()}, set(os.listdir("/dev/shm")))
            with PeerGroup(1) as g:
                g[0].call("attach", region="l", handle=mechanisms.get("dso").new_handle(path=None).to_json())
            after = ({s.shmid for s in read_sysvipc_shm()}, set(os.listdir("/dev/shm")))
            steps.append(Step(
                "A library's pages need no cleanup: loading it creates no object anywhere",
                (f"a peer loaded {mechanisms.get('dso').new_handle(path=None).path} and exited; new System V "
                 f"segments: {len(after[0] - before[0])}, new /dev/shm names: {len(after[1] - before[1])}",),
                after == before))
        finally:
            for h in made:
                mechanisms.get(h.mechanism).destroy(h)
    return Story("lifetime", "Lifetime: who cleans up", tuple(steps), _verdict(
        steps, "explicit objects live until someone removes them (System V even with nobody attached); "
               "a library's pages are the page cache's and need no cleanup", "some lifetime claims did not hold"))


# ------------------------------------------------------------------ permissions


def _permissions(progress=None) -> Story:
    title = "Permissions: who else may attach"
    if os.geteuid() != 0:
        why = "acting as another user (uid 65534) needs root"
        return Story("permissions", title, (Step("another user is refused 0600 objects", (), None, why),),
                     "could not be shown: " + why, why)
    from toolkit.measure.runas import make_runtime

    sysv, posix, dso = mechanisms.get("sysv"), mechanisms.get("posix"), mechanisms.get("dso")
    steps = []
    try:
        runtime = make_runtime()
    except ShmkitError as err:  # no interpreter the other user may run that can load our compiled modules
        why = f"acting as uid 65534: {err}"
        return Story("permissions", title, (Step("another user is refused 0600 objects", (), None, why),),
                     "could not be shown: " + why, why)
    with runtime as rt, Janitor():
        hs = [sysv.new_handle(PAGE_SIZE), posix.new_handle(PAGE_SIZE), sysv.new_handle(PAGE_SIZE), posix.new_handle(PAGE_SIZE)]
        modes = (0o600, 0o600, 0o666, 0o666)
        try:
            for h, mode in zip(hs, modes):
                mechanisms.get(h.mechanism).create(h, mode)  # named: the other user opens them by name
            other = Peer(runtime=rt)
            try:
                other.call("info")
                res = [other.call("try_attach", region=f"r{i}", handle=h.by_name().to_json())
                       for i, h in enumerate(hs)]
                lib = other.call("try_attach", region="lib", handle=dso.new_handle(path=None).to_json())
                text_ok = False
                if lib["attached"]:
                    text = other.call("info")["regions"]["lib"]
                    other.call("touch", region="lib", write=False)
                    other.call("peek", addr=text[0], n=16)
                    text_ok = True
            finally:
                other.close()
            for (h, mode), r in zip(zip(hs, modes), res):
                kind = "System V segment" if h.mechanism == "sysv" else "POSIX object"
                expect = mode == 0o666
                steps.append(Step(
                    f"uid {rt.uid} {'can' if expect else 'cannot'} attach a {mode:04o} {kind} of root's",
                    (("attached" if r["attached"] else f"refused: {r['why']}"),), r["attached"] == expect))
            steps.append(Step(
                f"uid {rt.uid} can always read and execute a library's code",
                (f"loaded {dso.new_handle(path=None).path} and read its code pages: {text_ok}",), text_ok))
        finally:
            for h in hs:
                mechanisms.get(h.mechanism).destroy(h)
    return Story("permissions", title, tuple(steps), _verdict(
        steps, "mode bits decide who attaches explicit objects (0600: the owner only; 0666: everyone); a library's "
               "code is readable by all", "some permission claims did not hold"))


# ------------------------------------------------------------------ namespaces


def _namespaces(progress=None) -> Story:
    title = "Namespaces: where each kind is visible"
    # not root: sandbox.enter makes the namespaces inside a new user namespace, where the kernel allows
    # that; whether it does is learnt from the peer, not assumed
    sysv, posix = mechanisms.get("sysv"), mechanisms.get("posix")
    steps = []
    with Janitor():
        s_h, p_h = sysv.new_handle(PAGE_SIZE), posix.new_handle(PAGE_SIZE)
        try:
            sysv.create(s_h)
            posix.create(p_h)
            try:
                peer = Peer(preexec_fn=_enter(CLONE_NEWIPC))
                try:
                    peer.call("info")
                except PeerFailed as err:
                    why = f"this machine refuses a new IPC namespace ({err})"
                    return Story("namespaces", title, (Step("a new IPC namespace hides System V segments", (), None, why),),
                                 "could not be shown: " + why, why)
                ids = peer.call("sysv_ids")["shmids"]
                a = peer.call("try_attach", region="s", handle=s_h.to_json())
                b = peer.call("try_attach", region="p", handle=p_h.by_name().to_json())
            finally:
                peer.close()
            steps.append(Step(
                "In a new IPC namespace a System V segment is invisible",
                (f"the peer's /proc/sysvipc/shm lists {counted(len(ids), 'segment')}, ours (shmid {s_h.shmid}) "
                 f"{'among them' if s_h.shmid in ids else 'not among them'}; shmat: "
                 f"{'attached' if a['attached'] else a['why']}",),
                s_h.shmid not in ids and not a["attached"]))
            steps.append(Step(
                "A POSIX object stays reachable there: it is a file in /dev/shm, and the mount is shared",
                (f"shm_open in the new IPC namespace: {'opened and mapped' if b['attached'] else b['why']}",),
                b["attached"]))
            peer = Peer(preexec_fn=_enter(CLONE_NEWIPC | CLONE_NEWNS, private_dev_shm=True))
            try:
                try:
                    peer.call("info")
                    c = peer.call("try_attach", region="p", handle=p_h.by_name().to_json())
                    steps.append(Step(
                        "With a new mount namespace and its own /dev/shm, the POSIX object is gone too",
                        (f"shm_open: {'opened' if c['attached'] else c['why']}",), not c["attached"]))
                except PeerFailed as err:
                    steps.append(Step("With a new mount namespace and its own /dev/shm, the POSIX object is gone too",
                                      (), None, f"this machine refuses a new mount namespace ({err})"))
            finally:
                peer.close()
        finally:
            sysv.destroy(s_h)
            posix.destroy(p_h)
    return Story("namespaces", title, tuple(steps), _verdict(
        steps, "System V segments belong to an IPC namespace; POSIX objects to whatever /dev/shm is mounted",
        "some namespace claims did not hold"))


# ------------------------------------------------------------------ protection


def protection(library: str | None = None, peers: int = 3) -> Story:
    dso = mechanisms.get("dso")
    h = dso.new_handle(path=library)
    privileged = pfns_visible_here()
    steps = []
    with PeerGroup(peers) as g:
        replies = g.call_all("attach", region="lib", handle=h.to_json())
        text = [r["extra"]["text"][0] for r in replies]  # (start, end, offset) per peer
        # a page in the middle of the code, the same file offset in every peer
        page_off = ((text[0][1] - text[0][0]) // 2) // PAGE_SIZE * PAGE_SIZE
        victim, writer = g[0], g[1]
        addr_v = text[0][0] + page_off
        try:
            byte = victim.call("peek", addr=addr_v, n=1)["data"]
            victim.call("poke", addr=addr_v, data=byte)
            died, how = False, "the write succeeded"
        except PeerFailed as err:
            died, how = "SIGSEGV" in str(err), str(err)
        steps.append(Step(
            "The hardware refuses a write to a library's code page: the writer dies of SIGSEGV",
            (f"peer {victim.pid} wrote one byte to its r-xp page at {addr_v:#x}: {how}",), died))
        addr_w = text[1][0] + page_off
        others = [(g[i].pid, text[i][0] + page_off) for i in range(2, len(g))]
        # read first: the page is in the writer's page tables only once it has touched it (a page of libc's
        # code nobody ran there yet has no PFN to compare)
        byte = writer.call("peek", addr=addr_w, n=1)["data"]
        for i in range(2, len(g)):
            g[i].call("peek", addr=text[i][0] + page_off, n=1)
        before = read_pagemap(writer.pid, addr_w, addr_w + 1).pfns[0] if privileged else None
        try:
            writer.call("mprotect", addr=addr_w, length=PAGE_SIZE, prot=vm.PROT_READ | vm.PROT_WRITE | vm.PROT_EXEC)
            writer.call("poke", addr=addr_w, data=byte)  # the same value: the write is what matters
            e = find_mapping(read_smaps(writer.pid), addr_w)
            after = read_pagemap(writer.pid, addr_w, addr_w + 1).pfns[0] if privileged else None
            other_pfns = [read_pagemap(pid, a, a + 1).pfns[0] for pid, a in others] if privileged else []
            ev = [f"after mprotect(PROT_WRITE) peer {writer.pid} wrote the page: mapping now {e.mapping.perms} "
                  f"with Private_Dirty {e.get('Private_Dirty', 0)} bytes"]
            if privileged:
                def pfn(p):
                    return "not present" if p is None else f"{p:#x}"

                ev.append(f"its PFN went {pfn(before)} -> {pfn(after)}; the other peers still map "
                          + ", ".join(pfn(p) for p in other_pfns))
                holds = (e.get("Private_Dirty", 0) == PAGE_SIZE and None not in (before, after) and after != before
                         and all(p == before for p in other_pfns))
            else:
                holds = e.get("Private_Dirty", 0) == PAGE_SIZE
            steps.append(Step(
                "After mprotect(PROT_WRITE) the write succeeds, and that page becomes the writer's private copy",
                tuple(ev), holds, "" if privileged else "PFNs need root: shown by Private_Dirty only"))
        except PeerFailed as err:
            steps.append(Step("After mprotect(PROT_WRITE) the write succeeds", (), None, f"refused here: {err}"))
    return Story("protection", "Protection: code pages are read-only, and shared only while clean", tuple(steps),
                 _verdict(steps, "code is shared because nobody may write it; a forced write makes a private copy "
                                 "and leaves the other processes' shared page alone",
                          "some protection claims did not hold"))


# ------------------------------------------------------------------ globals

CLEAN_DATA_CANDIDATES = ("libonig.so.5", "libpython3.11.so.1.0", "libpython3.12.so.1.0", "libperl.so.5.36")


def globals_(library: str | None = None, peers: int = 3) -> Story:
    from toolkit.measure.library import data_symbol
    from toolkit.mechanisms.dso import resolve_library

    dso = mechanisms.get("dso")
    h = dso.new_handle(path=library)
    symbol = data_symbol(h.path)
    steps = []
    with PeerGroup(peers) as g:
        g.call_all("attach", region="lib", handle=h.to_json())
        if symbol:
            addrs = [p.call("symbol", region="lib", name=symbol)["addr"] for p in g]
            olds = [p.call("peek", addr=a, n=1)["data"] for p, a in zip(g, addrs)]
            values = [(0x40 + i) & 0xFF for i in range(len(g))]
            for p, a, v in zip(g, addrs, values):
                p.call("poke", addr=a, data=f"{v:02x}")
            back = [int(p.call("peek", addr=a, n=1)["data"], 16) for p, a in zip(g, addrs)]
            for p, a, old in zip(g, addrs, olds):
                p.call("poke", addr=a, data=old)
            steps.append(Step(
                f"A library global ({symbol}) is per process: each peer writes its own value and reads it back",
                (f"peers wrote {values} and read back {back}",), back == values))
        else:
            steps.append(Step("A library global is per process", (), None, f"no global variable found in {escape(h.path)}"))
    # pages of the data segment nobody wrote are still the page cache's (Shared_Clean) until the first write
    chosen = None
    instead = ()  # the library the user named, when another shows this step: why
    for name in ((library,) if library else ()) + CLEAN_DATA_CANDIDATES:
        try:
            chosen = resolve_library(name)
        except ShmkitError:
            continue
        with PeerGroup(1) as g:
            try:
                r = g[0].call("attach", region="lib", handle={"mechanism": "dso", "size": 0, "path": chosen})
            except PeerFailed:
                continue
            lo, hi = r["extra"]["data_file"][0] if r["extra"]["data_file"] else (0, 0)
            if hi <= lo:
                if name == library:
                    instead = (f"{escape(chosen)} has no writable mapping of its file (its RW segment is all "
                               "RELRO, read-only once relocated, or all .bss): shown with another library",)
                continue
            g[0].call("touch", region="lib", write=False, addr=lo, length=hi - lo)
            e = find_mapping(read_smaps(g[0].pid), lo)
            rng = read_pagemap(g[0].pid, lo, hi)
            clean = [i for i, (pr, f) in enumerate(zip(rng.present, rng.file_or_shared_anon)) if pr and f]
            if not clean:
                if name == library:
                    instead = (f"{escape(chosen)}: every page of its rw-p mapping ({counted(len(rng), 'page')}) was "
                               "written at load (relocations, start-up code): shown with another library",)
                continue
            page = lo + clean[0] * PAGE_SIZE
            pd0 = e.get("Private_Dirty", 0)
            byte = g[0].call("peek", addr=page, n=1)["data"]
            g[0].call("poke", addr=page, data=byte)
            e2 = find_mapping(read_smaps(g[0].pid), lo)
            after = read_pagemap(g[0].pid, page, page + 1)
            file_after = after.file_or_shared_anon[0]
            clean_bytes = e.get("Shared_Clean", 0) + e.get("Private_Clean", 0)
            smaps_says = f"smaps: Shared_Clean + Private_Clean {clean_bytes} bytes"
            if clean_bytes < len(clean) * PAGE_SIZE:
                # a file written a moment ago (a library just built) has pages dirty in the page cache,
                # which smaps counts as dirty although no process wrote them: pagemap is the witness here
                smaps_says += (f", Private_Dirty {pd0} bytes: the file was written recently, and smaps counts "
                               "its pages that the page cache has not yet written back as dirty")
            moved = (f", PFN {rng.pfns[clean[0]]:#x} -> {after.pfns[0]:#x}"
                     if after.pfns_visible and after.pfns[0] is not None and rng.pfns[clean[0]] is not None else "")
            steps.append(Step(
                "Data pages nobody wrote are still shared with the page cache until the first write",
                instead + (f"{escape(chosen)}: pagemap shows {len(clean)} of {counted(len(rng), 'page')} of its rw-p "
                           f"mapping still the file's pages in the page cache ({smaps_says})",
                           f"one write to one of them: the page is "
                           f"{'still the file' if file_after else 'now anonymous (a private copy)'}{moved}; "
                           f"Private_Dirty {pd0} -> {e2.get('Private_Dirty', 0)} bytes"),
                # the page turning from the file's into an anonymous one is the proof; Private_Dirty may
                # already count page-cache pages that are dirty in the cache (a file just written)
                not file_after and (not after.pfns_visible or after.pfns[0] != rng.pfns[clean[0]])))
            break
    else:
        steps.append(Step("Data pages nobody wrote are still shared with the page cache", (), None,
                          "no library on this machine has a data page that start-up left unwritten"))
    return Story("globals", "Globals: a library's data is per process (copy on write)", tuple(steps), _verdict(
        steps, "each process has its own copy of a library's globals, made page by page on first write",
        "some claims about globals did not hold"))


# ------------------------------------------------------------------ pic


def pic(library: str | None = None, peers: int = 4) -> Story:
    from toolkit.measure.pic import load_layout

    r = load_layout(library, peers)
    steps = (
        Step("Each process loads the library at its own address (ASLR)",
             tuple(f"pid {p.pid}: base {p.base:#x}" for p in r.peers), r.distinct_bases == len(r.peers)),
        Step("The distance from its code to its data is the same everywhere (position independent code)",
             tuple(f"pid {p.pid}: code->data {p.text_to_data:#x}" for p in r.peers), r.same_distance),
    )
    return Story("pic", "Position independence: one copy of code at many addresses", steps, _verdict(
        list(steps), "the same code pages work at any address, because the code reaches its data relative to itself",
        "some claims about position independence did not hold"))


STORIES = {"lifetime": lifetime, "permissions": permissions, "namespaces": namespaces,
           "protection": protection, "globals": globals_, "pic": pic}


# ------------------------------------------------------------------ who is attached (demos/who_is_attached.py)


def who_is_attached(progress=None) -> list:
    """Three peers share a System V segment and a POSIX object, both named; one segment nobody maps.
    Returns the lines to print."""
    from toolkit.measure.system import scan_segments

    sysv, posix = mechanisms.get("sysv"), mechanisms.get("posix")
    shared = [sysv.new_handle(1 << 20), posix.new_handle(1 << 20)]
    lonely = sysv.new_handle(64 << 10)
    out = []
    with Janitor(), PeerGroup(3) as peers:
        try:
            for h in shared:
                mechanisms.get(h.mechanism).create(h)
                peers.call_all("attach", region=h.mechanism, handle=h.to_json())
            sysv.create(lonely)
            report = scan_segments()
            seg = next(o for o in report.sysv if o.shmid == shared[0].shmid)
            obj = next(o for o in report.posix if "/" + o.name == shared[1].name)
            alone = next(o for o in report.sysv if o.shmid == lonely.shmid)
            out.append(f"System V segment {seg.name} (shmid {seg.shmid}): nattch {seg.nattch}; attached now:")
            out += [f"    pid {a.pid}: {a.command}" for a in seg.attachers]
            out.append(f"POSIX object /dev/shm/{obj.name}: ipcs cannot see it; mapped by:")
            out += [f"    pid {a.pid}: {a.command}" for a in obj.attachers]
            out.append(f"System V segment {alone.name} (shmid {alone.shmid}): nattch {alone.nattch}, "
                       f"{'ORPHAN: nothing maps it and nobody removed it, it stays until reboot' if alone.orphan else 'not an orphan'}.")
            found = {a.pid for a in seg.attachers} == {p.pid for p in peers}
            out.append(f"\nThe peers are processes {', '.join(str(p.pid) for p in peers)}: "
                       f"{'exactly those' if found else 'NOT those'} were found attached.")
        finally:
            for h in shared + [lonely]:
                mechanisms.get(h.mechanism).destroy(h)
    return out
