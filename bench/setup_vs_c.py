#!/usr/bin/env python3
"""Benchmark: shmkit's setup phases against a C program doing the same, side by side in one run.

Both follow the same order: create, attach, mark (IPC_RMID / shm_unlink, right after attach), first
touch, detach, destroy (for POSIX the close of the last descriptor, which frees the pages; for System V
the last detach frees them, so it has no destroy).
The C program touches one byte per page of a fresh segment (the classic first touch); shmkit uses one
madvise(MADV_POPULATE_WRITE) where the kernel has it. Rounds alternate C and shmkit so both see the same
machine; the ratios are of medians over all rounds.
Targets (issue 4): first touch within 1.15x of C at 16 MiB and 256 MiB; create and attach within 1.5x at 4 KiB.
Run: python3 bench/setup_vs_c.py [ROUNDS]
"""
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from toolkit.measure.janitor import Janitor  # noqa: E402
from toolkit.measure.setup import owner_phases  # noqa: E402

C_SOURCE = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }

static void touch(volatile char *p, size_t size, long page) { for (size_t o = 0; o < size; o += page) p[o] = 1; }

int main(int argc, char **argv) {
    const char *mech = argv[1];
    size_t size = strtoull(argv[2], 0, 10);
    int reps = atoi(argv[3]), warm = atoi(argv[4]);
    long page = sysconf(_SC_PAGESIZE);
    for (int i = 0; i < warm + reps; i++) {
        /* the order shmkit uses: the name goes right after attach (early removal) */
        double t[7];
        if (!strcmp(mech, "sysv")) {
            t[0] = now(); int id = shmget(IPC_PRIVATE, size, IPC_CREAT | IPC_EXCL | 0600);
            t[1] = now(); char *p = shmat(id, 0, 0);
            t[2] = now(); shmctl(id, IPC_RMID, 0);
            t[3] = now(); touch(p, size, page);
            t[4] = now(); shmdt(p);  /* the last detach of a marked segment frees it */
            t[5] = now(); t[6] = t[5];
            if (id < 0 || p == (void *)-1) { perror("sysv"); return 1; }
        } else {
            char name[64]; snprintf(name, sizeof name, "/shmkit-cbench-%d-%d", getpid(), i);
            t[0] = now(); int fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0600); ftruncate(fd, size);
            t[1] = now(); char *p = mmap(0, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            t[2] = now(); shm_unlink(name);
            t[3] = now(); touch(p, size, page);
            t[4] = now(); munmap(p, size);
            t[5] = now(); close(fd);  /* the last reference to an unlinked object: frees it */
            t[6] = now();
            if (fd < 0 || p == MAP_FAILED) { perror("posix"); return 1; }
        }
        if (i >= warm)
            printf("%.9f %.9f %.9f %.9f %.9f %.9f\n", t[1] - t[0], t[2] - t[1], t[3] - t[2], t[4] - t[3],
                   t[5] - t[4], t[6] - t[5]);
    }
    return 0;
}
"""
PHASES = ("create", "attach", "mark", "first_touch", "detach", "destroy")
CASES = [("sysv", 4 << 10, 200), ("posix", 4 << 10, 200), ("sysv", 16 << 20, 10), ("posix", 16 << 20, 10),
         ("sysv", 256 << 20, 3), ("posix", 256 << 20, 3)]


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    tmp = tempfile.mkdtemp(prefix="shmkit-cbench-")
    src, exe = os.path.join(tmp, "setup.c"), os.path.join(tmp, "setup")
    with open(src, "w") as f:
        f.write(C_SOURCE)
    subprocess.run(["gcc", "-O2", "-o", exe, src, "-lrt"], check=True)
    c = {case: {p: [] for p in PHASES} for case in CASES}
    py = {case: {p: [] for p in PHASES} for case in CASES}
    with Janitor():  # removes what a kill between create and mark would leave
        for _ in range(rounds):
            for case in CASES:
                mech, size, reps = case
                out = subprocess.run([exe, mech, str(size), str(reps), "1"], capture_output=True, text=True, check=True)
                for line in out.stdout.split("\n"):
                    if line:
                        for p, v in zip(PHASES, line.split()):
                            c[case][p].append(float(v))
                s = owner_phases(mech, size, reps, warmup=1)
                for p in PHASES:
                    py[case][p].extend(s.seconds[p])
    os.unlink(exe)
    os.unlink(src)
    os.rmdir(tmp)
    print(f"{rounds} alternating rounds; medians in microseconds; ratio = shmkit / C")
    print(f"{'case':<18} {'phase':<12} {'C':>12} {'shmkit':>12} {'ratio':>7}  target")
    for case in CASES:
        mech, size, _ = case
        for p in PHASES:
            if not py[case][p]:
                continue  # System V has no destroy: its last detach frees it
            mc, mp = statistics.median(c[case][p]), statistics.median(py[case][p])
            target = ""
            if p == "first_touch" and size >= 16 << 20:
                target = "<= 1.15 " + ("ok" if mp / mc <= 1.15 else "MISSED")
            elif p in ("create", "attach") and size == 4 << 10:
                target = "<= 1.50 " + ("ok" if mp / mc <= 1.5 else "MISSED")
            print(f"{mech + ' ' + str(size >> 10) + 'K':<18} {p:<12} {mc * 1e6:>12.1f} {mp * 1e6:>12.1f} {mp / mc:>7.2f}  {target}")


if __name__ == "__main__":
    main()
