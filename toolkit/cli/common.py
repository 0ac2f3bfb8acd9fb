"""Shared pieces of the commands: size parameter, error translation, console."""
from __future__ import annotations

import functools

import click

from toolkit.errors import ShmkitError


class SizeType(click.ParamType):
    name = "SIZE"

    def convert(self, value, param, ctx):
        from toolkit.units import parse_size

        try:
            return parse_size(value)
        except ShmkitError as err:
            self.fail(str(err), param, ctx)


SIZE = SizeType()


def library_errors(fn):
    """Turn the library's errors into one line and exit status 1, at the CLI edge only."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ShmkitError as err:
            raise click.ClickException(str(err)) from err
        except OSError as err:
            raise click.ClickException(f"{err.strerror or err}" + (f": {err.filename}" if err.filename else "")) from err

    return wrapper


def console(stderr=False):
    from rich.console import Console

    return Console(stderr=stderr)
