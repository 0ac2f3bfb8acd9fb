"""`shmkit elf`: readelf -lW as the oracle, hazards, the live join, bad files, mutated headers."""
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest
from conftest import LIBDIR, REPO, run_as_nobody, run_shmkit
from elfgen import make_elf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from readelf_oracle import readelf_segments

from toolkit.elf.headers import read_elf
from toolkit.errors import ShmkitError
from toolkit.measure.elfjoin import join_pid
from toolkit.measure.peer import PeerGroup
from toolkit.mechanisms import get as mechanism
from toolkit.proc.maps import read_smaps



def _system_libraries():
    out = set()
    for p in glob.glob(os.path.join(LIBDIR, "*.so*")):
        real = os.path.realpath(p)
        if os.path.isfile(real):
            with open(real, "rb") as f:
                if f.read(4) == b"\x7fELF":
                    out.add(real)
    return sorted(out)


def _ours(info):
    return [(s.type, s.offset, s.vaddr, s.paddr, s.filesz, s.memsz, s.flags, s.align) for s in info.segments]


def test_program_headers_equal_readelf_on_every_system_library():
    libs = _system_libraries()
    assert len(libs) > 20
    mismatches = []
    for path in libs:
        rows, mapping = readelf_segments(path)
        info = read_elf(path)
        if _ours(info) != rows or [s.sections for s in info.segments] != mapping:
            mismatches.append(path)
    assert not mismatches, mismatches[:5]


def _header_lines(text):
    """The program header table as printed: its title row and every row, up to the blank line."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Program Headers:")) + 1
    out = []
    for line in lines[start:]:
        if not line.strip():
            break
        out.append(line.rstrip())
    return out


def test_program_header_lines_are_readelfs_own_text(tmp_path):
    """The wide table is readelf -lW's, character for character: the fields alone did not catch that C's
    %#lx writes an alignment of 0 (a GNU_STACK, as lld links it) as "0", where we wrote "0x0"."""
    import io
    import struct

    from toolkit.report.elf import render_elf

    zero_align = tmp_path / "libz-zero-align.so"
    data = bytearray(open(os.path.join(LIBDIR, "libz.so.1"), "rb").read())
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(phnum):
        at = phoff + i * phentsize
        if struct.unpack_from("<I", data, at)[0] == 0x6474E551:  # PT_GNU_STACK: its p_align to 0
            struct.pack_into("<Q", data, at + 48, 0)
    zero_align.write_bytes(bytes(data))
    for path in [str(zero_align)] + _system_libraries()[:60]:
        # wide (-lW) at 200 columns, and readelf -l's two-line form below 104, which writes "0x0"
        for flag, width in (("-lW", 200), ("-l", 80)):
            theirs = subprocess.run(["readelf", flag, path], capture_output=True, text=True,
                                    env={"LC_ALL": "C"}).stdout
            buf = io.StringIO()
            render_elf(read_elf(path), buf, width)
            assert _header_lines(buf.getvalue()) == _header_lines(theirs), (path, flag)


@pytest.mark.parametrize("elf_class,little,machine,name", [
    (32, True, 3, "i386"), (32, False, 8, "MIPS big-endian"), (64, False, 21, "PowerPC64 big-endian"),
    (64, True, 183, "AArch64"), (32, True, 40, "ARM"), (64, False, 22, "s390x"),
])
def test_other_classes_byte_orders_and_machines(tmp_path, elf_class, little, machine, name):
    path = tmp_path / "lib.so"
    path.write_bytes(make_elf(elf_class, little, machine))
    rows, mapping = readelf_segments(str(path))
    info = read_elf(str(path))
    assert rows and _ours(info) == rows
    assert [s.sections for s in info.segments] == mapping
    import io

    from toolkit.report.elf import render_elf

    buf = io.StringIO()
    render_elf(info, buf, 200)
    theirs = subprocess.run(["readelf", "-lW", str(path)], capture_output=True, text=True, env={"LC_ALL": "C"}).stdout
    assert _header_lines(buf.getvalue()) == _header_lines(theirs)  # the text too, 32-bit columns included
    assert info.elf_class == elf_class and info.endianness == ("little" if little else "big")
    assert info.layout.startswith("classic")
    loads = info.loads()
    assert loads[0].sharing.startswith("code, shared") and ".bss" in loads[1].sharing


def _gcc(tmp_path, name, *flags):
    src = tmp_path / "g.c"
    src.write_text("int counter = 3;\nint get(void) { return counter; }\nvoid put(int v) { counter = v; }\n")
    out = tmp_path / name
    subprocess.run(["gcc", "-shared", *flags, "-o", str(out), str(src)], check=True)
    return str(out)


def test_text_relocations_are_flagged(tmp_path):
    textrel = read_elf(_gcc(tmp_path, "libtr.so", "-fno-PIC", "-mcmodel=large", "-Wl,-z,notext"))
    assert textrel.textrel and not textrel.pic
    code = next(s for s in textrel.loads() if "E" in s.flags)
    assert code.relocations > 0 and "text relocations" in code.sharing
    pic = read_elf(_gcc(tmp_path, "libpic.so", "-fPIC"))
    assert not pic.textrel and pic.pic


def test_relro_levels(tmp_path):
    assert read_elf(_gcc(tmp_path, "a.so", "-fPIC", "-Wl,-z,relro,-z,now")).relro == "full"
    assert read_elf(_gcc(tmp_path, "b.so", "-fPIC", "-Wl,-z,relro,-z,lazy")).relro == "partial"
    assert read_elf(_gcc(tmp_path, "c.so", "-fPIC", "-Wl,-z,norelro")).relro == "none"


def test_relocation_pages_match_readelf(tmp_path):
    """The relocations counted per LOAD are those readelf -r lists (RELR expanded)."""
    path = _gcc(tmp_path, "libr.so", "-fPIC", "-Wl,-z,now")
    out = subprocess.run(["readelf", "-rW", path], capture_output=True, text=True).stdout
    offsets = set()
    for line in out.splitlines():
        parts = line.split()
        if parts and len(parts[0]) >= 8 and all(c in "0123456789abcdef" for c in parts[0]) and len(parts) > 2:
            offsets.add(int(parts[0], 16))
    info = read_elf(path)
    assert sum(s.relocations for s in info.loads()) == len(offsets)
    page = os.sysconf("SC_PAGE_SIZE")  # the pages this kernel maps: 4 KiB, or 64 KiB on some aarch64
    assert sum(s.reloc_pages for s in info.loads()) == len({o // page for o in offsets})


def test_one_relocation_is_counted_in_the_singular(tmp_path):
    src = tmp_path / "r.c"
    src.write_text("int x = 1;\nint *p = &x;\n")  # one R_X86_64_64 (R_AARCH64_ABS64): one word of one page
    out = tmp_path / "libone.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-nostdlib", "-o", str(out), str(src)], check=True)
    r = run_shmkit("elf", str(out), env={**os.environ, "COLUMNS": "200"})
    assert r.returncode == 0, r.stderr
    assert "[1 dynamic relocation dirty 1 page]" in " ".join(r.stdout.split()), r.stdout  # however folded


def test_header_summary_of_an_executable():
    info = read_elf("/usr/bin/ls")
    assert info.type == "DYN" and info.pie and info.interpreter


def test_live_join_of_libc_in_a_peer():
    libc = mechanism("dso").new_handle(path=None).path
    with PeerGroup(1) as group:
        pid = group[0].pid
        group[0].call("attach", region="c", handle={"mechanism": "dso", "size": 0, "path": libc})
        (info, joined), = join_pid(pid, libc, privileged=os.geteuid() == 0)
        smaps = {e.mapping.start: e for e in read_smaps(pid)}
    code = [m for m in joined.mappings if m.perms == "r-xp"]
    assert len(code) == 1
    load = next(s for s in info.loads() if s.index == code[0].segment)
    assert "E" in load.flags and code[0].map_offset == load.offset - load.offset % os.sysconf("SC_PAGE_SIZE")
    for m in joined.mappings:
        e = smaps[m.start]
        assert (m.rss, m.pss, m.private_dirty, m.shared_clean) == (e["Rss"], e["Pss"], e["Private_Dirty"], e["Shared_Clean"])
    assert {m.segment for m in joined.mappings} == {s.index for s in info.loads()}
    if os.geteuid() == 0:
        assert code[0].kpagecount_min >= 1


DELETED_LIB = """
import ctypes, os, sys
lib = ctypes.CDLL(sys.argv[1])
os.unlink(sys.argv[1])  # as a package upgrade does: the process goes on running the old copy
print("ready", flush=True)
sys.stdin.read()
"""


def _runs_a_deleted_library(folder, python=sys.executable, **kw):
    path = os.path.join(folder, "libold.so.1")
    with open(os.path.join(LIBDIR, "libz.so.1"), "rb") as src, open(path, "wb") as dst:
        dst.write(src.read())
    os.chmod(path, 0o755)
    proc = subprocess.Popen([python, "-c", DELETED_LIB, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, **kw)
    assert proc.stdout.readline() == "ready\n"
    return proc, path


def test_a_library_deleted_after_it_was_mapped_is_shown_not_skipped(tmp_path, nobody_env):
    proc, path = _runs_a_deleted_library(str(tmp_path))
    try:
        r = run_shmkit("elf", "--pid", str(proc.pid), "--json")
        assert r.returncode == 0, r.stderr
        old = [d for d in json.loads(r.stdout) if d["path"] == path]
        assert len(old) == 1 and old[0]["deleted"] is True and "map_files" in old[0]["note"]
        with open(f"/proc/{proc.pid}/maps") as f:
            ranges = {tuple(int(x, 16) for x in line.split()[0].split("-")) for line in f if path in line}
        assert {(m["start"], m["end"]) for m in old[0]["mappings"]} >= ranges  # every mapping of the old copy
        table = run_shmkit("elf", "--pid", str(proc.pid), "libold", env={**os.environ, "COLUMNS": "300"}).stdout
        assert f"{path} (deleted) in process {proc.pid}" in table
        libs = json.loads(run_shmkit("footprint", "--by", "library", "--json", str(proc.pid)).stdout)["libraries"]
        assert [u["deleted"] for u in libs if u["path"] == path] == [True]
    finally:
        proc.stdin.close()
        proc.wait(10)
    # nobody's own process: the kernel opens map_files only for CAP_SYS_ADMIN, so it is said, not dropped
    folder = tempfile.mkdtemp(prefix="shmkit-test-")  # pytest's tmp_path is in a folder only root may enter
    try:
        os.chown(folder, 65534, 65534)
        proc, path = _runs_a_deleted_library(folder, nobody_env["python"], user=65534, group=65534,
                                             extra_groups=[], cwd="/")
        try:
            r = run_as_nobody(nobody_env, "elf", "--pid", str(proc.pid), "libold")
            assert r.returncode == 0 and f"{path} (deleted) not shown:" in r.stderr, r.stderr
        finally:
            proc.stdin.close()
            proc.wait(10)
    finally:
        shutil.rmtree(folder)


def test_cli_json_and_several_paths(tmp_path):
    bad = tmp_path / "trunc.so"
    bad.write_bytes(open(os.path.join(LIBDIR, "libz.so.1"), "rb").read()[:100])
    r = run_shmkit("elf", "--json", os.path.join(LIBDIR, "libz.so.1"), str(bad), os.path.join(LIBDIR, "libc.so"),
                   str(tmp_path), str(tmp_path / "missing"), os.path.join(LIBDIR, "libc.so.6"))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    docs = json.loads(r.stdout)
    assert [os.path.basename(d["path"]) for d in docs] == ["libz.so.1", "libc.so.6"]
    d = docs[1]
    assert d["elf_class"] == 64 and d["endianness"] == "little" and d["type"] == "DYN" and d["pic"]
    assert d["relro"] in ("partial", "full") and d["textrel"] is False
    assert {"type", "offset", "vaddr", "paddr", "filesz", "memsz", "flags", "align", "sharing"} <= set(d["segments"][0])
    assert any(s["type"] == "GNU_RELRO" for s in d["segments"])
    errors = r.stderr.strip().splitlines()
    assert len(errors) == 4
    assert "truncated" in errors[0] and "not an ELF" in errors[1] and "directory" in errors[2] and "no such file" in errors[3]


def test_a_static_library_is_named_an_archive_not_a_linker_script(tmp_path):
    """ar's magic is printable text: a .a read "not an ELF file (text, perhaps a linker script)", and so did a
    shell script."""
    obj, archive = tmp_path / "a.o", tmp_path / "liba.a"
    (tmp_path / "a.c").write_text("int shmkit_a = 1;\n")
    subprocess.run(["gcc", "-c", "-o", str(obj), str(tmp_path / "a.c")], check=True)
    subprocess.run(["ar", "rcs", str(archive), str(obj)], check=True)
    r = run_shmkit("elf", str(archive), str(obj))
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [
        f"shmkit: {archive}: an ar archive, not an ELF file (a static library: its objects are linked into "
        "programs, not mapped)"], r.stderr
    assert "a relocatable object" in r.stdout  # its member, named on its own, is read
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\nexec true\n")
    assert run_shmkit("elf", str(script)).stderr.strip() == f"shmkit: {script}: a script (#!), not an ELF file"
    r = run_shmkit("compare", "--library", str(archive), "--size", "4K")
    assert r.returncode == 1 and "an ar archive" in r.stderr and "linker script" not in r.stderr
    # what else a folder of libraries holds: a compressed module, another OS's library
    import gzip

    packed, macho = tmp_path / "mod.ko.gz", tmp_path / "libosx.so"
    packed.write_bytes(gzip.compress((tmp_path / "a.o").read_bytes()))
    macho.write_bytes(b"\xcf\xfa\xed\xfe\x07\x00\x00\x01" + bytes(64))
    errors = run_shmkit("elf", str(packed), str(macho)).stderr.strip().splitlines()
    assert errors == [f"shmkit: {packed}: gzip-compressed, not an ELF file",
                      f"shmkit: {macho}: a Mach-O file (macOS), not an ELF file"], errors


def test_cli_table_and_join():
    r = run_shmkit("elf", os.path.join(LIBDIR, "libc.so.6"))
    assert r.returncode == 0 and "Program Headers:" in r.stdout and "Section to Segment mapping" in r.stdout
    assert "code, shared" in r.stdout and "RELRO:" in r.stdout
    r = run_shmkit("elf", "--pid", str(os.getpid()), "libc")
    assert r.returncode == 0 and "r-xp" in r.stdout
    r = run_shmkit("elf", "--pid", "999999")
    assert r.returncode == 1 and "does not exist" in r.stderr and "Traceback" not in r.stderr


def test_cli_aslr():
    r = run_shmkit("elf", "--aslr", "3", "--json", "libz.so.1")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["same_distance"] and d["distinct_bases"] >= 2 and len(d["peers"]) == 3


def test_a_library_whose_data_is_all_relro_has_a_data_segment_too(tmp_path):
    """A library whose RW segment is all RELRO (-nostdlib: .dynamic and .got only) has no rw-p mapping once
    relocated. elf --aslr gave its data the text's address ('text->data 0x0'), compare said the distance
    'differs' and explain called position independence NOT shown. Its data segment is its last mapping."""
    src = tmp_path / "t.c"
    src.write_text("int shmkit_f(void) { return 42; }\n")
    lib = tmp_path / "librelro.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-nostdlib", "-o", str(lib), str(src)], check=True)
    loads = [line.split() for line in subprocess.run(["readelf", "-lW", str(lib)], capture_output=True,
                                                      text=True).stdout.splitlines() if line.strip().startswith("LOAD")]
    rw = next(f for f in loads if f[6:8] == ["RW"] or f[6] == "RW")
    text = next(f for f in loads if "E" in f[6:8])
    expected = (int(rw[2], 16) & ~(os.sysconf("SC_PAGE_SIZE") - 1)) - (int(text[2], 16) & ~(os.sysconf("SC_PAGE_SIZE") - 1))
    d = json.loads(run_shmkit("elf", "--aslr", "2", "--json", str(lib)).stdout)
    assert d["same_distance"] and [p["text_to_data"] for p in d["peers"]] == [expected, expected], (d, expected)
    c = json.loads(run_shmkit("compare", "--library", str(lib), "--size", "4K", "--peers", "2", "--json").stdout)
    assert c["text_sharing"]["text_to_data"] == [expected, expected] and "differs" not in run_shmkit(
        "compare", "--library", str(lib), "--size", "4K", "--peers", "2").stdout
    story = json.loads(run_shmkit("explain", "--library", str(lib), "--peers", "2", "--json").stdout)
    pic = next(s for s in story["steps"] if s["claim"].startswith("Position independent code"))
    assert pic["holds"] is True and pic["evidence"][1] == f"code-to-data distance: {expected:#x}, {expected:#x}", pic


def test_a_library_with_no_code_is_refused_before_any_peer_starts(tmp_path):
    """A shared object of data only has no r-xp mapping: compare and the demos failed in a peer ('loaded
    but no executable mapping'), and explain said 'process N has no library matching ... mapped'."""
    src = tmp_path / "d.c"
    src.write_text("int shmkit_only_data[4096] = {1};\n")
    lib = tmp_path / "libdata.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-nostdlib", "-o", str(lib), str(src)], check=True)
    for args in (["compare", "--size", "64K", "--peers", "2"], ["explain", "--peers", "2"], ["demo", "pic"],
                 ["elf", "--aslr", "2"]):
        lib_args = ["--library", str(lib)] if args[0] != "elf" else [str(lib)]
        r = run_shmkit(*args, *lib_args)
        assert r.returncode == 1 and r.stderr.strip() == (
            f"Error: {lib}: a shared object with no code (no executable PT_LOAD): nothing of it is mapped r-xp, so "
            "there is no code to share; name a library with code"), (args, r.stderr)
    assert "LOAD" in run_shmkit("elf", str(lib)).stdout  # its headers are still shown by elf itself


def test_unreadable_file_as_nobody(nobody_env, tmp_path):
    secret = tmp_path / "secret.so"
    secret.write_bytes(open(os.path.join(LIBDIR, "libz.so.1"), "rb").read())
    os.chmod(tmp_path, 0o755)
    os.chmod(secret, 0o600)
    r = run_as_nobody(nobody_env, "elf", str(secret), os.path.join(LIBDIR, "libz.so.1"))
    assert r.returncode == 1 and "permission denied" in r.stderr and "Traceback" not in r.stderr
    assert "Program Headers" in r.stdout
    r = run_as_nobody(nobody_env, "elf", "--pid", str(os.getpid()))  # root's process: say why, in one line
    assert r.returncode == 1 and r.stderr.strip() == (
        f"Error: process {os.getpid()}: permission denied (they belong to other users: reading their memory maps "
        "needs root or CAP_SYS_PTRACE)")


_SEED = make_elf(64, True, 62)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.one_of(st.integers(0, 64 + 4 * 56), st.integers(0, len(_SEED) - 1)), st.integers(0, 255)),
                min_size=1, max_size=8),
       st.integers(16, len(_SEED)))
def test_mutated_headers_never_crash(tmp_path_factory, edits, cut):
    blob = bytearray(_SEED[:cut])
    for pos, value in edits:
        if pos < len(blob):
            blob[pos] = value
    path = tmp_path_factory.mktemp("m") / "m.so"
    path.write_bytes(bytes(blob))
    try:
        info = read_elf(str(path))
    except ShmkitError as err:
        assert str(path) in str(err) and "\n" not in str(err)
    else:
        assert info.elf_class in (32, 64)
        # and what we then print of it, wide and narrow, and as strict JSON
        import io
        import json as _json

        from toolkit.report.elf import elf_to_json, render_elf

        for width in (80, 200):
            render_elf(info, io.StringIO(), width)
        _json.loads(_json.dumps(elf_to_json(info), allow_nan=False))


def test_demos_pic_and_walkthrough():
    r = subprocess.run([sys.executable, "demos/pic.py", "libz.so.1", "3"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert "Verdict: the same code pages work at any address" in r.stdout and r.stdout.count("base 0x") == 3
    r = subprocess.run([sys.executable, "demos/readelf_walkthrough.py"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert "Program Headers:" in r.stdout and "r-xp" in r.stdout and "Private_Dirty" in r.stdout


def test_elf_json_of_several_files_is_an_array_even_when_none_could_be_read(tmp_path):
    r = run_shmkit("elf", "--json", str(tmp_path / "a"), str(tmp_path / "b"))
    assert r.returncode == 1 and json.loads(r.stdout) == [] and len(r.stderr.splitlines()) == 2


@pytest.mark.parametrize("e_type,segments", [(1, []), (4, None)])
def test_a_relocatable_object_or_core_dump_is_not_given_a_sharing_fate(tmp_path, e_type, segments):
    # a .o has no program headers; a core dump's LOADs are copies of a dead process's memory: neither is
    # mapped by the loader, so "code, shared" or "position independent: NO" would be claims about nothing
    path = tmp_path / "obj"
    path.write_bytes(make_elf(64, True, 62, e_type=e_type, segments=segments))
    rows, _mapping = readelf_segments(str(path))
    info = read_elf(str(path))
    assert [(s.type, s.offset, s.vaddr, s.paddr, s.filesz, s.memsz, s.flags, s.align) for s in info.segments] == rows
    assert bool(rows) == (segments is None)
    r = run_shmkit("elf", str(path), env={**os.environ, "COLUMNS": "80"})
    assert r.returncode == 0, r.stderr
    assert "position independent" not in r.stdout and "shared (the same physical pages" not in r.stdout
    prose = " ".join(r.stdout.split())  # wrapped at 80 columns
    assert "not mapped by the loader" in prose or "which is what is mapped" in prose
    if not rows:
        readelf = subprocess.run(["readelf", "-lW", str(path)], capture_output=True, text=True,
                                 env={"LC_ALL": "C"}).stdout
        assert "There are no program headers in this file." in readelf
        assert "There are no program headers in this file." in r.stdout and "Program Headers:" not in r.stdout
    d = json.loads(run_shmkit("elf", "--json", str(path)).stdout)
    assert d["loadable"] is False and d["pic"] is None and d["textrel"] is None and d["relro"] is None
    assert d["private_estimate_bytes"] is None and all(s["sharing"] == "" for s in d["segments"])
    d = json.loads(run_shmkit("elf", "--json", os.path.join(LIBDIR, "libc.so.6")).stdout)
    assert d["loadable"] is True and d["pic"] is True
