import contextlib
import os
import sys

import click

from toolkit.cli.common import (
    PathName,
    cannot_write,
    console,
    folder_problem,
    library_errors,
    write_atomically,
)
from toolkit.report.view import json_text


def ROOT(fn):
    """--root DIR and --from FILE: read a recorded host instead of this machine."""
    fn = click.option("--from", "from_", type=PathName(), default=None, metavar="FILE",
                      help="Replay a snapshot made by `shmkit snapshot FILE` (on this or another machine); "
                           "- reads standard input.")(fn)
    return click.option("--root", "root", default=None, metavar="DIR", type=PathName(file_okay=False, exists=True),
                        help="Read a recorded host under DIR (its proc/, etc/, run/, dev/shm) instead of this machine.")(fn)


WATCH_RANGE_S = (0.1, 86400.0)  # faster is a busy loop of scans; slower than a day is not watching


def _interval(ctx, param, value):
    lo, hi = WATCH_RANGE_S
    if value is not None and not lo <= value <= hi:  # also refuses nan and inf
        raise click.BadParameter(f"SECONDS must be from {lo:g} to {hi:g} (got {value:g})", ctx, param)
    return value


WATCH = click.option("--watch", "watch", type=float, is_flag=False, flag_value=1.0, default=None, metavar="[SECONDS]",
                     callback=_interval,
                     help="Scan again every SECONDS (1 by default) and show what changed; Ctrl-C ends it. On a "
                          "terminal the table is redrawn in place; otherwise one JSON object (--json) or one "
                          "timestamped table per scan.")


def _watch(scan, changes, to_json, renderables, interval, as_json):
    """The --watch loop at the CLI edge: rich Live on a terminal, a record per scan otherwise."""
    import datetime
    import sys

    from toolkit.measure.watch import loop

    con = console()

    def stamp():
        return datetime.datetime.now().astimezone().isoformat(timespec="seconds")

    def show_line(cur, prev):
        ch = changes(prev, cur)
        if as_json:
            doc = {"time": stamp(), **to_json(cur), "changes": {str(k): v for k, v in ch.items()}
                   if "new" not in ch else _segment_changes_json(cur, ch)}
            sys.stdout.write(json_text(doc, indent=None) + "\n")
            sys.stdout.flush()
        else:
            con.print(f"--- {stamp()}")
            for part in renderables(cur, ch, con):
                con.print(part)

    try:
        if as_json or not con.is_terminal:
            loop(scan, show_line, interval)
        else:
            from rich.console import Console, Group
            from rich.live import Live
            from rich.text import Text

            from toolkit.report.view import Block

            # rich redraws in place; the parts are plain text laid out at the width, as in a pipe
            with Live(console=Console(), auto_refresh=False, screen=False) as live:
                def show_live(cur, prev):
                    ch = changes(prev, cur)
                    parts = [f"every {interval:g} s, {stamp()} (Ctrl-C ends)", *renderables(cur, ch, con)]
                    live.update(Group(*(Text(p, no_wrap=isinstance(p, Block)) for p in parts)), refresh=True)
                loop(scan, show_live, interval)
    except KeyboardInterrupt:
        pass  # the way to end a watch: a clean stop, status 0


def _segment_changes_json(report, ch) -> dict:
    """segments --watch --json: which objects are new and which went ('sysv 32769', 'posix NAME'), and per
    object the pids that attached or detached since the last scan."""
    from toolkit.measure.watch import describe, segment_key
    from toolkit.report.view import escape

    # names escaped as the objects' own "name" fields are: any byte can be in a /dev/shm name
    names = {segment_key(o): escape(describe(o)) for o in report.sysv + report.posix + report.pinned}
    return {"new": sorted(names[k] for k in ch["new"]), "gone": [escape(g) for g in ch["gone"]],
            "attached": {names[k]: pids for k, pids in ch["attached"].items()},
            "detached": {names[k]: pids for k, pids in ch["detached"].items()}}


def _live_for_watch(from_):
    if from_:
        raise click.UsageError("--watch rescans a live system; a snapshot (--from) never changes")


@contextlib.contextmanager
def _host(root, from_):
    from toolkit.proc.fs import ProcFS, default_fs

    if root and from_:
        raise click.UsageError("--root and --from both name a recorded host: give one")
    if from_:
        from toolkit.measure.snapshot import opened

        with opened(from_) as fs, _malformed(from_, fs.host_root):
            yield fs
    elif root:
        from toolkit.errors import BadInput

        fs = ProcFS.at_host(root)
        if not fs.shows_a_host():
            inner = os.path.join(root, "host")  # an unpacked snapshot keeps its host one folder down
            hint = f"; {inner} is one (an unpacked snapshot)" if ProcFS.at_host(inner).shows_a_host() else ""
            raise BadInput(f"{root}: not a recorded host (it has no proc/self/status){hint}")
        with _malformed(root):
            yield fs
    else:
        yield default_fs()


def _scan_progress():
    """Progress of a scan on stderr, once it has taken 2 s (thousands of processes' smaps): quick scans,
    the usual ones, print nothing and import nothing for it."""
    from toolkit.cli.common import ProgressReporter

    return ProgressReporter(bar_after_s=ProgressReporter.PLAIN_AFTER_S)


@contextlib.contextmanager
def _malformed(where, unpacked=None):
    """A recording is anyone's file: what the kernel never writes (a stat with letters for numbers, a cut
    JSON, a maps line of noise) fails a parser with ValueError and the like. From a recording, that is one
    line naming it, not a traceback; live, it stays a bug of ours and escapes. A snapshot's files are
    named as members of it (SNAPSHOT:proc/31/stat), not by the private folder it was unpacked into."""
    import json
    import struct

    from toolkit.errors import BadInput, ShmkitError
    from toolkit.report.view import escape

    try:
        yield
    except ShmkitError as err:
        if unpacked and unpacked.rstrip("/") + "/" in str(err):
            raise BadInput(str(err).replace(unpacked.rstrip("/") + "/", f"{where}:")) from err
        raise
    except (ValueError, TypeError, IndexError, KeyError, struct.error, json.JSONDecodeError) as err:
        first = escape((str(err).splitlines() or [""])[0][:200])
        raise BadInput(f"{where}: a file of this recording is malformed ({type(err).__name__}: {first})") from err


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@WATCH
@ROOT
@library_errors
def segments(as_json, watch, root, from_):
    """Every System V segment and POSIX object, memfd and deleted-file mappings, and who maps each now."""
    from toolkit.measure.system import scan_segments
    from toolkit.report import system as report

    if watch is not None:
        from toolkit.measure.watch import segments_changes

        _live_for_watch(from_)
        from toolkit.measure.system import HeldMaps

        with _host(root, from_) as fs:
            held = HeldMaps()
            _watch(lambda: scan_segments(fs, held), segments_changes, report.segments_to_json,
                   lambda r, ch, con: report.segments_renderables(r, con, ch), watch, as_json)
        return
    with _host(root, from_) as fs:
        r = scan_segments(fs)
    if as_json:
        click.echo(json_text(report.segments_to_json(r)))
    else:
        report.render_segments(r, console())


UID_MAX = 4294967294  # (uid_t)-1 is no uid: it means "unchanged" to setresuid


def _user(ctx, param, value):
    """A name or a uid; an empty one (an unset variable) and a number no uid can be are usage errors."""
    if value is None:
        return None
    if not value:
        raise click.BadParameter("an empty name (an unset variable?)")
    if value.isdigit() and int(value) > UID_MAX:
        raise click.BadParameter(f"{value} is no uid: uids go from 0 to {UID_MAX}")
    return value


@click.command()
@click.argument("pids", nargs=-1, type=click.IntRange(min=1))
@click.option("--all", "all_", is_flag=True, help="Every process (the default when no PID is given).")
@click.option("--user", default=None, callback=_user, help="Only processes of this user (name or uid).")
@click.option("--match", default=None, metavar="PATTERN", help="Only processes whose command line matches this regular expression.")
@click.option("--by", type=click.Choice(["process", "user", "kind", "library", "cgroup", "object"]), default="process",
              show_default=True, help="One row per process, user, kind of memory (System V, POSIX, library text, ...), "
              "library, cgroup (used against charged), or shared object (who maps it, who pays).")
@click.option("--sort", type=click.Choice(["pss", "rss", "uss", "swap", "pid", "command"]), default=None,
              help="Order of the rows, largest first for sizes (default: pss); --by user takes the sizes, --by kind "
              "pss, rss or uss. With --json, the order of the lists (pid order without --sort).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the table.")
@click.option("--no-pfns", is_flag=True, help="With --by cgroup or object: leave out physical pages and the cgroups "
              "charged for them (a pagemap read per shared mapping, as root): faster on large machines.")
@WATCH
@ROOT
@library_errors
def footprint(pids, all_, user, match, by, sort, as_json, no_pfns, watch, root, from_):
    """RSS, PSS, USS and swap per process, user, kind of memory or library (like smem, faster)."""
    import re

    from toolkit.measure.system import HeldRollups, scan_footprint
    from toolkit.report import system as report

    if pids and all_:
        raise click.UsageError("give PIDs or --all, not both")
    if match:
        try:
            re.compile(match)
        except re.error as err:
            raise click.BadParameter(str(err), param_hint="--match") from None
    if watch is not None:
        if by not in ("process", "user", "kind"):
            raise click.UsageError(f"--watch shows --by process, user or kind, not {by}")
        _live_for_watch(from_)
    if sort is not None and sort not in report.SORTS.get(by, ()):
        can = report.SORTS.get(by)
        raise click.UsageError(f"--sort {sort} does not apply to --by {by}"
                               + (f" (it takes {', '.join(can)})" if can else " (its order is fixed)"))
    json_sort, sort = sort, sort or "pss"
    if by in ("cgroup", "object"):
        from toolkit.measure.ledger import scan_ledger
        from toolkit.report import ledger

        if user or match:
            raise click.UsageError(f"--by {by} covers every process: --user and --match do not apply")
        with _host(root, from_) as fs, _scan_progress() as progress:
            led = scan_ledger(fs, pids or None, pfns=False if no_pfns else None, progress=progress)
        if as_json:
            click.echo(json_text(ledger.to_json(led, by)))
        else:
            ledger.render(led, by, console())
        return
    if no_pfns:
        raise click.UsageError("--no-pfns applies to --by cgroup and --by object")
    if watch is not None:
        from toolkit.measure.watch import footprint_changes

        with _host(root, from_) as fs:
            held = HeldRollups()
            _watch(lambda: scan_footprint(pids, user, match, by, fs=fs, held=held), footprint_changes,
                   lambda r: report.footprint_to_json(r, by, json_sort),
                   lambda r, ch, con: report.footprint_renderables(r, by, sort, con, ch), watch, as_json)
        return
    with _host(root, from_) as fs, _scan_progress() as progress:
        r = scan_footprint(pids, user, match, by, fs=fs, progress=progress)
    if as_json:
        click.echo(json_text(report.footprint_to_json(r, by, json_sort)))
    else:
        report.render_footprint(r, by, sort, console())


@click.command()
@click.option("--prometheus", "prom", is_flag=True, required=True, help="node_exporter textfile-collector format.")
@click.argument("file", required=False, type=PathName(dir_okay=False))
@ROOT
@library_errors
def export(prom, file, root, from_):
    """Export counts and bytes (segments, orphans, PSS by kind) for monitoring; FILE is written atomically."""
    from toolkit.measure.system import scan_footprint, scan_segments
    from toolkit.report import system as report

    with _host(root, from_) as fs:
        text = report.prometheus_text(scan_segments(fs), scan_footprint(by="kind", fs=fs))
    if not file or file == "-":
        sys.stdout.write(text)
        return
    write_atomically(file, text)  # the collector never reads a half-written file


@click.command()
@click.argument("file", type=PathName(dir_okay=False))
@library_errors
def snapshot(file):
    """Capture what footprint, segments and export read into FILE (a tar: .tar.gz, .tar.xz, .tar.bz2 or .tar; - for stdout), to replay with --from."""
    from toolkit.cli.common import ProgressReporter
    from toolkit.errors import BadInput
    from toolkit.measure.snapshot import take_snapshot, tar_mode

    named = file
    if file == "-":  # standard output, as /dev/stdout is: a pipe to ssh or a file it is redirected to
        try:
            os.fstat(1)
        except OSError:  # started with it closed (>&-): said as every other command says it
            raise click.ClickException("standard output is closed") from None
        if sys.stdout.isatty():
            raise click.BadParameter("'-' would write a compressed archive to the terminal: redirect it "
                                     "or name a file", param_hint="FILE")
        file = "/dev/stdout"
    problem = folder_problem(file)
    if problem:
        raise click.BadParameter(f"{file!r}: {problem}", param_hint="FILE")
    try:
        tar_mode(file)
    except BadInput as err:
        raise click.BadParameter(str(err), param_hint="FILE") from None
    with ProgressReporter() as progress:
        try:
            summary = take_snapshot(file, progress=progress)
        except OSError as err:
            cannot_write("-" if named == "-" else file, err)
    from toolkit.report.view import escape

    size = "" if summary["bytes"] is None else f", {summary['bytes']} bytes"
    where = "standard output" if named == "-" else escape(summary["file"])
    from toolkit.outfile import is_stdout

    click.echo(f"{where}: {summary['processes']} processes{size}", err=is_stdout(file))

