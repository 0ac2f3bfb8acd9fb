"""shmkit: explicit (System V, POSIX) and implicit (shared library) shared memory, measured through /proc."""

__version__ = "0.1.0"
