"""Peer processes: fresh interpreters (spawned, not forked) that attach regions and answer commands.

Protocol: one JSON object per line on stdin, one JSON answer per line on stdout.
A peer dies with its parent: PR_SET_PDEATHSIG, and it exits on EOF of stdin as well.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from toolkit.errors import PeerFailed, ShmkitError


class Peer:
    """The parent's end of one peer."""

    def __init__(self, env=None, runtime=None, preexec_fn=None):
        """runtime: a measure.runas.Runtime, to run the peer as another user; preexec_fn: runs in the
        child before exec (to enter new namespaces)."""
        python = runtime.python if runtime else sys.executable
        cmd = [python, "-m", "toolkit.measure.peer", str(os.getpid())]
        extra = {}
        if runtime is not None:
            env = runtime.env
            extra = dict(user=runtime.uid, group=runtime.uid, extra_groups=[], cwd=runtime.root)
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, bufsize=1, env=env, preexec_fn=preexec_fn, **extra,
        )
        self.pid = self.proc.pid

    def call(self, op: str, **args):
        try:
            self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except (BrokenPipeError, OSError):
            line = ""
        if not line:
            rc = self.proc.wait(timeout=5)
            err = self.proc.stderr.read().strip().splitlines()
            raise PeerFailed(f"peer {self.pid} died during {op!r} ({describe_exit(rc)})"
                             + (f": {err[-1]}" if err else ""))
        reply = json.loads(line)
        if not reply.get("ok"):
            raise PeerFailed(f"peer {self.pid}: {reply.get('error')}")
        return reply

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except OSError:
                pass

    def kill(self, sig=signal.SIGKILL):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)


def describe_exit(rc) -> str:
    if rc is None:
        return "still running"
    if rc < 0:
        return f"killed by {signal.Signals(-rc).name}"
    return f"exit status {rc}"


class PeerGroup:
    """N peers, always reaped: use as a context manager."""

    def __init__(self, n: int, env=None):
        self.peers = []
        try:
            for _ in range(n):
                self.peers.append(Peer(env))
        except BaseException:
            self.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __iter__(self):
        return iter(self.peers)

    def __len__(self):
        return len(self.peers)

    def __getitem__(self, i):
        return self.peers[i]

    def call_all(self, op, **args):
        """Send to all first, then collect, so the peers work in parallel."""
        line = json.dumps({"op": op, **args}) + "\n"
        for p in self.peers:
            p.proc.stdin.write(line)
            p.proc.stdin.flush()
        out = []
        for p in self.peers:
            reply_line = p.proc.stdout.readline()
            if not reply_line:
                rc = p.proc.wait(timeout=5)
                raise PeerFailed(f"peer {p.pid} died during {op!r} ({describe_exit(rc)})")
            reply = json.loads(reply_line)
            if not reply.get("ok"):
                raise PeerFailed(f"peer {p.pid}: {reply.get('error')}")
            out.append(reply)
        return out

    def close(self):
        for p in self.peers:
            p.close()


def made_by_exited_peer(janitor, names, env=None) -> tuple:
    """A fresh peer creates one small object of each named mechanism and exits without removing them.
    Returns (the creator's pid, {name: Handle}); the caller removes the objects (the janitor knows them)."""
    from toolkit import mechanisms
    from toolkit.mechanisms import Handle

    page = os.sysconf("SC_PAGE_SIZE")
    handles = {n: mechanisms.get(n).new_handle(page) for n in names}
    janitor.watch(*handles.values())
    creator = Peer(env)
    try:
        for name, h in handles.items():
            handles[name] = Handle.from_json(creator.call("create", handle=h.to_json())["handle"])
            janitor.watch(handles[name])
    finally:
        creator.close()
    return creator.pid, handles


# ------------------------------------------------------------------ the peer's side


class _Server:
    def __init__(self):
        self.atts = {}  # region id -> Attachment
        self.mechs = {}

    def mech(self, name):
        from toolkit import mechanisms

        if name not in self.mechs:
            self.mechs[name] = mechanisms.get(name)
        return self.mechs[name]

    def op_info(self):
        return {"pid": os.getpid(), "regions": {k: [a.addr, a.length] for k, a in self.atts.items()}}

    def op_attach(self, region, handle):
        from toolkit import vm
        from toolkit.mechanisms import Handle

        h = Handle.from_json(handle)
        m = self.mech(h.mechanism)
        f0, t0 = vm.minor_faults(), time.monotonic()
        att = m.attach(h)
        t1, f1 = time.monotonic(), vm.minor_faults()
        self.atts[region] = att
        return {"addr": att.addr, "length": att.length, "extra": att.extra, "attach_s": t1 - t0,
                "faults": f1 - f0, "pid": os.getpid()}

    def op_touch(self, region, write=True, addr=None, length=None):
        from toolkit import vm

        att = self.atts[region]
        addr = att.addr if addr is None else addr
        length = att.length if length is None else length
        f0, t0 = vm.minor_faults(), time.monotonic()
        (vm.populate_write if write else vm.populate_read)(addr, length)
        t1, f1 = time.monotonic(), vm.minor_faults()
        return {"seconds": t1 - t0, "faults": f1 - f0}

    def op_write(self, region, offset, data):
        from toolkit import vm

        vm.write(self.atts[region].addr + offset, bytes.fromhex(data))
        return {}

    def op_read(self, region, offset, n):
        from toolkit import vm

        return {"data": vm.read(self.atts[region].addr + offset, n).hex()}

    def op_poke(self, addr, data):
        from toolkit import vm

        vm.write(addr, bytes.fromhex(data))
        return {}

    def op_peek(self, addr, n):
        from toolkit import vm

        return {"data": vm.read(addr, n).hex()}

    def op_symbol(self, region, name):
        import ctypes

        lib = self.atts[region].obj
        return {"addr": ctypes.addressof(ctypes.c_char.in_dll(lib, name))}

    def op_try_attach(self, region, handle):
        """Attach if we can; say why not if we cannot (a visibility probe, not an error)."""
        try:
            reply = self.op_attach(region, handle)
            return {"attached": True, "addr": reply["addr"]}
        except ShmkitError as err:
            return {"attached": False, "why": str(err), "kind": type(err).__name__}

    def op_sysv_ids(self):
        """The shmids this process can see in /proc/sysvipc/shm (its IPC namespace)."""
        from toolkit.proc.system import read_sysvipc_shm

        return {"shmids": [s.shmid for s in read_sysvipc_shm()]}

    def op_mprotect(self, addr, length, prot):
        from toolkit import vm

        vm.mprotect(addr, length, prot)
        return {}

    def op_detach(self, region):
        att = self.atts.pop(region)
        self.mech(att.handle.mechanism).detach(att)
        return {}

    def op_second(self, handle):
        """A second process's phases on an existing object: attach, read every page, detach."""
        from toolkit import vm
        from toolkit.mechanisms import Handle

        h = Handle.from_json(handle)
        m = self.mech(h.mechanism)
        out = {}
        f0, t0 = vm.minor_faults(), time.monotonic()
        att = m.attach(h)
        t1, f1 = time.monotonic(), vm.minor_faults()
        out["second_attach"] = (t1 - t0, f1 - f0)
        try:
            f0, t0 = vm.minor_faults(), time.monotonic()
            vm.populate_read(att.addr, att.length)
            t1, f1 = time.monotonic(), vm.minor_faults()
            out["read_through"] = (t1 - t0, f1 - f0)
        finally:
            f0, t0 = vm.minor_faults(), time.monotonic()
            m.detach(att)
            t1, f1 = time.monotonic(), vm.minor_faults()
        out["second_detach"] = (t1 - t0, f1 - f0)
        return out

    def op_library_phases(self, path, repeat, warmup=1, symbol=None, cold=False):
        from toolkit.measure.setup import library_phases

        s, note = library_phases(path, repeat, warmup, symbol, cold)
        return {"seconds": s.seconds, "faults": s.faults, "note": note}

    def op_create(self, handle, mode=0o600):
        """Create an object and keep nothing: used to show what outlives its creator."""
        from toolkit.mechanisms import Handle

        h = Handle.from_json(handle)
        self.mech(h.mechanism).create(h, mode)
        return {"handle": h.to_json()}


def serve(parent_pid: int) -> int:
    from toolkit import vm

    vm.die_with_parent(signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        return 1
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we go
    server = _Server()
    for line in sys.stdin:
        req = json.loads(line)
        op = req.pop("op")
        if op == "exit":
            break
        try:
            reply = getattr(server, "op_" + op)(**req)
            reply["ok"] = True
        except (ShmkitError, OSError, KeyError, ValueError) as err:
            reply = {"ok": False, "error": str(err) or type(err).__name__, "kind": type(err).__name__}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(serve(int(sys.argv[1])))
