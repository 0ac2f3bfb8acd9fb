import json

import click

from toolkit.cli.common import ProgressReporter, console, library_errors


def _sizes(ctx, param, value):
    from toolkit.errors import ShmkitError
    from toolkit.units import parse_size

    if value is None:
        return None
    try:
        return [parse_size(v) for v in value.split(",") if v.strip()]
    except ShmkitError as err:
        raise click.BadParameter(str(err)) from err


@click.command()
@click.option("--sizes", callback=_sizes, default="4K,64K,1M,16M,256M", show_default=True, help="Comma-separated sizes (K, M, G or bytes).")
@click.option("--mechanisms", "mechs", default="sysv,posix,memfd,anon,dso", show_default=True, help="Comma-separated: sysv, posix, memfd, anon, dso.")
@click.option("--repeat", type=int, default=None, help="Force N measured runs per size (default: calibrated, more for small sizes).")
@click.option("--pin", type=int, default=None, metavar="CPU", help="Run on this CPU only (peers too).")
@click.option("--hugepages", is_flag=True, help="Use huge pages (SHM_HUGETLB, MFD_HUGETLB, MAP_HUGETLB).")
@click.option("--library", default=None, metavar="PATH", help="Library for the dso rows (default: one a fresh Python has not loaded).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the table.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, writable=True), default=None, help="Also write every row to this CSV file.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, writable=True), default=None, help="Also plot time against size to this PNG (needs matplotlib).")
@library_errors
def bench(sizes, mechs, repeat, pin, hugepages, library, as_json, csv_path, plot_path):
    """Setup cost of every mechanism across sizes: create, attach, first touch, detach, destroy."""
    from toolkit.measure.bench import run_bench
    from toolkit.report import bench as report

    if plot_path:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise click.ClickException("--plot needs matplotlib: pip install 'shmkit[plot]'") from None
    names = [m.strip() for m in mechs.split(",") if m.strip()]
    with ProgressReporter() as progress:
        result = run_bench(sizes, names, repeat, pin, hugepages, library, progress)
    if csv_path:
        report.write_csv(result, csv_path)
    if plot_path:
        report.plot(result, plot_path)
    if as_json:
        click.echo(json.dumps(report.to_json(result), indent=2))
    else:
        report.render(result, console())
