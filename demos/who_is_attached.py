#!/usr/bin/env python3
"""Who is attached? Three processes share a System V segment and a POSIX object; one object nobody maps.

`ipcs -m` would say "nattch 3" and nothing about POSIX; shmkit names the processes, through their maps.
Run: python3 demos/who_is_attached.py
"""
from toolkit import mechanisms
from toolkit.measure.janitor import Janitor
from toolkit.measure.peer import PeerGroup
from toolkit.measure.system import scan_segments

sysv, posix = mechanisms.get("sysv"), mechanisms.get("posix")
with Janitor() as janitor, PeerGroup(3) as peers:
    shared = [sysv.new_handle(1 << 20), posix.new_handle(1 << 20)]
    lonely = sysv.new_handle(64 << 10)
    janitor.watch(*shared, lonely)
    try:
        for h in shared:
            (sysv if h.mechanism == "sysv" else posix).create(h)
            peers.call_all("attach", region=h.mechanism, handle=h.to_json())
        sysv.create(lonely)
        report = scan_segments()
        seg = next(o for o in report.sysv if o.shmid == shared[0].shmid)
        obj = next(o for o in report.posix if "/" + o.name == shared[1].name)
        alone = next(o for o in report.sysv if o.shmid == lonely.shmid)
        print(f"System V segment {seg.name} (shmid {seg.shmid}): nattch {seg.nattch}; attached now:")
        for a in seg.attachers:
            print(f"    pid {a.pid}: {a.command}")
        print(f"POSIX object /dev/shm/{obj.name}: ipcs cannot see it; mapped by:")
        for a in obj.attachers:
            print(f"    pid {a.pid}: {a.command}")
        print(f"System V segment {alone.name} (shmid {alone.shmid}): nattch {alone.nattch}, "
              f"{'ORPHAN: nothing maps it and nobody removed it, it stays until reboot' if alone.orphan else 'not an orphan'}.")
        print(f"\nThe peers are processes {', '.join(str(p.pid) for p in peers)}: "
              f"{'exactly those' if {a.pid for a in seg.attachers} == {p.pid for p in peers} else 'NOT those'} "
              "were found attached.")
    finally:
        for h in shared + [lonely]:
            (sysv if h.mechanism == "sysv" else posix).destroy(h)
        janitor.forget(*shared, lonely)
