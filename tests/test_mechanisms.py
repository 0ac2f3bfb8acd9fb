"""Each mechanism: create, attach, write, read, detach, destroy on the live kernel."""
import pytest

from toolkit import mechanisms, vm
from toolkit.errors import LimitExceeded, NotELF, NotFound
from toolkit.mechanisms.dso import library_mappings, resolve_library
from toolkit.mechanisms.sysv import find_by_id
from toolkit.proc.maps import find_mapping, read_maps, read_smaps
from toolkit.proc.system import read_limits


@pytest.fixture(params=["sysv", "posix"])
def made(request):
    """A fresh object of each explicit kind, always removed."""
    mech = mechanisms.get(request.param)
    handle = mech.new_handle(1 << 20)
    mech.create(handle)
    try:
        yield mech, handle
    finally:
        mech.destroy(handle)


def test_create_does_not_touch_pages(made):
    mech, handle = made
    if mech.name == "sysv":
        seg = find_by_id(handle.shmid)
        assert seg.rss == 0 and seg.nattch == 0 and seg.mode & 0o777 == 0o600
    else:
        assert mech.kernel_bytes(handle)[0] == 0
    assert mech.describe(handle)[0] == "0600"


def test_attach_write_read_detach(made):
    mech, handle = made
    a = mech.attach(handle)
    b = mech.attach(handle)  # two attachments: two mappings of the same pages
    try:
        assert a.addr != b.addr and a.length == b.length == 1 << 20
        vm.write(a.addr + 4096, b"hello")
        assert vm.read(b.addr + 4096, 5) == b"hello"
        m = find_mapping(read_maps("self"), a.addr)
        assert m.shared
        if mech.name == "sysv":
            assert m.path == mech.maps_name(handle.key) and m.deleted and m.inode == handle.shmid
        else:
            assert m.path == mech.maps_name(handle.name)
    finally:
        mech.detach(a)
        mech.detach(b)
    assert find_mapping(read_maps("self"), a.addr) is None


def test_exclusive_create(made):
    mech, handle = made
    with pytest.raises(FileExistsError):
        mech.create(handle)


def test_destroy_while_attached_keeps_the_mapping(made):
    mech, handle = made
    a = mech.attach(handle)
    try:
        mech.destroy(handle)
        assert not mech.exists(handle) or find_by_id(handle.shmid).marked_for_removal
        vm.write(a.addr, b"still here")
        assert vm.read(a.addr, 10) == b"still here"
    finally:
        mech.detach(a)
    assert not mech.exists(handle)


def test_first_touch_populates_every_page(made):
    mech, handle = made
    a = mech.attach(handle)
    try:
        vm.populate_write(a.addr, a.length)
        e = find_mapping(read_smaps("self"), a.addr)
        assert e["Rss"] == a.length
    finally:
        mech.detach(a)


def test_attach_unknown_object():
    for name in ("sysv", "posix"):
        mech = mechanisms.get(name)
        h = mech.new_handle(4096)
        h.shmid = 0x7FFFFFF0 if name == "sysv" else None
        with pytest.raises(NotFound):
            mech.attach(h)


def test_size_past_the_limits_is_refused():
    lim = read_limits()
    with pytest.raises(LimitExceeded):
        mechanisms.get("posix").check_size(lim.dev_shm_free + 1, lim)
    if lim.shmmax < (1 << 62):
        with pytest.raises(LimitExceeded):
            mechanisms.get("sysv").check_size(lim.shmmax + 1, lim)
    # shmall counts pages: a size past it is refused before shmget
    with pytest.raises(LimitExceeded):
        mechanisms.get("sysv").check_size((lim.shmall + 1) * lim.page_size, lim)


def test_shmget_refusal_becomes_limit_error():
    sysv = mechanisms.get("sysv")
    h = sysv.new_handle(0)  # size 0 with IPC_CREAT: EINVAL
    with pytest.raises(LimitExceeded):
        sysv.create(h)


def test_library_resolution_and_refusals(tmp_path):
    libc = resolve_library(None)
    assert "libc" in libc
    assert resolve_library("libz.so.1").startswith("/")
    with pytest.raises(NotELF):
        resolve_library("/etc/hostname")
    with pytest.raises(NotFound):
        resolve_library("no-such-library-xyz")
    with pytest.raises(NotFound):
        resolve_library(str(tmp_path / "missing.so"))
    (tmp_path / "trunc.so").write_bytes(b"\x7fELF\x02\x01")
    with pytest.raises(NotELF):
        resolve_library(str(tmp_path / "trunc.so"))
    with pytest.raises(NotELF):
        resolve_library(str(tmp_path))


def test_dso_attach_finds_text_and_data():
    dso = mechanisms.get("dso")
    h = dso.new_handle(path="libz.so.1")
    att = dso.attach(h)
    try:
        text, data = library_mappings(read_maps("self"), h.path)
        assert text and data
        assert all("x" in m.perms for m in text) and all("w" in m.perms for m in data)
        assert att.extra["text"][0][0] == text[0].start
    finally:
        dso.detach(att)
