"""Pure readers of /proc and /sys: each returns records from toolkit.records."""
from toolkit.proc.fs import ProcFS, default_fs  # noqa: F401
