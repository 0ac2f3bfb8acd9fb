import click

from toolkit.cli.common import (
    HTML,
    SIZE,
    PathName,
    ProgressReporter,
    at_least,
    command_line,
    console,
    library_errors,
    write_atomically,
)
from toolkit.report.view import json_text


@click.command()
@click.option("--size", type=SIZE, default="64M", show_default=True, help="Size of the System V and POSIX regions (K, M, G, T or bytes).")
@click.option("--peers", type=int, callback=at_least(2, "one peer writes, another reads"), default=4, show_default=True, help="Number of peer processes (at least 2).")
@click.option("--library", type=PathName(), metavar="PATH", default=None, help="Shared library for the implicit columns (default: this process's libc).")
@click.option("--repeat", type=int, callback=at_least(1), default=5, show_default=True, help="Repetitions of each setup phase (median reported).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the table.")
@HTML
@library_errors
def compare(size, peers, library, repeat, as_json, html_path):
    """System V, POSIX and a shared library side by side: visibility, setup cost, footprint."""
    from toolkit.measure.compare import run_compare
    from toolkit.report import compare as report

    with ProgressReporter() as progress:
        result = run_compare(size, peers, library, repeat, progress=progress)
    if as_json:
        click.echo(json_text(report.to_json(result)))
    else:
        report.render(result, console())
    if html_path:
        from toolkit.report import html

        write_atomically(html_path, html.compare_page(result, command_line()))
