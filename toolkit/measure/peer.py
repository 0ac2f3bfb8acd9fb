"""Peer processes: fresh interpreters (spawned, not forked) that attach regions and answer commands.

Protocol: one JSON object per line on stdin, one JSON answer per line on stdout.
A peer dies with its parent: PR_SET_PDEATHSIG, and it exits on EOF of stdin as well.
"""
from __future__ import annotations

import contextlib
import json
import os
import resource
import select
import signal
import subprocess
import sys
import time

from toolkit.errors import PeerFailed, ShmkitError

# A peer that gives no sign of life for this long is stuck (SIGSTOP, a debugger, a hung fault): a
# start-up under load takes well under a second; work on a region gets a second more per 64 MiB,
# twenty times slower than a busy machine touches memory.
BASE_LIMIT_S = 20.0
BYTES_PER_S = 64 << 20


def time_limit(work_bytes: int = 0) -> float:
    """Seconds to wait for a peer's answer to a call that handles `work_bytes` bytes."""
    return BASE_LIMIT_S + work_bytes / BYTES_PER_S


def _oom_kills():
    from toolkit.proc.system import oom_kills

    return oom_kills()


def _state(pid: int) -> str:
    from toolkit.proc.fs import default_fs

    return default_fs().state_letter(pid) or "?"


class Peer:
    """The parent's end of one peer. Every call has a time limit; a peer that dies, closes its pipe or
    stops answering raises PeerFailed naming its pid, the call and how it ended."""

    def __init__(self, env=None, runtime=None, preexec_fn=None):
        """runtime: a measure.runas.Runtime, to run the peer as another user; preexec_fn: runs in the
        child before exec (to enter new namespaces)."""
        python = runtime.python if runtime else sys.executable
        cmd = [python, "-m", "toolkit.measure.peer", str(os.getpid())]
        extra = {}
        if runtime is not None:
            env = runtime.env
            extra = dict(user=runtime.uid, group=runtime.uid, extra_groups=[], cwd=runtime.root)
        try:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                bufsize=0, env=env, preexec_fn=preexec_fn, **extra,
            )
        except BlockingIOError as err:  # fork's EAGAIN names no limit: say which ones may have said no
            raise spawn_refused("a peer") from err
        self.pid = self.proc.pid
        # a preexec_fn may say what its own exit statuses mean (sandbox.enter: which step the kernel refused)
        self._exit_meanings = getattr(preexec_fn, "exit_meanings", {})
        self._oom_before = _oom_kills()
        self._buf = b""
        self.busy = False  # a request sent, its answer not read yet

    def call(self, op: str, *, work: int = 0, what: str | None = None, progress=None, **args):
        """Ask the peer to do `op` and wait for its answer, at most time_limit(work) seconds of silence;
        progress(what, done, total) receives the peer's progress lines, each of which resets the clock."""
        what = what or describe_call(op, args)
        self.send(op, what, **args)
        return self.receive(what, time_limit(work), progress)

    def send(self, op: str, what: str, **args) -> None:
        data = (json.dumps({"op": op, **args}) + "\n").encode()
        self.busy = True
        try:
            self.proc.stdin.write(data)
        except (BrokenPipeError, ConnectionResetError, ValueError):
            raise self._ended(what) from None

    def receive(self, what: str, limit: float, progress=None) -> dict:
        deadline = time.monotonic() + limit
        while True:
            reply = json.loads(self._line(what, deadline, limit))
            if "progress" in reply:
                if progress is not None:
                    progress(reply["progress"], reply.get("done"), reply.get("total"))
                deadline = time.monotonic() + limit
                continue
            self.busy = False
            if not reply.get("ok"):
                raise PeerFailed(f"peer {self.pid} failed during {what}: {reply.get('error')}", self.pid, what)
            return reply

    def _line(self, what: str, deadline: float, limit: float) -> bytes:
        fd = self.proc.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._stuck(what, limit)
            if not poller.poll(left * 1000):
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise self._ended(what)
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line

    def _last_error(self) -> str:
        """The peer's last line on stderr, if it left one (without blocking)."""
        try:
            os.set_blocking(self.proc.stderr.fileno(), False)
            text = (self.proc.stderr.read() or b"").decode(errors="replace").strip()
        except (OSError, ValueError):
            return ""
        return text.splitlines()[-1] if text else ""

    def _ended(self, what: str) -> PeerFailed:
        try:
            rc = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # it closed its pipe but lives on: make sure it goes
            self.proc.kill()
            self.proc.wait()
            return PeerFailed(f"peer {self.pid} closed its pipe during {what} and was killed", self.pid, what)
        err = self._last_error()
        verb = "died" if rc < 0 else "exited"
        how = describe_exit(rc)
        if rc in self._exit_meanings:
            how += f": {self._exit_meanings[rc]}"
        if rc == -signal.SIGKILL:
            how += self._oom_story()
        return PeerFailed(f"peer {self.pid} {verb} during {what} ({how})" + (f": {err}" if err else ""),
                          self.pid, what)

    def _oom_story(self) -> str:
        """', the OOM killer: ...' when the kernel's count of OOM kills rose while this peer lived (a SIGKILL
        nobody in shmkit sent is most often that), with the memory limit that applies here."""
        after = _oom_kills()
        if self._oom_before is None or after is None or after <= self._oom_before:
            return ""
        from toolkit.proc.system import read_limits
        from toolkit.units import size_words

        limits = read_limits()
        where = (f"the memory limit of cgroup {limits.cgroup} is {size_words(limits.cgroup_limit)}"
                 if limits.cgroup_limit is not None else f"{size_words(limits.mem_available)} MemAvailable")
        return f"; the OOM killer: /proc/vmstat oom_kill rose by {after - self._oom_before}, and {where}"

    def _stuck(self, what: str, limit: float) -> PeerFailed:
        state = _state(self.pid)
        how = {"T": "it was stopped (SIGSTOP)", "t": "it was stopped by a debugger",
               "D": "it was waiting in the kernel (state D)"}.get(state, f"state {state}")
        self.kill()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        return PeerFailed(f"peer {self.pid} stopped answering during {what} (no reply in {limit:.0f} s; {how}); "
                          "killed it", self.pid, what)

    def check_alive(self, what: str) -> None:
        """Raise PeerFailed if the peer has died (while we read its /proc files, say)."""
        if self.proc.poll() is not None or _state(self.pid) in ("Z", "X", "?"):
            raise self._ended(what)

    def close(self):
        if self.proc.poll() is None:
            if self.busy:  # interrupted in the middle of a call: it would not read EOF until done
                self.kill()
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except OSError:
                pass

    def kill(self, sig=signal.SIGKILL):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def describe_call(op: str, args: dict) -> str:
    region = args.get("region")
    return f"'{op}'" + (f" of {region}" if region else "")


def describe_exit(rc) -> str:
    if rc is None:
        return "still running"
    if rc == -signal.SIGBUS:  # what a shared mapping does when the page behind it cannot be had
        from toolkit.vm import NO_PAGE

        return f"killed by SIGBUS: {NO_PAGE}"
    if rc < 0:
        return f"killed by {signal.Signals(-rc).name}"
    return f"exit status {rc}"


def spawn_refused(what: str):
    """LimitExceeded for a fork the kernel refused with EAGAIN ('Resource temporarily unavailable'),
    naming the limits that count processes: a cgroup's pids.max (a container's), RLIMIT_NPROC."""
    from toolkit.errors import LimitExceeded
    from toolkit.proc.cgroup import task_headroom

    said = []
    room = task_headroom()
    if room is not None:
        said.append(room[1])
    soft = resource.getrlimit(resource.RLIMIT_NPROC)[0]
    if soft != resource.RLIM_INFINITY:
        said.append(f"RLIMIT_NPROC is {soft} (ulimit -u)")
    return LimitExceeded(f"could not start {what}: the kernel refused a new process (EAGAIN)"
                         + (f": {'; '.join(said)}" if said else " (kernel.threads-max, or memory for a new task)"))


def check_tasks(n: int) -> None:
    """Refuse n more processes where a pids cgroup (a container's pids limit) has no room for them; any
    count, since the check is a few small reads."""
    from toolkit.errors import LimitExceeded
    from toolkit.proc.cgroup import task_headroom

    room = task_headroom()
    if room is not None and n > room[0]:
        raise LimitExceeded(f"{n} peers do not fit: {room[1]} (room for {max(room[0], 0)} more)")


ROOM_CHECK_FROM = 16  # a few peers always fit; a large count is checked before the machine runs out
PEER_KERNEL_BYTES = 64 << 10  # page tables, kernel stack and pipes of one more process, roughly


def check_room_for_peers(n: int, first_pid: int, fs=None) -> None:
    """Refuse a group that cannot fit, before it is started: its memory (each peer's own pages, measured on
    the first one) against MemAvailable, and its processes against the kernel's pid and task limits and
    RLIMIT_NPROC. Thousands of interpreters would otherwise push the machine into the OOM killer."""
    from toolkit.errors import LimitExceeded
    from toolkit.proc.fs import default_fs
    from toolkit.proc.maps import read_rollup
    from toolkit.proc.system import read_limits
    from toolkit.units import size_words

    fs = fs or default_fs()
    caps = []
    for name in ("pid_max", "threads-max"):
        try:
            caps.append((int(fs.read_text("sys", "kernel", name).split()[0]), f"kernel.{name.replace('-', '_')}"))
        except (ShmkitError, ValueError, IndexError):
            pass
    pids = [name for name in os.listdir(fs.path()) if name.isdigit()]
    soft = resource.getrlimit(resource.RLIMIT_NPROC)[0]
    if soft != resource.RLIM_INFINITY and os.geteuid() != 0:  # it counts only our user's processes
        mine = 0
        for pid in pids:
            with contextlib.suppress(OSError):
                mine += os.stat(fs.path(pid)).st_uid == os.getuid()
        if mine + n > soft:
            raise LimitExceeded(f"{n} peers do not fit: this user runs {mine} processes and RLIMIT_NPROC is {soft}")
    for cap, what in caps:
        if len(pids) + n > cap:
            raise LimitExceeded(f"{n} peers do not fit: {len(pids)} processes run and {what} is {cap}")
    rollup = read_rollup(first_pid, fs, ("Private_Clean", "Private_Dirty"))
    own = rollup.get("Private_Clean", 0) + rollup.get("Private_Dirty", 0) + PEER_KERNEL_BYTES
    limits = read_limits(fs)
    bounds = [(limits.mem_available, "available (MemAvailable)"),
              (limits.cgroup_limit, f"the memory limit of cgroup {limits.cgroup}")]
    for bound, what in bounds:
        if bound is not None and own * (n - 1) > bound:
            raise LimitExceeded(
                f"{n} peers do not fit in memory: each takes about {size_words(own)} of its own (measured on "
                f"the first), {n - 1} more need {size_words(own * (n - 1))}, and {size_words(bound)} is {what}")
    _check_descriptors(n)


FDS_PER_PEER = 3  # we hold the write end of its stdin and the read ends of its stdout and stderr


def _check_descriptors(n: int) -> None:
    """Each peer costs us descriptors; a group beyond RLIMIT_NOFILE failed with EMFILE after seconds of
    starting peers. The soft limit is raised towards the hard one; beyond that the group is refused first."""
    from toolkit.errors import LimitExceeded
    from toolkit.proc.system import raise_nofile

    try:
        held = len(os.listdir("/proc/self/fd"))
    except OSError:
        return
    need = held + FDS_PER_PEER * n + 16  # and a few for the reads of /proc while they run
    allowed = raise_nofile(need)
    if allowed < need:
        raise LimitExceeded(f"{n} peers do not fit: they need about {need} open descriptors here and "
                            f"RLIMIT_NOFILE allows {allowed} (ulimit -n; raise the hard limit, or use fewer peers)")


class PeerGroup:
    """N peers, always reaped: use as a context manager."""

    def __init__(self, n: int, env=None, progress=None):
        self.peers = []
        check_tasks(n)
        try:
            for i in range(n):
                self.peers.append(Peer(env))
                if i == 0 and n > ROOM_CHECK_FROM:
                    self.peers[0].call("info")  # up and answering: what it holds is what each will hold
                    check_room_for_peers(n, self.peers[0].pid)
                if progress is not None and n > 20:
                    progress("starting peers", i + 1, n)
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

    def call_all(self, op, *, work: int = 0, progress=None, **args):
        """Send to all first, then collect, so the peers work in parallel (one deadline for all)."""
        what = describe_call(op, args)
        for p in self.peers:
            p.send(op, what, **args)
        # the answers are read one after another; the first call of many peers also waits for their start-up
        limit = time_limit(work) + len(self.peers) * 0.1
        deadline = time.monotonic() + limit
        out = []
        for i, p in enumerate(self.peers):
            out.append(p.receive(what, max(deadline - time.monotonic(), 0.5)))
            if progress is not None and len(self.peers) > 20:
                progress(f"{what}: answered", i + 1, len(self.peers))
        return out

    def close(self):
        for p in self.peers:
            p.close()


def made_by_exited_peer(janitor, names, env=None) -> tuple:
    """A fresh peer creates one small named object of each mechanism and exits without removing them.
    Returns (the creator's pid, {name: Handle}); the caller removes the objects (the janitor, told of
    the creator, removes them if the caller is killed first)."""
    from toolkit import mechanisms
    from toolkit.mechanisms import Handle

    page = os.sysconf("SC_PAGE_SIZE")
    handles = {n: mechanisms.get(n).new_handle(page) for n in names}
    creator = Peer(env)
    try:
        janitor.watch_process(creator.pid)
        for name, h in handles.items():
            handles[name] = Handle.from_json(creator.call("create", handle=h.to_json())["handle"])
    finally:
        creator.close()
    return creator.pid, handles


# ------------------------------------------------------------------ the peer's side


class _Server:
    def __init__(self, out):
        self.atts = {}  # region id -> Attachment
        self.mechs = {}
        self.out = out

    def send(self, msg: dict) -> None:
        self.out.write(json.dumps(msg).encode() + b"\n")
        self.out.flush()

    def progress(self, what, done=None, total=None) -> None:
        """A sign of life for the parent (it resets the parent's clock) and something to show."""
        self.send({"progress": what, "done": done, "total": total})

    def mech(self, name):
        from toolkit import mechanisms

        if name not in self.mechs:
            self.mechs[name] = mechanisms.get(name)
        return self.mechs[name]

    def op_ipc_sysctls(self):
        from toolkit.measure.sandbox import ipc_sysctls

        return {"sysctls": ipc_sysctls()}

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
        """Create a named object and keep nothing: used to show what outlives its creator."""
        from toolkit.mechanisms import Handle

        h = Handle.from_json(handle)
        self.mech(h.mechanism).create(h, mode)
        return {"handle": h.to_json()}

    def op_run(self, target, kwargs=None):
        """Run a function of toolkit's (module:name, JSON arguments and progress) here, where this peer
        lives (a private namespace). The result, or the library error it raised, comes back pickled:
        both ends run this same code."""
        import base64
        import importlib
        import pickle

        module, _, name = target.partition(":")
        if not module.startswith("toolkit."):
            raise ValueError(f"not a toolkit function: {target}")
        fn = getattr(importlib.import_module(module), name)
        try:
            result = {"result": fn(progress=self.progress, **(kwargs or {}))}
        except ShmkitError as err:
            result = {"error": err}
        return {"pickle": base64.b64encode(pickle.dumps(result)).decode()}


def serve(parent_pid: int) -> int:
    from toolkit import vm

    vm.die_with_parent(signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        return 1
    # the parent decides when we go (EOF, or its death): a SIGTERM to the whole tree must end shmkit
    # with 143, not let it see a dead peer first and report a failure
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    server = _Server(sys.stdout.buffer)
    try:
        for line in sys.stdin.buffer:
            req = json.loads(line)
            op = req.pop("op")
            if op == "exit":
                break
            try:
                reply = getattr(server, "op_" + op)(**req)
                reply["ok"] = True
            except (ShmkitError, OSError, KeyError, ValueError) as err:
                reply = {"ok": False, "error": str(err) or type(err).__name__, "kind": type(err).__name__}
            server.send(reply)
    except BrokenPipeError:
        pass  # the parent went away: nothing left to answer
    return 0


if __name__ == "__main__":
    sys.exit(serve(int(sys.argv[1])))
