"""A private IPC namespace with its own tmpfs on /dev/shm, for work that must keep objects named.

Some phases need an object to stay named for a while: "is it listed in /proc/sysvipc/shm", "does it
outlive its creator", the lifetime and permission demos; the benchmark creates thousands of objects,
each named for a few microseconds. Run there, such work cannot leave anything behind whatever is
killed: when the last process of an IPC namespace exits, the kernel removes every segment in it, and
the tmpfs goes with the mount namespace that holds it.

As root the namespaces are made directly; otherwise inside a new user namespace (uid and gid mapped to
themselves) where the kernel allows it. Where neither works, the work runs here, with early removal
and the janitor as its only protection, and says so.
"""
from __future__ import annotations

import ctypes
import os

from toolkit.records import Isolated

CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWUSER = 0x00020000, 0x08000000, 0x10000000
MS_REC, MS_PRIVATE = 0x4000, 1 << 18

PRIVATE = "in a private IPC namespace with its own /dev/shm: nothing it made can outlive the run"
SHARED = "in this machine's IPC namespace and /dev/shm (no private namespace could be made here{why})"

_libc = ctypes.CDLL(None, use_errno=True)


# System V's limits and rules are per IPC namespace, and a new one starts at the kernel's defaults: the
# private namespace takes this machine's, so that what is measured there is what would happen here (a host
# with kernel.shm_rmid_forced=1 destroys a segment at its last detach: it does not outlive its creator)
IPC_SYSCTLS = ("shmmax", "shmall", "shmmni", "shm_rmid_forced")


def ipc_sysctls() -> dict:
    """kernel.shm* of the IPC namespace this process is in, as their files say them."""
    out = {}
    for name in IPC_SYSCTLS:
        try:
            with open(f"/proc/sys/kernel/{name}") as f:
                out[name] = f.read().strip()
        except OSError:
            pass
    return out


def enter(flags: int, private_dev_shm: bool = False, dev_shm_bytes: int | None = None,
          dev_shm_inodes: int | None = None):
    """A preexec_fn: new namespaces for the child (with a user namespace when not root), and with a
    new mount namespace a fresh tmpfs on /dev/shm. Exit codes 97-99 say which step the kernel refused.
    A new IPC namespace is given this one's kernel.shm* where the kernel lets it (see run_isolated)."""
    uid, gid = os.geteuid(), os.getegid()
    limits = ipc_sysctls() if flags & CLONE_NEWIPC else {}
    if uid != 0:
        flags |= CLONE_NEWUSER
    size = f",size={dev_shm_bytes}" if dev_shm_bytes else ""
    size += f",nr_inodes={dev_shm_inodes}" if dev_shm_inodes else ""

    def write(path, text):
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)

    def preexec():
        if _libc.unshare(flags) != 0:
            os._exit(97)
        if flags & CLONE_NEWUSER:
            try:  # ourselves, seen as ourselves: files we make keep our uid
                write("/proc/self/setgroups", "deny")
                write("/proc/self/uid_map", f"{uid} {uid} 1")
                write("/proc/self/gid_map", f"{gid} {gid} 1")
            except OSError:
                os._exit(98)
        for name, value in limits.items():
            try:  # an older kernel lets only the first user namespace's root write them: run_isolated says so
                write(f"/proc/sys/kernel/{name}", value)
            except OSError:
                pass
        if private_dev_shm:
            if _libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
                os._exit(98)
            if _libc.mount(b"tmpfs", b"/dev/shm", b"tmpfs", 0, f"mode=1777{size}".encode()) != 0:
                os._exit(99)

    user = " (in a new user namespace: this kernel may not allow them to unprivileged users)" if uid != 0 else ""
    preexec.exit_meanings = {
        97: f"the kernel refused new namespaces (unshare){user}",
        98: "the kernel refused the user namespace's id maps or a private mount tree",
        99: "the kernel refused a tmpfs on /dev/shm in the new mount namespace",
    }
    return preexec


def _dev_shm_limits() -> tuple:
    """(bytes, inodes) of this machine's /dev/shm, so that the private one refuses what the real one would
    (a container's 64 MiB, or its few thousand names); None for what cannot be read or has no limit."""
    try:
        st = os.statvfs("/dev/shm")
    except OSError:
        return None, None
    return st.f_blocks * st.f_frsize or None, st.f_files or None


def private_peer(env=None):
    """A peer in a private IPC namespace with its own /dev/shm, ready to serve; or the reason why not."""
    from toolkit.errors import PeerFailed
    from toolkit.measure.peer import Peer

    peer = Peer(env, preexec_fn=enter(CLONE_NEWIPC | CLONE_NEWNS, True, *_dev_shm_limits()))
    try:
        peer.call("info", what="'info' (entering a private IPC namespace)")
    except PeerFailed as err:
        peer.close()
        return None, str(err)
    return peer, ""


def run_isolated(target: str, progress=None, work: int = 0, env=None, **kwargs) -> Isolated:
    """Run toolkit function `target` ("module:name", called with progress= and kwargs, which must be
    JSON-able) in a private namespace where one can be made, else here. Library errors it raises are
    raised here as they are."""
    import base64
    import importlib
    import pickle

    peer, why = private_peer(env)
    if peer is None:
        module, _, name = target.partition(":")
        fn = getattr(importlib.import_module(module), name)
        result = fn(progress=progress or (lambda *a: None), **kwargs)
        return Isolated(result, False, SHARED.format(why=f": {why}" if why else ""))
    try:
        theirs = peer.call("ipc_sysctls")["sysctls"]
        reply = peer.call("run", target=target, kwargs=kwargs, work=work, progress=progress,
                          what=f"'{target.partition(':')[2].strip('_')}' in its private namespace")
    finally:
        peer.close()
    out = pickle.loads(base64.b64decode(reply["pickle"]))
    if "error" in out:
        raise out["error"]
    ours = ipc_sysctls()
    differ = [f"kernel.{k}={ours[k]} (there {theirs.get(k, '?')})" for k in IPC_SYSCTLS
              if k in ours and theirs.get(k) != ours[k]]
    where = PRIVATE + ("; it could not be given this machine's " + ", ".join(differ) +
                       ": System V there behaved by the kernel's defaults" if differ else "")
    return Isolated(out["result"], True, where)
