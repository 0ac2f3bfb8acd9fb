import io
import sys

import click

from toolkit.cli.common import (
    HTML,
    OutputFile,
    PathName,
    at_least,
    command_line,
    library_errors,
    write_atomically,
)
from toolkit.report.view import json_text


def _story_width():
    """The width to fold a story at: a terminal's, or the one COLUMNS names (a user who sets it in a pipe
    asks for that width, as the tables take it); else None, a line per claim and per evidence, for grep."""
    import os

    from toolkit.report.view import terminal_width

    env = os.environ.get("COLUMNS", "")
    return terminal_width() if sys.stdout.isatty() or (env.isdigit() and int(env) > 0) else None


NAMES = ("lifetime", "permissions", "namespaces", "protection", "globals", "pic")


@click.command()
@click.argument("name", type=click.Choice(NAMES))
@click.option("--library", type=PathName(), default=None, metavar="PATH", help="Library for protection, globals and pic (default: libc).")
@click.option("--json", "as_json", is_flag=True, help="Print the steps, evidence and verdict as JSON.")
@library_errors
def demo(name, library, as_json):
    """Run a paired demo: lifetime, permissions, namespaces, protection, globals or pic."""
    from toolkit.measure.stories import STORIES
    from toolkit.report import story as report

    takes_library = ("protection", "globals", "pic")
    if library is not None and name not in takes_library:
        raise click.UsageError(f"--library applies to {', '.join(takes_library)}, not to {name}")
    fn = STORIES[name]
    story = fn(library) if name in takes_library else fn()
    if as_json:
        click.echo(json_text(report.to_json(story)))
    else:
        report.render_text(story, sys.stdout, _story_width())


@click.command()
@click.option("--library", type=PathName(), default=None, metavar="PATH", help="The library to explain (default: libc).")
@click.option("--peers", type=int, callback=at_least(2, "one writes, another reads"), default=4, show_default=True, help="Processes that load the library (at least 2).")
@click.option("--json", "as_json", is_flag=True, help="Print the steps, evidence and verdict as JSON.")
@click.option("--markdown", "markdown", type=OutputFile(), default=None, help="Also write a hand-out with this run's numbers.")
@HTML
@library_errors
def explain(library, peers, as_json, markdown, html_path):
    """The classic argument for shared libraries, each claim proved by a measurement on this machine."""
    from toolkit.measure.explain import explain as run
    from toolkit.report import story as report

    story = run(library, peers)
    # the results first: a file that cannot be written must not lose the run
    if as_json:
        click.echo(json_text(report.to_json(story)))
    else:
        report.render_text(story, sys.stdout, _story_width())
    if markdown:
        text = io.StringIO()
        report.render_markdown(story, text)
        write_atomically(markdown, text.getvalue())
    if html_path:
        from toolkit.report import html

        write_atomically(html_path, html.story_page(story, command_line()))
