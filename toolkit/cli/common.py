"""Shared pieces of the commands: size parameter, error translation, console."""
from __future__ import annotations

import functools

import click

from toolkit.errors import ShmkitError


class SizeType(click.ParamType):
    name = "SIZE"

    def convert(self, value, param, ctx):
        from toolkit.units import parse_region_size

        try:
            size = parse_region_size(value)
        except ShmkitError as err:
            self.fail(str(err), param, ctx)
        if size <= 0:
            self.fail(f"{param.opts[0] if param else 'a size'} must be positive (got {value})", param, ctx)
        return size


SIZE = SizeType()


class PathName(click.Path):
    """A file or folder name; an empty one (an unset shell variable) is a usage error, where it would
    otherwise read as 'not given' and, for --from, quietly report this machine instead of a snapshot."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and not value:
            self.fail("an empty name (an unset variable?)", param, ctx)
        return super().convert(value, param, ctx)


class OutputFile(PathName):
    """A file to write when the run is over: checked before anything is measured, so that a run of
    minutes does not end in 'no such folder'."""

    def __init__(self):
        super().__init__(dir_okay=False)

    def convert(self, value, param, ctx):
        import os

        value = super().convert(value, param, ctx)
        if value == "-":  # stdout already carries the table: '-' would quietly be a file of that name
            self.fail("'-' is not standard output here (that carries the report); name a file, or ./- for a "
                      "file called '-'", param, ctx)
        if os.path.isdir(value):
            self.fail(f"{value!r} is a folder, not a file", param, ctx)
        problem = folder_problem(value)
        if problem:
            self.fail(f"{value!r}: {problem}", param, ctx)
        return value


def folder_problem(path: str):
    """Why the folder of a file to write cannot take it ('its folder does not exist'; not reachable, as a
    folder under another user's 0700 home is; not writable here), or None."""
    import os
    import stat

    try:
        folder = os.path.dirname(os.path.abspath(path))
    except FileNotFoundError:  # getcwd(): the shell is still in a folder that has been removed
        return "its folder is the current one, which no longer exists (removed since the shell entered it)"
    try:
        os.stat(folder)
    except PermissionError:
        return "its folder cannot be reached (permission denied on the way to it)"
    except OSError:
        return "its folder does not exist"
    if not os.path.isdir(folder):
        return "its folder does not exist"
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None  # a device or FIFO (/dev/stdout) is written in place, not made in the folder
    except OSError:
        pass  # a new file: made in the folder
    # the file is made in its folder and renamed over the name (outfile.replacing): the folder must take it
    if os.statvfs(folder).f_flag & os.ST_RDONLY:
        return "its folder is on a read-only file system"
    if not os.access(folder, os.W_OK | os.X_OK, effective_ids=os.access in os.supports_effective_ids):
        return "its folder may not be written by this user (permission denied)"
    return None


def at_least(n: int, why: str = ""):
    """An option callback: a whole number of at least n, else a usage error (exit 2) saying why."""

    def check(ctx, param, value):
        if value is not None and value < n:
            raise click.BadParameter(f"must be at least {n}{': ' + why if why else ''} (got {value})")
        return value

    return check


def quiet_on_closed_pipe():
    """Our reader went away (`shmkit ... | head -1`): stop quietly with status 0, as well-behaved tools
    do. stdout is pointed at /dev/null first, so that Python's flush at exit cannot fail again
    (the Python docs, "Note on SIGPIPE")."""
    import os
    import sys

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(0)


STANDARD_OUTPUT = "standard output"  # the name our stdout's write errors carry (cli.main tags them)


def stdout_failed(err: OSError):
    """A write to our stdout failed (a full disk, /dev/full, an I/O error): one line naming it, status 1.
    stdout is pointed at /dev/null first, so that Python's flush at exit cannot fail again and print
    "Exception ignored" or end with status 120."""
    import os
    import sys

    click.echo(f"Error: cannot write {STANDARD_OUTPUT}: {err.strerror or err}", err=True)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    sys.exit(1)


def library_errors(fn):
    """Turn the library's errors into one line and exit status 1, at the CLI edge only."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ShmkitError as err:
            raise click.ClickException(str(err)) from err
        except BrokenPipeError:
            quiet_on_closed_pipe()  # here, before click's own EPIPE handling (exit 1) sees it
        except OSError as err:
            if err.filename == STANDARD_OUTPUT:
                stdout_failed(err)
            raise click.ClickException(f"{err.strerror or err}" + (f": {err.filename}" if err.filename else "")
                                       + _which_limit(err)) from err

    return wrapper


def _which_limit(err: OSError) -> str:
    """The limit behind EMFILE, which names none: peers and scans hold descriptors."""
    import errno
    import resource

    if err.errno != errno.EMFILE:
        return ""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return f" (this process may hold {soft}: RLIMIT_NOFILE, ulimit -n)"


def console(stderr=False):
    """Where tables and prose go: plain text laid out at the width (report/view.py)."""
    from toolkit.report.view import Console

    return Console(stderr=stderr)


class ProgressReporter:
    """Progress of a long run on stderr: a rich bar with an estimate where stderr is a terminal, plain
    lines (at most one a second, with the estimate) otherwise; nothing with quiet. Call it as
    progress(what, done=None, total=None)."""

    PLAIN_EVERY_S = 1.0
    PLAIN_AFTER_S = 2.0  # a short run in a pipe or a cron job stays quiet

    def __init__(self, quiet: bool = False, bar_after_s: float = 0.0):
        """bar_after_s: on a terminal, no bar (and no import of rich) until the run has taken that long:
        a command that is usually quick (footprint) pays nothing for the bar it rarely needs."""
        import sys
        import time

        self.quiet = quiet
        self.clock = time.monotonic
        self.started = self.clock()
        self.last_plain = 0.0
        self.last_what = None
        self.bar = None
        self.bar_after_s = bar_after_s
        self.entered = False
        self.tty = not quiet and sys.stderr.isatty()
        if self.tty and not bar_after_s:
            self._make_bar()

    def _make_bar(self):
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                            TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True), transient=True)
        self.task = self.bar.add_task("starting", total=None)
        if self.entered:  # made late, inside the with: shown from now on
            self.bar.__enter__()

    def __enter__(self):
        self.entered = True
        if self.bar is not None:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def __call__(self, what, done=None, total=None):
        if self.quiet:
            return
        if self.tty and self.bar is None:
            if self.clock() - self.started < self.bar_after_s:
                return
            self._make_bar()
        if self.bar is not None:
            if what != self.last_what:  # a new phase: its own count and estimate
                self.bar.reset(self.task, total=total, description=what)
            self.bar.update(self.task, completed=done or 0, total=total, description=what)
            self.last_what = what
            return
        now = self.clock()
        if what != self.last_what:
            self.phase_started = now
            self.last_plain = 0.0
        self.last_what = what
        if now - self.started < self.PLAIN_AFTER_S or now - self.last_plain < self.PLAIN_EVERY_S:
            return
        self.last_plain = now
        line = f"shmkit: {what}"
        if done is not None and total:
            line += f" {done}/{total}"
            spent = now - self.phase_started
            if 0 < done < total and spent > 1:
                line += f", about {spent * (total - done) / done:.0f} s left"
        click.echo(line, err=True)


def command_line() -> str:
    """The command as the user typed it, for a hand-out's record of what produced it: an argument with a
    byte that is not UTF-8 or a control character in bash's $'...' form, which shows it and runs again."""
    import sys

    return "shmkit " + " ".join(_shell_word(a) for a in sys.argv[1:])


def _shell_word(arg: str) -> str:
    import shlex

    raw = arg.encode("utf-8", "surrogateescape")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and text.isprintable():
        return shlex.quote(text)
    out = []
    for ch in raw.decode("utf-8", "surrogateescape"):
        if "\udc80" <= ch <= "\udcff":
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        elif ch in "\\'":
            out.append("\\" + ch)
        elif not ch.isprintable():
            out.append("".join(f"\\x{b:02x}" for b in ch.encode("utf-8")))
        else:
            out.append(ch)
    return "$'" + "".join(out) + "'"


def write_atomically(path: str, data, mode: int = 0o644) -> None:
    """Write a whole report (text, bytes, or a function given the binary file) to the file the user
    named, through outfile.replacing; errors name that file."""
    from toolkit.outfile import replacing

    try:
        with replacing(path, mode) as f:
            if callable(data):
                data(f)
            else:
                # a name's stray byte is written as it was rather than lost with the run to a traceback
                f.write(data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data)
    except OSError as err:
        cannot_write(path, err)




def cannot_write(path: str, err: OSError):
    """The one error for a file that could not be written, naming it; where the file is our stdout and
    its reader went away (`shmkit snapshot - | head -c 100`), the quiet end of any closed pipe."""
    from toolkit.outfile import is_stdout  # outfile imports secrets (3 ms): only where a file is written

    if isinstance(err, BrokenPipeError) and (path == "-" or is_stdout(path)):
        quiet_on_closed_pipe()
    if path == "-" or err.filename == STANDARD_OUTPUT:
        stdout_failed(err)
    raise click.ClickException(f"cannot write {path}: {err.strerror or err}") from err


def _html_path(ctx, param, value):
    """--html FILE: Jinja2 is checked before anything is measured, as the file's folder is."""
    if value is not None:
        try:
            import jinja2  # noqa: F401
        except ImportError:
            raise click.BadParameter("needs Jinja2: pip install 'shmkit[html]'") from None
    return value


HTML = click.option("--html", "html_path", type=OutputFile(), callback=_html_path, default=None,
                    metavar="FILE", help="Also write a self-contained HTML page with drawings of this run "
                                         "(needs Jinja2).")

