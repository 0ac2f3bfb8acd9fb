import json
import sys

import click

from toolkit.cli.common import library_errors

NAMES = ("lifetime", "permissions", "namespaces", "protection", "globals", "pic")


@click.command()
@click.argument("name", type=click.Choice(NAMES))
@click.option("--library", default=None, metavar="PATH", help="Library for protection, globals and pic (default: libc).")
@click.option("--json", "as_json", is_flag=True)
@library_errors
def demo(name, library, as_json):
    """Run a paired demo: lifetime, permissions, namespaces, protection, globals or pic."""
    from toolkit.measure.stories import STORIES
    from toolkit.report import story as report

    fn = STORIES[name]
    story = fn(library) if name in ("protection", "globals", "pic") else fn()
    if as_json:
        click.echo(json.dumps(report.to_json(story), indent=2))
    else:
        report.render_text(story, sys.stdout)


@click.command()
@click.option("--library", default=None, metavar="PATH", help="The library to explain (default: libc).")
@click.option("--peers", type=int, default=4, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.option("--markdown", "markdown", type=click.Path(dir_okay=False), default=None, help="Also write a hand-out with this run's numbers.")
@library_errors
def explain(library, peers, as_json, markdown):
    """The classic argument for shared libraries, each claim proved by a measurement on this machine."""
    from toolkit.measure.explain import explain as run
    from toolkit.report import story as report

    if peers < 2:
        raise click.BadParameter("needs at least 2 peers", param_hint="--peers")
    story = run(library, peers)
    if markdown:
        with open(markdown, "w") as f:
            report.render_markdown(story, f)
    if as_json:
        click.echo(json.dumps(report.to_json(story), indent=2))
    else:
        report.render_text(story, sys.stdout)
