#!/usr/bin/env python3
"""How tests/data/hosts/base was made: this machine's view of a few processes, recorded as a host tree
(proc/PID/{maps,smaps,smaps_rollup,status,stat,cmdline,comm}, proc/sysvipc/shm, proc/self/{status,
mountinfo}, dev/shm names with their metadata in recorded-stat.json) for the gateway's recorded mode.

Run as root: python3 tests/record_host.py DIR
It makes a System V segment and a POSIX object that one peer maps, an orphan segment and an orphan
object, records, and removes them all.
"""
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from toolkit import mechanisms  # noqa: E402
from toolkit.measure.peer import PeerGroup  # noqa: E402

PER_PID = ("maps", "smaps", "smaps_rollup", "status", "stat", "cmdline", "comm")


def copy(src, dst):
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    with open(src, "rb") as f:
        data = f.read()
    with open(dst, "wb") as f:
        f.write(data)


def record(out, pids, names):
    for pid in pids:
        for name in PER_PID:
            copy(f"/proc/{pid}/{name}", os.path.join(out, "proc", str(pid), name))
    for rel in ("sysvipc/shm", "meminfo", "sys/kernel/shmmax", "sys/kernel/shmall", "sys/kernel/shmmni",
                "self/status", "self/mountinfo"):
        copy(f"/proc/{rel}", os.path.join(out, "proc", rel))
    meta = {}
    os.makedirs(os.path.join(out, "dev", "shm"), exist_ok=True)
    for name in names:
        st = os.lstat(f"/dev/shm/{name}")
        open(os.path.join(out, "dev", "shm", name), "wb").close()
        meta[f"/dev/shm/{name}"] = dict(st_mode=st.st_mode, st_ino=st.st_ino, st_dev=st.st_dev, st_uid=st.st_uid,
                                        st_size=st.st_size, st_blocks=st.st_blocks)
    with open(os.path.join(out, "recorded-stat.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)


def main(out):
    shutil.rmtree(out, ignore_errors=True)
    sysv, posix = mechanisms.get("sysv"), mechanisms.get("posix")
    shared = [sysv.new_handle(1 << 20), posix.new_handle(1 << 20)]
    lonely = [sysv.new_handle(64 << 10), posix.new_handle(64 << 10)]
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        with PeerGroup(1) as peers:
            for h in shared + lonely:
                mechanisms.get(h.mechanism).create(h)
            for h in shared:
                peers.call_all("attach", region=h.mechanism, handle=h.by_name().to_json())
                peers[0].call("touch", region=h.mechanism)
            record(out, [peers[0].pid, sleeper.pid], [h.name.lstrip("/") for h in shared + lonely if h.name])
    finally:
        sleeper.kill()
        for h in shared + lonely:
            mechanisms.get(h.mechanism).destroy(h)


if __name__ == "__main__":
    main(sys.argv[1])
