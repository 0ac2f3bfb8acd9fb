"""The shmkit command: parse, call the library, render, exit codes. Commands import lazily."""
from __future__ import annotations

import importlib
import io
import signal
import sys

import click

from toolkit.cli.common import STANDARD_OUTPUT, quiet_on_closed_pipe, stdout_failed

# command name -> module:function; a command imports only its own module
COMMANDS = {
    "compare": "toolkit.cli.compare:compare",
    "elf": "toolkit.cli.elf:elf",
    "bench": "toolkit.cli.bench:bench",
    "segments": "toolkit.cli.system:segments",
    "footprint": "toolkit.cli.system:footprint",
    "export": "toolkit.cli.system:export",
    "snapshot": "toolkit.cli.system:snapshot",
    "demo": "toolkit.cli.story:demo",
    "explain": "toolkit.cli.story:explain",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)


def _terminate(signum, frame):
    # turn SIGTERM/SIGHUP into an exception so every `finally` removes what we made; but an exception
    # raised inside a finaliser (a Popen's __del__ run by the collector) is only printed as "Exception
    # ignored" with a traceback and lost, so there the exit waits until the finaliser has returned
    f, depth = frame, 0
    while f is not None and depth < 8:
        if f.f_code.co_name == "__del__":
            signal.signal(signal.SIGALRM, lambda _sig, where: _terminate(signum, where))
            signal.setitimer(signal.ITIMER_REAL, 0.02)
            return
        f, depth = f.f_back, depth + 1
    raise SystemExit(128 + signum)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="shmkit")
def cli():
    """See and measure shared memory: System V, POSIX, and a shared library's pages."""


# what the tables and prose use beyond ASCII, one column each, for a stream that cannot encode them
_PLAIN = {"\u2500": "-", "\u2014": "-", "\u2013": "-", "\u2022": "*", "\u00b5": "u"}


def _plain_char(ch):
    if "\udc80" <= ch <= "\udcff":  # a byte of a name that is not UTF-8 (surrogateescape): shown as \xff
        return f"\\x{ord(ch) - 0xDC00:02x}"
    return _PLAIN.get(ch) or ch.encode("ascii", "backslashreplace").decode()


def _plain(err):
    return "".join(_plain_char(ch) for ch in err.object[err.start:err.end]), err.end


def _encodable_output():
    """A locale that is not UTF-8 (latin-1, or PYTHONIOENCODING=ascii) made the first rule or 'µs' a
    UnicodeEncodeError; there, those become their ASCII look-alikes and anything else a \\u escape. On any
    stream, a stray byte of a name that escaped escaping is written as \\xff text: never raw to the
    terminal, never a UnicodeEncodeError (which a UTF-8 locale's strict stdout would raise)."""
    import codecs

    codecs.register_error("shmkit-plain", _plain)
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="shmkit-plain")


class _ClosedStream:
    """What stands for a standard stream that was closed when we started (`shmkit ... >&-`), where Python
    leaves None and the first write was an AttributeError traceback: the write fails as writing to a
    closed descriptor does, and the CLI edge says so in one line."""

    def __init__(self, name):
        self.name = name

    def write(self, text):
        import errno

        raise OSError(errno.EBADF, f"{self.name} is closed")

    def flush(self):
        pass

    def isatty(self):
        return False

    def fileno(self):
        import io

        raise io.UnsupportedOperation(f"{self.name} is closed")


class _StdoutFile(io.FileIO):
    """Descriptor 1, whose write errors name it: ENOSPC from a full disk or /dev/full names no file, and
    the edge must tell our stdout failing from any other error (and then stop Python's exit flush from
    failing again)."""

    def write(self, data):
        try:
            return super().write(data)
        except BrokenPipeError:
            raise  # a closed pipe has its own quiet end
        except OSError as err:
            err.filename = STANDARD_OUTPUT
            raise


def _named_stdout():
    """sys.stdout rebuilt on _StdoutFile with the same encoding, errors, buffering and line buffering."""
    old = sys.stdout
    try:
        if not isinstance(old, io.TextIOWrapper) or old.fileno() != 1:
            return  # closed, or replaced by whoever called us (a test's capture)
    except (OSError, ValueError):
        return
    raw = _StdoutFile(1, "w", closefd=False)
    unbuffered = isinstance(old.buffer, io.FileIO)  # python -u, PYTHONUNBUFFERED
    sys.stdout = io.TextIOWrapper(raw if unbuffered else io.BufferedWriter(raw), encoding=old.encoding,
                                  errors=old.errors, line_buffering=old.line_buffering,
                                  write_through=old.write_through)


def _closed_streams():
    import os

    if sys.stderr is None:  # nowhere to say anything: what would go there is dropped
        sys.stderr = open(os.devnull, "w")
    if sys.stdout is None:
        sys.stdout = _ClosedStream("standard output")


def main(argv=None):
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    _closed_streams()
    _named_stdout()
    _encodable_output()
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        if not args:  # a newcomer's first command: the normal help, not an error
            with click.Context(cli, info_name="shmkit") as ctx:
                click.echo(cli.get_help(ctx))
            sys.stdout.flush()
            sys.exit(0)
        code = cli.main(args=args, prog_name="shmkit", standalone_mode=False)
        sys.stdout.flush()
    except BrokenPipeError:
        quiet_on_closed_pipe()
    except SystemExit as err:
        if isinstance(err.__context__, BrokenPipeError):  # click turns EPIPE into exit 1
            quiet_on_closed_pipe()
        raise
    except click.UsageError as err:
        # one line, as for every other bad input (click would add the usage and a hint)
        from toolkit.report.view import escape  # what the user typed can hold any byte

        where = f"{err.ctx.command_path}: " if err.ctx is not None else ""
        click.echo(f"Error: {where}" + escape(" ".join(err.format_message().split())), err=True)
        sys.exit(err.exit_code)
    except click.ClickException as err:
        from toolkit.report.view import escape  # file and object names can hold any byte

        click.echo(f"Error: {escape(err.format_message())}", err=True)
        sys.exit(err.exit_code)
    except OSError as err:  # writing what is outside a command (the help) to a closed or full stream
        if err.filename == STANDARD_OUTPUT:
            stdout_failed(err)
        click.echo(f"Error: {err.strerror or err}", err=True)
        sys.exit(1)
    except (KeyboardInterrupt, click.Abort):
        click.echo("shmkit: interrupted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
