"""Who we are to the kernel, read through the gateway: uid, capabilities, /proc's hidepid, Yama's
ptrace_scope. From these the system views say why a process could not be read, and whether what they
show is complete (a recorded host replays the recorder's, not ours)."""
from __future__ import annotations

from toolkit.errors import ShmkitError
from toolkit.proc.fs import ProcFS, default_fs
from toolkit.proc.process import read_status
from toolkit.records import Access
from toolkit.units import counted

CAP_SYS_PTRACE, CAP_SYS_ADMIN = 19, 21
CAP_NAMES = ("CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
             "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
             "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
             "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
             "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
             "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE")


def proc_mount_options(fs: ProcFS) -> list:
    """The options of the proc mount at /proc, from mountinfo (per-mount and per-superblock)."""
    from toolkit.proc.mounts import read_mounts

    for m in read_mounts("self", fs):
        if m.point == "/proc" and m.fstype == "proc":
            return list(m.options + m.super_options)
    return []


def read_access(fs: ProcFS | None = None) -> Access:
    fs = fs or default_fs()
    st = read_status("self", fs)
    uid = int(st.get("Uid", "0").split()[1])  # effective
    cap_eff = int(st.get("CapEff", "0"), 16)
    hidepid = exempt_gid = None
    for opt in proc_mount_options(fs):
        if opt.startswith("hidepid="):
            hidepid = opt.split("=", 1)[1]
        elif opt.startswith("gid="):  # proc(5): members of this group see every process, as without hidepid
            exempt_gid = opt.split("=", 1)[1]
    groups = set(st.get("Groups", "").split())
    if st.get("Gid", "").split()[1:2]:
        groups.add(st["Gid"].split()[1])  # the effective gid counts too (in_group_p)
    try:
        scope = int(fs.read_text("sys", "kernel", "yama", "ptrace_scope"))
    except (ShmkitError, OSError, ValueError):
        scope = None
    return Access(uid, cap_eff, hidepid, scope, exempt_gid is not None and exempt_gid in groups, _child_userns(fs))


def _child_userns(fs: ProcFS):
    """Whether we run in a user namespace other than the host's (a rootless container, `unshare -U`): the
    host's uid_map maps every uid to itself ('0 0 4294967295'), a child's maps fewer. None where it cannot
    be read (a recording made without it)."""
    try:
        text = fs.read_text("self", "uid_map")
    except (ShmkitError, OSError):
        return None
    ranges = [line.split() for line in text.splitlines() if line.strip()]
    return None if not ranges else ranges != [["0", "0", "4294967295"]]


USERNS_ROOT = ("this process is root only inside a user namespace (a rootless container); physical page "
               "numbers need CAP_SYS_ADMIN on the host")


def pfns_need(a: Access) -> str:
    """What reading PFNs needs, said for where we are: 'root', or why root here is not enough."""
    return ("CAP_SYS_ADMIN on the host, which root inside a user namespace (a rootless container, as here) lacks"
            if a.root_in_userns_only else "root")


def _real_uid(fs: ProcFS, pid):
    """The real uid of pid from its status (readable where its maps are not), or None."""
    try:
        return int(read_status(pid, fs).get("Uid", "").split()[0])
    except (ShmkitError, OSError, ValueError, IndexError):
        return None


def cap_names(mask: int) -> list:
    return ["CAP_" + (CAP_NAMES[i] if i < len(CAP_NAMES) else str(i)) for i in range(64) if mask >> i & 1]


def can_read_all(a: Access) -> bool:
    """Whether the ptrace check lets us read every process's memory maps (root with CAP_SYS_PTRACE)."""
    return bool(a.cap_eff >> CAP_SYS_PTRACE & 1)


def hides_others(a: Access) -> bool:
    """/proc mounted with hidepid=2 (invisible) or 4 (ptraceable, Linux 5.8): processes we may not trace, other
    users' among them, are not even listed for us."""
    return a.hidepid in ("2", "invisible", "4", "ptraceable") and not can_read_all(a) and not a.hidepid_exempt


def why_denied(fs: ProcFS, a: Access, pids) -> str:
    """The real reason the kernel refused to show us these processes' memory maps."""
    pids = sorted(pids)
    if not pids:
        return ""
    if a.hidepid in ("1", "noaccess") and not can_read_all(a) and not a.hidepid_exempt:
        return "/proc is mounted with hidepid=1: other users' processes may not be read (run as root)"
    if a.userns_child and a.uid == 0:
        return ("this process is root only inside a user namespace (a rootless container): processes outside "
                "it, or holding more than it, may not be read")
    if a.uid != 0 and not can_read_all(a):
        # Yama's ptrace_scope governs attaching, not reading maps (mainline security/yama): the owner,
        # and whether the process may be dumped, decide
        own = [p for p in pids if _real_uid(fs, p) == a.uid]
        parts = []
        if len(own) < len(pids):
            parts.append("they belong to other users: reading their memory maps needs root or CAP_SYS_PTRACE")
        if own:
            parts.append(f"{counted(len(own), 'process', 'processes')} of this user's own "
                         f"({', '.join(map(str, own[:3]))}{', ...' if len(own) > 3 else ''}) "
                         f"{'is' if len(own) == 1 else 'are'} not dumpable: a program that changed its "
                         "credentials (setuid, setgid) or asked not to be (PR_SET_DUMPABLE, as ssh-agent does)"
                         + ("; Yama's ptrace_scope is 3 here, which some kernels apply to reading too"
                            if a.scope_forbids else ""))
        return "; ".join(parts)
    if not can_read_all(a):
        return "this process lacks CAP_SYS_PTRACE, which reading other processes' memory maps needs"
    # root with CAP_SYS_PTRACE and still refused: the target holds capabilities we lack, or an LSM said no
    ours = a.cap_eff
    for pid in pids[:5]:
        try:
            theirs = int(read_status(pid, fs).get("CapPrm", "0"), 16)
        except (ShmkitError, OSError, ValueError):
            continue
        missing = theirs & ~ours
        if missing:
            return (f"the kernel's ptrace check refused: pid {pid} holds {', '.join(cap_names(missing))}, "
                    "which this process lacks (a container's or sandbox's bounding set)")
    return ("the kernel's ptrace check refused (a security module"
            + (", such as Yama with ptrace_scope=3 on a kernel that applies it to reading" if a.scope_forbids else "")
            + ", or another user namespace's process)")
