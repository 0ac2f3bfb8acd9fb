"""The second line of defence: a watchdog that removes what a killed shmkit left named.

The first line is early removal: every object is marked (IPC_RMID, shm_unlink) within microseconds of
its creation (`Mechanism.create_marked`). What remains is that window, and the named phases run where
no namespace could be made. The janitor (its own session, so a signal to our process group spares it)
knows the pids of the processes that create objects; when our end of its pipe closes (exit or SIGKILL
alike) it removes every object those processes made since it started and did not mark. It needs no
message per object, so nothing is written to it inside a timed loop.

Protocol: one line per creator, `creator PID`. Anything else (a line cut by a signal) is skipped.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

NAMED = ("sysv", "posix")


class Janitor:
    def __init__(self, env=None):
        self.since = time.time()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "toolkit.measure.janitor", str(os.getpid()), repr(self.since)],
                stdin=subprocess.PIPE, start_new_session=True, env=env,
            )
        except BlockingIOError as err:
            from toolkit.measure.peer import spawn_refused

            raise spawn_refused("the janitor (which removes what a killed run leaves)") from err

    def watch_process(self, pid: int) -> None:
        """Objects that process `pid` creates from now on are ours too (a peer that creates)."""
        self.proc.stdin.write(f"creator {int(pid)}\n".encode())
        self.proc.stdin.flush()

    def close(self):
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def parse_creator(line: bytes):
    """The pid of a `creator PID` line, or None for anything else (a cut or garbled line)."""
    words = line.split()
    if len(words) == 2 and words[0] == b"creator" and words[1].isdigit():
        return int(words[1])
    return None


def sweep(creators, since: float) -> list:
    """Remove what `creators` made since `since` and left named; returns the errors, one line each."""
    from toolkit import mechanisms

    errors = []
    for name in NAMED:
        mech = mechanisms.get(name)
        for handle in mech.leftovers(creators, since):
            try:
                mech.destroy(handle)
            except Exception as err:  # noqa: BLE001 - one failure must not stop the others' removal
                errors.append(f"shmkit janitor: could not remove {handle.name or handle.shmid}: {err}")
    return errors


def main(creator: int, since: float) -> int:
    import signal

    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)  # we go when the creator's pipe closes, not before
    creators = {creator}
    for line in sys.stdin.buffer:
        pid = parse_creator(line)
        if pid is not None:
            creators.add(pid)
    for err in sweep(creators, since):
        print(err, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), float(sys.argv[2])))
