"""Sizes in and out: '64M' -> bytes, bytes -> '64.0 MiB'."""
import re

from toolkit.errors import BadInput

_SUFFIX = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50, "E": 1 << 60}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGTPE]?)(?:I?B)?\s*$", re.IGNORECASE)
SIZE_MAX = (1 << 64) - 1  # size_t: no call takes more, on any machine shmkit runs on


def parse_size(text) -> int:
    """Parse '4096', '4K', '64M', '1G', '1.5M', '16MiB' into bytes (binary units)."""
    if isinstance(text, int):
        return text
    m = _SIZE_RE.match(str(text))
    if not m:
        raise BadInput(f"cannot read size {text!r}: use plain bytes or a K, M, G suffix (e.g. 64M)")
    # whole numbers only, so that a large size is exact (a float drifts past 2**53 bytes)
    whole, _, frac = m.group(1).partition(".")
    num, den = int(whole + frac) * _SUFFIX[m.group(2).upper()], 10 ** len(frac)
    if num % den:
        raise BadInput(f"size {text!r} is not a whole number of bytes")
    return num // den


def parse_region_size(text) -> int:
    """parse_size for a region to make: one past size_t is refused here, with its reason, rather than
    further on as 'past shmmax' with a number of 33 digits."""
    size = parse_size(text)
    if size > SIZE_MAX:
        raise BadInput(f"size {text!r} is past 16 EiB (2**64 bytes), more than any address space holds")
    return size


def human_bytes(n) -> str:
    if n is None:
        return "-"
    n = int(n)
    for unit, factor in (("EiB", 1 << 60), ("PiB", 1 << 50), ("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20),
                         ("KiB", 1 << 10)):
        if abs(n) >= factor:
            return f"{n / factor:.1f} {unit}"
    return f"{n} B"


def region_size(n) -> str:
    """A size the user asked for, as human_bytes unless that hides bytes that cost a page: --size 4097
    read "4.0 KiB" beside an Rss of 8.0 KiB; it reads "4097 B". (Above 1 MiB a page is lost in the
    rounding of every figure alike.)"""
    n = int(n)
    return f"{n} B" if n % 1024 and n < 1 << 20 else human_bytes(n)


def size_words(n) -> str:
    """A size for a message: exact bytes, and human units beside them ("12884901888 bytes (12.0 GiB)")."""
    n = int(n)
    return f"{n} bytes" + (f" ({human_bytes(n)})" if n >= 1024 else "")


def counted(n, noun: str, plural: str = "") -> str:
    """'1 page', '2 pages', '3 processes': a count with its noun."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def every(n, noun_plural: str) -> str:
    """'both peers', 'all 3 peers': every one of n things, as one says it."""
    return f"both {noun_plural}" if n == 2 else f"all {n} {noun_plural}"


def human_seconds(s) -> str:
    if s is None:
        return "-"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} µs"


_OWNERS = {}


def owner_name(uid: int) -> str:
    """The user name of a uid (looked up once per uid: a scan of 1000 processes asks for a few uids)."""
    name = _OWNERS.get(uid)
    if name is None:
        import pwd

        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            name = str(uid)
        _OWNERS[uid] = name
    return name


def mode_string(mode: int) -> str:
    """Permission bits as ls -l's octal: '0600'."""
    return f"{mode & 0o777:04o}"
