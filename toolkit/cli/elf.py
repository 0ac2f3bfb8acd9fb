import sys

import click

from toolkit.cli.common import at_least, library_errors
from toolkit.report.view import json_text


@click.command()
@click.argument("paths", nargs=-1)
@click.option("--pid", type=click.IntRange(min=1), default=None, help="Join a running process's mappings to its objects' PT_LOADs (PATHS then narrows to those libraries).")
@click.option("--aslr", "aslr", type=int, callback=at_least(2, "addresses are compared between processes"), default=None, metavar="N", help="Load the library in N peers (at least 2): load addresses differ, distances do not.")
@click.option("--json", "as_json", is_flag=True, help="JSON: one object per file (an array for several).")
@library_errors
def elf(paths, pid, aslr, as_json):
    """Program headers (as readelf -lW), each segment's sharing fate, hazards; or the live join with --pid."""
    from toolkit.errors import ShmkitError
    from toolkit.report import elf as report

    out = sys.stdout
    if pid is not None and aslr is not None:
        raise click.UsageError("--pid and --aslr are two different views: give one")
    if pid is not None:
        from toolkit.measure.elfjoin import join_pid
        from toolkit.proc.pagemap import kpagecount_readable, probe_pfns_visible
        from toolkit.proc.process import processes_of
        from toolkit.report.view import escape

        pid = processes_of([pid])[0]  # a thread's id: its process
        privileged = probe_pfns_visible() and kpagecount_readable()
        joined, skipped = [], []
        for lib in (paths or (None,)):
            joined += join_pid(pid, lib, privileged, skipped)
        for path, why in skipped:  # said, not silently missing from the answer
            click.echo(f"shmkit: {escape(path)} not shown: {escape(why)}", err=True)
        if as_json:
            click.echo(json_text([report.join_to_json(i, j) for i, j in joined]))
        else:
            from toolkit.cli.common import console

            con = console()
            for info, j in joined:
                report.render_join(info, j, con)
        return
    if aslr is not None:
        from toolkit.measure.pic import load_layout
        from toolkit.report.view import escape

        if len(paths) > 1:
            raise click.UsageError("--aslr takes one library")
        result = load_layout(paths[0] if paths else None, aslr)
        if as_json:
            click.echo(json_text({"library": escape(result.library), "same_distance": result.same_distance,
                                   "distinct_bases": result.distinct_bases,
                                   "peers": [dict(pid=p.pid, base=p.base, text_start=p.text_start,
                                                  data_start=p.data_start, text_to_data=p.text_to_data)
                                             for p in result.peers]}, indent=2))
        else:
            report.render_pic(result, out)
        return
    if not paths:
        raise click.UsageError("give one or more ELF files, or --pid PID")
    from toolkit.elf.headers import read_elf
    from toolkit.report.view import escape, terminal_width

    width = terminal_width()  # once: a look at the terminal per file was a system call each

    failed = 0
    docs = []
    for path in paths:
        try:
            info = read_elf(path)
        except ShmkitError as err:
            failed += 1
            click.echo(f"shmkit: {escape(str(err))}", err=True)
            continue
        if info.truncated:  # what the headers say is still shown; what depends on the rest is unknown
            failed += 1
            click.echo(f"shmkit: {escape(path)}: truncated: {info.truncated}", err=True)
        if as_json:
            docs.append(report.elf_to_json(info))
        else:
            report.render_elf(info, out, width)
    if as_json and (docs or len(paths) > 1):  # several files: an array, empty where none could be read
        click.echo(json_text(docs[0] if len(paths) == 1 else docs))
    if failed:
        sys.exit(1)
