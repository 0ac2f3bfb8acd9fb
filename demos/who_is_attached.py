#!/usr/bin/env python3
"""Who is attached? Three processes share a System V segment and a POSIX object; one object nobody maps.

`ipcs -m` would say "nattch 3" and nothing about POSIX; shmkit names the processes, through their maps.
The objects stay named while they are looked at, so this runs in a private IPC namespace with its own
/dev/shm where one can be made (nothing can outlive it).
Run: python3 demos/who_is_attached.py
"""
from toolkit.measure.sandbox import run_isolated

run = run_isolated("toolkit.measure.stories:who_is_attached")
print("\n".join(run.result))
print(f"\n(objects made {run.where})")
