"""Peers: separate processes that attach, answer, and never outlive their parent."""
import os
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import REPO
from toolkit import mechanisms
from toolkit.errors import PeerFailed
from toolkit.measure.peer import PeerGroup


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[1].split()[0] != "Z"


def test_peers_are_fresh_processes_and_share_a_segment():
    sysv = mechanisms.get("sysv")
    h = sysv.create_fresh(65536)
    try:
        with PeerGroup(2) as group:
            replies = group.call_all("attach", region="r", handle=h.to_json())
            sysv.destroy(h)  # marked for removal; the peers keep it
            assert {r["pid"] for r in replies} == {p.pid for p in group} and os.getpid() not in {p.pid for p in group}
            group[0].call("write", region="r", offset=100, data=b"peer".hex())
            assert bytes.fromhex(group[1].call("read", region="r", offset=100, n=4)["data"]) == b"peer"
            for p in group:
                with open(f"/proc/{p.pid}/status") as f:
                    assert f"PPid:\t{os.getpid()}" in f.read()
    finally:
        sysv.destroy(h)


def test_error_inside_a_peer_is_reported_and_nothing_leaks():
    with PeerGroup(1) as group:
        with pytest.raises(PeerFailed, match="no System V segment"):
            group[0].call("attach", region="x", handle={"mechanism": "sysv", "size": 4096, "shmid": 0x7FFFFFF0})
        assert group[0].call("info")["pid"] == group[0].pid  # still serving


def test_peer_dies_with_its_parent():
    # a middle process starts a peer, reports its pid, and is SIGKILLed: the peer must go too
    code = textwrap.dedent("""
        import sys, time
        from toolkit.measure.peer import Peer
        p = Peer()
        print(p.call("info")["pid"], flush=True)
        time.sleep(60)
    """)
    mid = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO)
    peer_pid = int(mid.stdout.readline())
    assert _alive(peer_pid)
    mid.kill()
    mid.wait()
    deadline = time.monotonic() + 5
    while _alive(peer_pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(peer_pid)


def test_janitor_removes_what_a_killed_parent_made():
    code = textwrap.dedent("""
        import json, sys, time
        from toolkit import mechanisms
        from toolkit.measure.janitor import Janitor
        j = Janitor()
        out = {}
        for name in ("sysv", "posix"):
            m = mechanisms.get(name)
            h = m.new_handle(8192)
            j.watch(h)
            m.create(h)
            out[name] = h.to_json()
        print(json.dumps(out), flush=True)
        time.sleep(60)
    """)
    import json

    mid = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO)
    made = json.loads(mid.stdout.readline())
    posix = mechanisms.get("posix")
    from toolkit.mechanisms import Handle

    assert posix.exists(Handle.from_json(made["posix"]))
    mid.kill()
    mid.wait()
    # the leak check around this test waits for the janitor and fails if anything stays
