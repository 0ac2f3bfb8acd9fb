"""A watchdog that removes our objects if we are killed before we could.

The gap between shmget/shm_open and IPC_RMID/shm_unlink cannot be closed by the mechanisms
themselves, so before creating anything we tell a separate process (its own session, so a
kill of our process group spares it) what we are about to create. When our end of its pipe
closes (exit or SIGKILL alike) it removes whatever we did not report as gone.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys


class Janitor:
    def __init__(self, env=None):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "toolkit.measure.janitor", str(os.getpid())],
            stdin=subprocess.PIPE, text=True, bufsize=1, start_new_session=True, env=env,
        )

    def _send(self, verb, handles):
        self.proc.stdin.write("".join(json.dumps({"verb": verb, "handle": h.to_json()}) + "\n" for h in handles))
        self.proc.stdin.flush()

    def watch(self, *handles):
        """Call before creating the objects the handles name (one write for all of them)."""
        self._send("watch", handles)

    def forget(self, *handles):
        """Call once the objects are removed (or marked for removal)."""
        self._send("forget", handles)

    def close(self):
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _remove(handle: dict, creator: int, started: float):
    from toolkit import mechanisms
    from toolkit.mechanisms import Handle

    h = Handle.from_json(handle)
    if h.mechanism == "sysv":
        from toolkit.mechanisms.sysv import find_by_key

        seg = find_by_key(h.key)
        if seg is None:
            return
        # only the segment we created under that key: its shmid, or else made by us since we started
        if h.shmid is not None and seg.shmid != h.shmid:
            return
        if h.shmid is None and seg.cpid != creator and seg.ctime < started - 1:
            return
        h.shmid = seg.shmid
    mechanisms.get(h.mechanism).destroy(h)


def main(creator: int) -> int:
    import signal

    import time

    started = time.time()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    pending = {}
    for line in sys.stdin:
        msg = json.loads(line)
        key = json.dumps(msg["handle"]["key"] or msg["handle"]["name"])
        if msg["verb"] == "watch":
            pending[key] = msg["handle"]
        else:
            pending.pop(key, None)
    for handle in pending.values():
        try:
            _remove(handle, creator, started)
        except Exception as err:  # keep removing the others
            print(f"shmkit janitor: could not remove {handle}: {err}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1])))
