import os

import click

from toolkit.cli.common import (
    HTML,
    OutputFile,
    PathName,
    ProgressReporter,
    at_least,
    command_line,
    console,
    library_errors,
    write_atomically,
)
from toolkit.report.view import json_text


def _sizes(ctx, param, value):
    from toolkit.errors import ShmkitError
    from toolkit.units import parse_region_size

    if value is None:
        return None
    try:
        sizes = [parse_region_size(v) for v in value.split(",") if v.strip()]
    except ShmkitError as err:
        raise click.BadParameter(str(err)) from err
    if not sizes:
        raise click.BadParameter("give at least one size, for example 4K,1M")
    if min(sizes) <= 0:  # a usage error (2) as compare's --size 0 is, not a failed run (1)
        raise click.BadParameter(f"sizes must be positive (got {min(sizes)})")
    return sizes


def _mechanisms(ctx, param, value):
    from toolkit.measure.bench import ALL

    names = [m.strip() for m in value.split(",") if m.strip()]
    unknown = [m for m in names if m not in ALL]
    if not names or unknown:
        raise click.BadParameter((f"unknown mechanism(s) {', '.join(unknown)}; " if unknown else "none given; ")
                                 + f"choose from {', '.join(ALL)}")
    return names


def _cpu(ctx, param, value):
    if value is None:
        return None
    allowed = sorted(os.sched_getaffinity(0))
    if value not in allowed:
        raise click.BadParameter(f"CPU {value} is not one this process may run on ({', '.join(map(str, allowed))})")
    return value


PLOT_FORMATS = ("png", "svg", "pdf", "jpg", "jpeg", "eps", "ps", "tif", "tiff", "webp")


def _plot_path(ctx, param, value):
    if value is None:
        return None
    ext = os.path.splitext(value)[1].lstrip(".").lower()
    if ext not in PLOT_FORMATS:
        raise click.BadParameter(f"{value!r}: give a file ending in .{', .'.join(PLOT_FORMATS[:4])} (matplotlib's formats)")
    return value


@click.command()
@click.option("--sizes", callback=_sizes, default="4K,64K,1M,16M,256M", show_default=True, help="Comma-separated sizes (K, M, G, T or bytes).")
@click.option("--mechanisms", "mechs", callback=_mechanisms, default="sysv,posix,memfd,anon,dso", show_default=True, help="Comma-separated: sysv, posix, memfd, anon, dso.")
@click.option("--repeat", type=int, callback=at_least(1), default=None, help="Force N measured runs per size (default: calibrated, more for small sizes).")
@click.option("--pin", type=int, callback=_cpu, default=None, metavar="CPU", help="Run on this CPU only (peers too).")
@click.option("--hugepages", is_flag=True, help="Use huge pages (SHM_HUGETLB, MFD_HUGETLB, MAP_HUGETLB).")
@click.option("--library", type=PathName(), default=None, metavar="PATH", help="Library for the dso rows (default: one a fresh Python has not loaded).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the table.")
@click.option("--csv", "csv_path", type=OutputFile(), default=None, help="Also write every row to this CSV file.")
@click.option("--plot", "plot_path", callback=_plot_path, type=OutputFile(), default=None, help="Also plot time against size to this file: .png, .svg, .pdf (needs matplotlib).")
@HTML
@library_errors
def bench(sizes, mechs, repeat, pin, hugepages, library, as_json, csv_path, plot_path, html_path):
    """Setup cost of every mechanism across sizes: create, attach, first touch, detach, destroy."""
    from toolkit.measure.bench import run_bench
    from toolkit.report import bench as report

    if library is not None and "dso" not in mechs:
        raise click.UsageError("--library applies to the dso rows: add dso to --mechanisms")
    if plot_path:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise click.ClickException("--plot needs matplotlib: pip install 'shmkit[plot]'") from None
    with ProgressReporter() as progress:
        result = run_bench(sizes, mechs, repeat, pin, hugepages, library, progress)
    # the results first: a file that cannot be written must not lose a measurement that took minutes
    if as_json:
        click.echo(json_text(report.to_json(result)))
    else:
        report.render(result, console())
    if csv_path:
        write_atomically(csv_path, report.csv_text(result))
    if html_path:
        from toolkit.report import html

        write_atomically(html_path, html.bench_page(result, command_line()))
    if plot_path:
        try:
            write_atomically(plot_path, lambda f: report.plot(result, f, os.path.splitext(plot_path)[1][1:].lower()))
        except ValueError as err:
            raise click.ClickException(f"could not write the plot {plot_path}: {err}") from err
