"""Every result type of the library: immutable named records (typing.NamedTuple) built by named constructors.

NamedTuple rather than frozen dataclasses: a command that starts, reads /proc and exits pays for every
class it defines, and a frozen dataclass costs six times a NamedTuple to create (0.5 ms against 0.08 ms).
No `from __future__ import annotations` here: typing.NamedTuple turns each string annotation into a
ForwardRef, compiling it; evaluated ones are not. -X importtime of this module: 6.2 ms became 4.7.
"""

from array import array
from typing import NamedTuple, Optional


def to_dict(record):
    """Plain JSON-ready data of a record (nested records, tuples and dicts included)."""
    if hasattr(record, "_asdict"):
        return {k: to_dict(v) for k, v in record._asdict().items()}
    if isinstance(record, (list, tuple)):
        return [to_dict(v) for v in record]
    if isinstance(record, dict):
        return {k: to_dict(v) for k, v in record.items()}
    if hasattr(record, "__dataclass_fields__"):
        return {k: to_dict(getattr(record, k)) for k in record.__dataclass_fields__}
    return record


# ---------------------------------------------------------------- /proc/PID/maps, smaps


class Mapping(NamedTuple):
    """One line of /proc/PID/maps."""

    start: int
    end: int
    perms: str  # e.g. 'r-xp'; the 4th letter is s (MAP_SHARED) or p (MAP_PRIVATE)
    offset: int
    device: str  # 'fe:00'
    inode: int
    path: str  # '' for anonymous; '[heap]' etc. for special ones; without ' (deleted)'
    deleted: bool = False

    @property
    def size(self) -> int:
        return self.end - self.start

    @property
    def shared(self) -> bool:
        return self.perms[3] == "s"

    @property
    def name(self) -> str:
        """The name as /proc/PID/maps shows it."""
        return self.path + (" (deleted)" if self.deleted else "")

    @classmethod
    def from_line(cls, line: str) -> "Mapping":
        parts = line.split(None, 5)
        if len(parts) < 5:
            raise ValueError(f"not a maps line: {line!r}")
        return cls.from_fields(*parts[:5], parts[5].rstrip("\n") if len(parts) > 5 else "")

    @classmethod
    def from_fields(cls, lohi: str, perms: str, offset: str, device: str, inode: str, name: str) -> "Mapping":
        """From the six fields of a maps line, as text; the name may end in ' (deleted)'."""
        lo, _, hi = lohi.partition("-")
        if "\\012" in name:  # maps writes a newline in a name as \012: the name is the file's, to open it
            name = name.replace("\\012", "\n")
        deleted = name.endswith(" (deleted)")
        if deleted:
            name = name[: -len(" (deleted)")]
        return cls(int(lo, 16), int(hi, 16), perms, int(offset, 16), device, int(inode), name, deleted)


class SmapsEntry(NamedTuple):
    """One mapping of /proc/PID/smaps: the maps line plus every field by its exact name.

    Sizes are in bytes (the kernel prints kB). Fields an older kernel lacks are simply absent:
    use .get('Pss_Dirty').
    """

    mapping: Mapping
    fields: dict
    vmflags: tuple = ()

    def get(self, name, default=None):
        return self.fields.get(name, default)

    def __getitem__(self, name):
        # e["Rss"] reads a field; an integer index is still the tuple's
        return self.fields[name] if isinstance(name, str) else tuple.__getitem__(self, name)

    @classmethod
    def from_block(cls, header: str, lines) -> "SmapsEntry":
        fields, vmflags = {}, ()
        for line in lines:
            key, _, rest = line.partition(":")
            if key == "VmFlags":
                vmflags = tuple(rest.split())
                continue
            words = rest.split()
            if not words:
                continue
            try:
                value = int(words[0])
            except ValueError:
                continue
            # 'kB' fields become bytes; unit-less ones (THPeligible, ProtectionKey) stay as they are
            fields[key] = value * 1024 if len(words) > 1 and words[1] == "kB" else value
        return cls(Mapping.from_line(header), fields, vmflags)


class SmapsTable(NamedTuple):
    """Some smaps fields of every mapping of a process, as columns: what a scan of every process reads.

    headers[i] is mapping i's maps line split into (range, perms, offset, device, inode, path), raw bytes;
    columns[field][i] its value in bytes. Decoding only what a caller looks at (a path, a perms string) is
    what makes a scan of 35,000 mappings affordable; mapping(i) gives the whole Mapping where needed."""

    headers: list
    columns: dict

    def mapping(self, i) -> "Mapping":
        return Mapping.from_fields(*(f.decode("utf-8", "surrogateescape") for f in self.headers[i]))

    def entries(self) -> list:
        keys = tuple(self.columns)
        rows = zip(*self.columns.values()) if keys else ((),) * len(self.headers)
        return [SmapsEntry(self.mapping(i), dict(zip(keys, row))) for i, row in enumerate(rows)]


class Rollup(NamedTuple):
    """/proc/PID/smaps_rollup, or the sum of smaps where the kernel lacks it (< 4.14)."""

    pid: int
    fields: dict
    from_rollup: bool

    def get(self, name, default=None):
        return self.fields.get(name, default)


# ---------------------------------------------------------------- pagemap, kpagecount


# pagemap bits (Documentation/admin-guide/mm/pagemap.rst): a byte table per top byte of an entry,
# applied with bytes.translate so that whole ranges are decoded at C speed (no per-page Python)
_KEEP = bytes(0xFF if (b & 0xC0) == 0x80 else 0 for b in range(256))  # present (63) and not swapped (62)
_CLEAR_55 = bytes(b & 0x7F for b in range(256))  # bit 55 (soft-dirty) is byte 6's top bit
_PRESENT = bytes(1 if b & 0x80 else 0 for b in range(256))  # bit 63


class PageRange(NamedTuple):
    """Decoded /proc/PID/pagemap entries for [start, start + len(entries) pages)."""

    pid: int
    start: int
    page_size: int
    entries: array  # raw 64-bit words (array('Q'))
    pfns_visible: bool

    PFN_MASK = (1 << 55) - 1

    def __len__(self):
        return len(self.entries)

    def pfn_array(self):
        """array('Q') of the PFN of every page, 0 where absent (or swapped, or hidden). Masked at C speed:
        a 1 GiB range (262144 pages) takes a few milliseconds, against ~100 ms page by page in Python."""
        import sys

        n = len(self.entries)
        if not self.pfns_visible or not n:
            return array("Q", bytes(8 * n))
        if sys.byteorder != "little":  # the byte tricks below assume little-endian words
            m = self.PFN_MASK
            return array("Q", ((e & m) if (e >> 62) == 2 else 0 for e in self.entries))
        raw = self.entries.tobytes()
        keep = raw[7::8].translate(_KEEP)
        buf = bytearray(raw)
        buf[7::8] = bytes(n)  # bits 56-63
        buf[6::8] = buf[6::8].translate(_CLEAR_55)
        mask = bytearray(8 * n)
        for k in range(7):
            mask[k::8] = keep  # 0xFF.. for a present page, 0 otherwise
        masked = int.from_bytes(buf, "little") & int.from_bytes(mask, "little")
        return array("Q", masked.to_bytes(8 * n, "little"))

    @property
    def pfns(self) -> list:
        """PFN of every present page, None where absent; None for all when the kernel hides them."""
        if not self.pfns_visible:
            return [None] * len(self.entries)
        return [p or None for p in self.pfn_array()]

    def _bit(self, bit):
        return [bool(e >> bit & 1) for e in self.entries]

    @property
    def present(self):
        return self._bit(63)

    @property
    def swapped(self):
        return self._bit(62)

    @property
    def file_or_shared_anon(self):
        return self._bit(61)

    @property
    def exclusive(self):
        return self._bit(56)

    @property
    def soft_dirty(self):
        return self._bit(55)

    @property
    def present_count(self) -> int:
        return len(self.entries) - self.entries.tobytes()[7::8].translate(_PRESENT).count(0)

    def distinct_pfns(self) -> Optional[set]:
        if not self.pfns_visible:
            return None
        found = set(self.pfn_array())
        found.discard(0)
        return found


# ---------------------------------------------------------------- System V, limits, meminfo


class SysvShm(NamedTuple):
    """One row of /proc/sysvipc/shm."""

    key: int
    shmid: int
    mode: int  # permission bits plus SHM_DEST (0o1000) / SHM_LOCKED (0o2000)
    size: int
    cpid: int
    lpid: int
    nattch: int
    uid: int
    gid: int
    cuid: int
    cgid: int
    atime: int
    dtime: int
    ctime: int
    rss: Optional[int] = None  # bytes; absent before Linux 4.?
    swap: Optional[int] = None

    SHM_DEST, SHM_LOCKED = 0o1000, 0o2000

    @property
    def marked_for_removal(self) -> bool:
        return bool(self.mode & self.SHM_DEST)

    @property
    def locked(self) -> bool:
        """shmctl(SHM_LOCK): its pages are never swapped out (ipcs -m says "locked")."""
        return bool(self.mode & self.SHM_LOCKED)

    @classmethod
    def from_row(cls, header: list, row: list) -> "SysvShm":
        vals = dict(zip(header, row))
        num = lambda k, d=0: int(vals[k]) if k in vals else d  # noqa: E731
        return cls(
            key=num("key"), shmid=num("shmid"), mode=int(vals.get("perms", "0"), 8), size=num("size"),
            cpid=num("cpid"), lpid=num("lpid"), nattch=num("nattch"), uid=num("uid"), gid=num("gid"),
            cuid=num("cuid"), cgid=num("cgid"), atime=num("atime"), dtime=num("dtime"), ctime=num("ctime"),
            rss=num("rss", None), swap=num("swap", None),
        )


class Limits(NamedTuple):
    """What bounds a shared-memory size on this machine."""

    shmmax: int  # bytes per System V segment
    shmall: int  # pages, all System V segments together
    shmmni: int  # number of System V segments
    page_size: int
    dev_shm_free: Optional[int]  # bytes free on the /dev/shm mount
    mem_available: Optional[int]  # bytes, MemAvailable
    cgroup_limit: Optional[int] = None  # bytes: the tightest memory limit on our cgroup and its ancestors
    cgroup: Optional[str] = None  # the cgroup that sets it


# ---------------------------------------------------------------- measurements


class Visibility(NamedTuple):
    mechanism: str
    peer_sees_write: Optional[bool]  # None where nobody can write (library text)
    maps_name: str
    listed_in: tuple
    mode: str
    owner: str
    outlives_creator: Optional[bool]  # None where there is nothing to outlive (library)
    note: str = ""
    reached_by: str = ""  # how a peer reaches it (a shmid, the owner's descriptor, the file)


# The order of an object's life with early removal: the name goes right after attach, so "destroy" is
# no longer a separate removal but the call that frees the pages: the last detach of a marked System V
# segment (shmdt), the close of the last descriptor of an unlinked POSIX object or memfd.
PHASES = ("create", "attach", "mark", "first_touch", "detach", "destroy")
SECOND_PHASES = ("second_attach", "read_through", "second_detach")
PHASES_NOTE = ("setup phases in the order of early removal: mark is IPC_RMID of the attached segment or "
               "shm_unlink; destroy is the call that frees the pages, the close of the last descriptor of an "
               "unlinked POSIX object or memfd; System V has none, the last detach of a marked segment frees it")


class Phase(NamedTuple):
    """One setup phase over repetitions: median seconds and spread, minor faults (median)."""

    name: str
    median_s: Optional[float]
    p10_s: Optional[float] = None
    p90_s: Optional[float] = None
    min_s: Optional[float] = None
    repeat: int = 0
    minor_faults: Optional[int] = None

    @classmethod
    def from_samples(cls, name, seconds, faults=None) -> "Phase":
        if not seconds:
            return cls(name, None)
        s = sorted(seconds)
        q = lambda p: s[min(len(s) - 1, int(round(p * (len(s) - 1))))]  # noqa: E731
        f = sorted(faults)[len(faults) // 2] if faults else None
        return cls(name, q(0.5), q(0.1), q(0.9), s[0], len(s), f)


class SetupCost(NamedTuple):
    mechanism: str
    phases: tuple  # of Phase, in the order of measure.setup.PHASES (create, attach, mark, ...)
    touch_method: str  # 'MADV_POPULATE_WRITE' or 'memset'
    note: str = ""

    def phase(self, name) -> Optional[Phase]:
        for p in self.phases:
            if p.name == name:
                return p
        return None


class PeerFootprint(NamedTuple):
    """One peer's view of one region, from its smaps (bytes)."""

    pid: int
    start: int
    end: int
    rss: int
    pss: int
    shared_clean: int
    shared_dirty: int
    private_clean: int
    private_dirty: int
    swap: int = 0
    pss_dirty: Optional[int] = None  # absent before Linux 5.?

    @property
    def uss(self) -> int:
        return self.private_clean + self.private_dirty

    @classmethod
    def from_entries(cls, pid, entries) -> "PeerFootprint":
        """Sum several smaps entries (a library's data is a file mapping plus its .bss)."""
        total = lambda k: sum(e.get(k, 0) for e in entries)  # noqa: E731
        has_pss_dirty = all("Pss_Dirty" in e.fields for e in entries)
        return cls(
            pid=pid, start=min(e.mapping.start for e in entries), end=max(e.mapping.end for e in entries),
            rss=total("Rss"), pss=total("Pss"), shared_clean=total("Shared_Clean"),
            shared_dirty=total("Shared_Dirty"), private_clean=total("Private_Clean"),
            private_dirty=total("Private_Dirty"), swap=total("Swap"),
            pss_dirty=total("Pss_Dirty") if has_pss_dirty else None,
        )


class PageGrid(NamedTuple):
    """Physical identity of a region's pages in each peer: the PFN of every `step`-th page (sampled where
    the region has more pages than a picture can show), and how many processes map each (kpagecount)."""

    pages: int  # pages in the region
    step: int  # one cell per `step` pages
    rows: tuple  # ((pid, (pfn or None, ...)), ...)
    kpagecount: dict  # {pfn: count} for the sampled PFNs


class Footprint(NamedTuple):
    mechanism: str
    region_bytes: int
    per_peer: tuple  # of PeerFootprint
    physical_bytes: Optional[int]  # distinct PFNs x page size; None when PFNs are hidden
    kernel_bytes: Optional[int]  # the kernel's own count: sysvipc rss, tmpfs blocks
    kernel_source: str
    kpagecount_min: Optional[int] = None
    kpagecount_max: Optional[int] = None
    page_grid: Optional["PageGrid"] = None  # the pages' physical identity per peer (root), for the picture

    @property
    def rss_sum(self) -> int:
        return sum(p.rss for p in self.per_peer)

    @property
    def pss_sum(self) -> int:
        return sum(p.pss for p in self.per_peer)


class LibraryWrite(NamedTuple):
    """What a write to a library's global does (copy on write), seen from two peers."""

    library: str
    symbol: str
    address_a: int
    value_before: int
    value_written: int
    value_seen_by_b: int
    pfn_a: Optional[int]
    pfn_b: Optional[int]
    cow_page_offset: Optional[int]  # offset in the data mapping of a page still shared with the cache
    cow_pfn_before: Optional[int]
    cow_pfn_after: Optional[int]
    cow_file_before: Optional[bool]  # pagemap bit 61 before the write (page-cache page)
    cow_file_after: Optional[bool]
    private_dirty_before: int = 0
    private_dirty_after: int = 0
    note: str = ""


class TextSharing(NamedTuple):
    library: str
    pages: int  # pages of the text mapping
    same_pfns_in_all_peers: Optional[bool]
    kpagecount_min: Optional[int]
    kpagecount_median: Optional[int]
    load_addresses: tuple  # text start per peer (ASLR)
    text_to_data: tuple  # data start - text start per peer (constant: PIC)


class MechanismResult(NamedTuple):
    mechanism: str
    title: str
    visibility: Visibility
    setup: SetupCost
    footprint: Footprint


class Comparison(NamedTuple):
    size_bytes: int
    peers: int
    privileged: bool
    page_size: int
    kernel: str
    library: str
    mechanisms: tuple  # of MechanismResult
    library_write: Optional[LibraryWrite]
    text_sharing: Optional[TextSharing]
    shmem_before: Optional[int] = None  # /proc/meminfo Shmem (bytes), before and with the regions held
    shmem_during: Optional[int] = None
    notes: tuple = ()
    library_segments: tuple = ()  # the library's program headers (Segment): its PT_LOADs and GNU_RELRO


# ---------------------------------------------------------------- benchmark


class BenchRow(NamedTuple):
    mechanism: str
    size_bytes: int
    phase: str
    median_s: Optional[float]
    p10_s: Optional[float]
    p90_s: Optional[float]
    min_s: Optional[float]
    repeat: int
    minor_faults: Optional[int]
    pages: int
    ns_per_page: Optional[float] = None  # touch phases
    gb_per_s: Optional[float] = None  # touch phases

    @classmethod
    def from_phase(cls, mechanism, size, page_size, phase: Phase) -> "BenchRow":
        pages = -(-size // page_size)
        touch = phase.name in ("first_touch", "read_through")
        med = phase.median_s
        return cls(
            mechanism, size, phase.name, med, phase.p10_s, phase.p90_s, phase.min_s, phase.repeat,
            phase.minor_faults, pages,
            ns_per_page=(med * 1e9 / pages) if touch and med else None,
            gb_per_s=(size / med / 1e9) if touch and med else None,
        )


class BenchResult(NamedTuple):
    machine: dict
    rows: tuple  # of BenchRow
    findings: tuple = ()
    notes: tuple = ()


# ---------------------------------------------------------------- demos and explain


class Step(NamedTuple):
    """One claim and what was measured for it; holds is None where it could not be shown here."""

    claim: str
    evidence: tuple
    holds: Optional[bool]
    why_not: str = ""


class Story(NamedTuple):
    name: str
    title: str
    steps: tuple  # of Step
    verdict: str
    skipped: str = ""  # the reason, where the whole story cannot run on this machine
    where: str = ""  # where its objects were made (a private namespace, or this machine's)
    comparison: Optional[Comparison] = None  # explain: the compare run its steps cite, for the picture


# ------------------------------------------------------------------ ELF (elf/headers.py, measure/elfjoin.py, measure/pic.py)


class Segment(NamedTuple):
    """One program header, with the values readelf -lW prints."""

    index: int
    type: str  # 'LOAD', 'GNU_RELRO', ... as readelf names it
    offset: int
    vaddr: int
    paddr: int
    filesz: int
    memsz: int
    flags: str  # 'R E', 'RW', 'R'
    align: int
    sections: tuple = ()
    sharing: str = ""
    relocations: Optional[int] = 0  # dynamic relocations that land in it (LOAD only); None: unknown (truncated)
    reloc_pages: Optional[int] = 0  # distinct pages those relocations dirty


class ElfInfo(NamedTuple):
    path: str
    elf_class: int
    endianness: str
    machine: str
    type: str  # 'EXEC', 'DYN', 'REL', 'CORE'
    type_description: str
    pie: Optional[bool]
    entry: int
    phoff: int
    segments: tuple
    textrel: Optional[bool]  # None: unknown (the dynamic section lies past the end of a truncated file)
    relro: Optional[str]  # 'none', 'partial', 'full'; None: unknown
    bind_now: Optional[bool]
    pic: Optional[bool]
    layout: str
    interpreter: Optional[str] = None
    notes: tuple = ()
    truncated: Optional[str] = None  # "LOAD 03 ends at 0x1b4000, the file has 3000 bytes"
    loadable: bool = True  # an executable or shared object; a .o or a core dump is not mapped by the loader

    def loads(self):
        return [s for s in self.segments if s.type == "LOAD"]


class JoinedMapping(NamedTuple):
    segment: int  # index in the program header table
    load_flags: str
    load_offset: int  # p_offset
    aligned_offset: int  # p_offset rounded down to a page: what mmap got
    start: int
    end: int
    perms: str
    map_offset: int
    anonymous: bool  # the .bss tail beyond the file
    rss: int
    pss: int
    shared_clean: int
    shared_dirty: int
    private_clean: int
    private_dirty: int
    kpagecount_min: Optional[int] = None
    kpagecount_median: Optional[int] = None
    kpagecount_max: Optional[int] = None
    sharing: str = ""


class ObjectJoin(NamedTuple):
    pid: int
    path: str
    base: int  # load address: where vaddr 0 of the object sits in this process
    mappings: tuple
    privileged: bool
    note: str = ""
    deleted: bool = False  # the file was deleted after it was mapped: the process runs a copy no path names


class PeerLayout(NamedTuple):
    pid: int
    base: int  # text start minus its file offset: where the object's first page sits
    text_start: int
    data_start: int

    @property
    def text_to_data(self) -> int:
        return self.data_start - self.text_start


class PicResult(NamedTuple):
    library: str
    peers: tuple  # of PeerLayout

    @property
    def distinct_bases(self) -> int:
        return len({p.base for p in self.peers})

    @property
    def same_distance(self) -> bool:
        return len({p.text_to_data for p in self.peers}) == 1


# ------------------------------------------------------------------ segments and footprint (measure/system.py)


class Attacher(NamedTuple):
    pid: int
    command: str
    cgroup: Optional[str] = None  # in the memory hierarchy (a container's, often); None where unknown


class Access(NamedTuple):
    """Who we are to the kernel (read from /proc/self/status and mount options, so replayable)."""

    uid: int  # effective
    cap_eff: int  # effective capability mask
    hidepid: Optional[str]  # the proc mount's hidepid= value, None when not set
    ptrace_scope: Optional[int]  # Yama's, None without Yama
    hidepid_exempt: bool = False  # in the group the proc mount's gid= names: hidepid does not apply to us
    userns_child: Optional[bool] = None  # in a user namespace not the host's (rootless container); None: unknown

    @property
    def scope_forbids(self) -> bool:
        return self.ptrace_scope == 3

    @property
    def privileged(self) -> bool:
        """PFNs in pagemap need CAP_SYS_ADMIN in the host's user namespace: a rootless container's root has
        every capability in its own, and reads PFNs of 0."""
        return bool(self.cap_eff >> 21 & 1) and not self.userns_child

    @property
    def root_in_userns_only(self) -> bool:
        return bool(self.cap_eff >> 21 & 1) and bool(self.userns_child)


class SharedObject(NamedTuple):
    kind: str  # 'sysv', 'posix', 'memfd', 'deleted'
    name: str  # key (hex) for System V, /dev/shm name, memfd name, file path
    size_bytes: int
    owner: str
    mode: Optional[str]
    attachers: tuple
    orphan: Optional[bool]
    world_readable: Optional[bool]
    world_writable: Optional[bool]
    other_user: Optional[bool]
    remove_ipc: Optional[bool]  # systemd-logind would remove it when its owner logs out
    allocated_bytes: Optional[int] = None
    key: Optional[int] = None
    shmid: Optional[int] = None
    nattch: Optional[int] = None
    rss_bytes: Optional[int] = None
    swap_bytes: Optional[int] = None
    cpid: Optional[int] = None
    lpid: Optional[int] = None
    atime: Optional[int] = None
    dtime: Optional[int] = None
    ctime: Optional[int] = None
    marked_for_removal: Optional[bool] = None
    device: Optional[str] = None
    inode: Optional[int] = None
    namespace: Optional[str] = None  # System V: its IPC namespace; POSIX: the mount namespace of its /dev/shm
    pinned: Optional[str] = None  # why its memory stays although nobody lists or maps it
    via_pid: Optional[int] = None  # not in our namespace: a process in its own, through which it is reached
    semaphore: Optional[bool] = None  # POSIX: a named semaphore (glibc keeps sem_open's as /dev/shm/sem.NAME)
    locked: Optional[bool] = None  # System V: SHM_LOCK, never swapped out (Unevictable in /proc/meminfo)
    # System V: the mappings of it the scan read. nattch counts mappings (a second shmat, a fork, a split by
    # mprotect each add one), so a process may account for several; fewer than nattch: attachers unseen
    mappings_seen: Optional[int] = None
    also_named: tuple = ()  # POSIX: the other names of the same file (hard links): one object, not two


class DevShm(NamedTuple):
    """One tmpfs mounted on /dev/shm (ours, or a container's seen through /proc/PID/root)."""

    where: str  # /dev/shm or /proc/PID/root/dev/shm
    namespace: Optional[str]  # mount namespace
    device: str
    size_bytes: Optional[int]
    used_bytes: Optional[int]
    fill: Optional[float]
    full: bool
    processes: tuple  # some pids that see it
    folders: tuple = ()  # names of folders in it: their files are tmpfs memory, but not POSIX objects
    folder_files: Optional[int] = 0  # regular files in those folders, at any depth; None: one is unreadable
    folder_bytes: Optional[int] = 0  # what those files have allocated; None likewise
    unreadable_folders: tuple = ()  # folders we may not list (another user's, unprivileged)
    others: tuple = ()  # (name, "symlink" | "FIFO" | "socket" | "device"): entries that are not shared memory


class SegmentsReport(NamedTuple):
    sysv: tuple
    posix: tuple
    memfd: tuple
    deleted: tuple
    processes: int
    unreadable: int
    remove_ipc_policy: Optional[str] = None
    notes: tuple = ()
    complete: bool = True  # every process's maps were read: "nothing maps it" can be said
    dev_shm: tuple = ()  # of DevShm
    pinned: tuple = ()  # of SharedObject: memory held although no listing shows it
    unlisted: tuple = ()  # kinds whose listing could not be read here ("sysv"): their counts are unknown
    anonymous: tuple = ()  # shared anonymous regions (MAP_SHARED|MAP_ANONYMOUS), which maps names /dev/zero


class ProcessMemory(NamedTuple):
    pid: int
    command: str
    user: str
    rss: int
    pss: int
    uss: int
    swap: int
    swap_pss: int
    by_kind: Optional[dict] = None  # kind -> {"rss", "pss", "uss"}
    hugetlb: int = 0  # Shared_Hugetlb + Private_Hugetlb: huge pages, which Rss and Pss leave out


class LibraryUse(NamedTuple):
    path: str
    processes: int
    rss_sum: int
    pss_sum: int
    physical_bytes: Optional[int]
    deleted: bool = False  # mapped before the file was deleted or replaced (an upgrade): an old copy still used
    device: Optional[str] = None  # of the file mapped ('fe:00'), as maps gives it
    inode: Optional[int] = None
    same_name: bool = False  # another file of this path is mapped too (a container's): named by device and inode


class FootprintReport(NamedTuple):
    processes: tuple  # of ProcessMemory
    denied: int
    vanished: int
    kernel_threads: int
    libraries: tuple = ()  # of LibraryUse, for --by library
    privileged: bool = False
    zombies: int = 0
    notes: tuple = ()  # why some processes could not be read or seen
    complete: bool = True  # every process was listed and read: sums are totals, not lower bounds

    @property
    def unreadable(self) -> int:
        return self.denied + self.vanished

    def totals(self) -> dict:
        keys = ("rss", "pss", "uss", "swap", "swap_pss", "hugetlb")
        return {k: sum(getattr(p, k) for p in self.processes) for k in keys}


# ------------------------------------------------------------------ the ledger (measure/ledger.py)


class CgroupUse(NamedTuple):
    cgroup: Optional[str]  # the path in the memory hierarchy; None where the process's cgroup is unknown
    processes: int
    pss_bytes: dict  # kind -> bytes (hugetlb: Shared_Hugetlb + Private_Hugetlb, which smaps keeps out of Pss)
    memory_stat: Optional[dict]  # what the kernel charges the cgroup, by the hierarchy's own names
    charged_bytes: Optional[dict]  # kind -> bytes of shared objects' pages charged to it (root only)
    # shmem charged to it and the cgroups below it that no mapping we read holds: files in /dev/shm or
    # segments nobody maps, tmpfs files (root only: it needs the charges of the mapped pages)
    unmapped_shmem_bytes: Optional[int] = None
    descendants: tuple = ()  # the listed cgroups below it, whose charges its memory.stat includes


class LedgerObject(NamedTuple):
    kind: str  # sysv, posix, memfd, tmpfs, library_text, library_data
    name: str
    shmid: Optional[int]
    size_bytes: Optional[int]
    processes: int
    rss_sum_bytes: int
    pss_sum_bytes: int
    physical_bytes: Optional[int]  # distinct PFNs (root)
    saved_bytes: Optional[int]  # Rss sum - physical: what sharing saves
    used_by: tuple  # ((cgroup, pss bytes), ...)
    charged_to: Optional[tuple]  # ((cgroup, bytes), ...) from /proc/kpagecgroup (root)
    device: Optional[str] = None
    inode: Optional[int] = None
    ipc_namespace: Optional[str] = None


class LibraryCopies(NamedTuple):
    name: str
    build_id: str
    files: int
    extra_bytes: int  # what the copies cost beyond one
    paths: tuple


class Ledger(NamedTuple):
    cgroup_version: Optional[int]
    cgroups: tuple  # of CgroupUse
    objects: tuple  # of LedgerObject
    library_copies: tuple  # of LibraryCopies
    privileged: bool
    complete: bool
    notes: tuple = ()


# ------------------------------------------------------------------ sandbox (measure/sandbox.py), cgroups (proc/cgroup.py)


class Isolated(NamedTuple):
    result: object
    private: bool  # ran in a private IPC namespace and /dev/shm
    where: str  # one sentence for the notes


class Mount(NamedTuple):
    """One line of /proc/PID/mountinfo."""

    device: str  # "0:27", major:minor in decimal as mountinfo gives it
    root: str  # the part of the file system the mount shows
    point: str  # where it is mounted, in that process's mount namespace
    options: tuple  # per-mount options
    fstype: str
    super_options: tuple  # per-superblock options


class Hierarchy(NamedTuple):
    version: int  # 1: the v1 memory controller; 2: the unified hierarchy
    mount: str  # where it is mounted (a host path)
    root: str  # the part of the hierarchy that mount shows ("/" but in a cgroup namespace)
    controller: str = "memory"  # the v1 controller whose line of /proc/PID/cgroup names the cgroup
