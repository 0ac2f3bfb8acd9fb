"""The --html hand-outs, rendered in a real headless browser: Debian's chromium driven by playwright (the
system browser, never a downloaded one). No console errors, the drawings present with titles for screen
readers, and the numbers of --json of the same run in the page's text."""
import json
import os
import shutil
import time

import pytest
from conftest import run_as_nobody, run_shmkit

from toolkit.units import human_bytes

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (.ci/run installs Debian's package)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def open_page(browser, path, width=1280, screenshot=None):
    """Load a page from file://; returns (page text, console errors, seconds to load, page)."""
    page = browser.new_page(viewport={"width": width, "height": 900})
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: errors.append(f"network request: {r.url}") if not r.url.startswith("file:") else None)
    t0 = time.monotonic()
    page.goto("file://" + os.path.abspath(path))
    page.wait_for_load_state("load")
    seconds = time.monotonic() - t0
    if screenshot:
        page.screenshot(path=screenshot, full_page=True)
    return page.inner_text("body"), errors, seconds, page


def test_compare_page(browser, tmp_path):
    html = tmp_path / "compare.html"
    r = run_shmkit("compare", "--size", "4M", "--peers", "3", "--repeat", "1", "--json", "--html", str(html))
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)  # the same run's numbers
    assert html.stat().st_size < 1 << 20
    body, errors, seconds, page = open_page(browser, html, screenshot=str(tmp_path / "compare-1280.png"))
    assert errors == [] and seconds < 2
    titles = page.locator("svg > title").all_text_contents()
    for needle in ("PT_LOADs in the file", "address space", "library text: physical pages per peer",
                   "System V: physical pages per peer", "POSIX: physical pages per peer", "log scale",
                   f"{d['peers']} peers"):
        assert any(needle in t for t in titles), (needle, titles)
    assert page.locator("svg > desc").count() == page.locator("svg").count()  # every drawing described
    text_fp = d["mechanisms"]["dso_text"]["footprint"]
    assert f"{d['peers']} peers" in body
    assert f"{d['text_sharing']['pages']} pages" in body  # the PFN count of the text, as the JSON has it
    assert human_bytes(text_fp["physical_bytes"]) in body and human_bytes(text_fp["rss_sum_bytes"]) in body
    for m in ("sysv", "posix"):
        assert human_bytes(d["mechanisms"][m]["footprint"]["physical_bytes"]) in page.inner_html("svg.chart >> nth=1")
    grid = d["mechanisms"]["dso_text"]["footprint"]["page_grid"]
    cells = page.locator("svg.grid >> nth=0").locator("rect").count()
    assert cells == sum(len(row["pfns"]) for row in grid["rows"])  # one cell per sampled page, as in the JSON
    open_page(browser, html, width=390, screenshot=str(tmp_path / "compare-390.png"))


def test_a_tiny_all_relro_library_is_drawn_whole_and_named_right(browser, tmp_path):
    """A library of 13 KiB whose code is 11 bytes and whose RW segment is all RELRO: its code bar had no
    width, its data mapping was labelled rw-p, the grid of its one text page cut its own title, the summary
    said "1 pages", and its data (which has no mapping) was drawn as "PFNs need root" although we are root."""
    import subprocess

    src = tmp_path / "t.c"
    src.write_text("int shmkit_f(void) { return 42; }\n")
    lib = tmp_path / "libtiny.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-nostdlib", "-o", str(lib), str(src)], check=True)
    html = tmp_path / "tiny.html"
    r = run_shmkit("compare", "--size", "64K", "--peers", "2", "--library", str(lib), "--json", "--html", str(html))
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    body, errors, _seconds, page = open_page(browser, html)
    assert errors == []
    pages = d["text_sharing"]["pages"]
    assert (f"code is {pages} page;" if pages == 1 else f"code is {pages} pages;") in body
    elf = page.inner_html("svg.elf")
    assert "r--p (RELRO)" in elf and "rw-p data" not in elf
    widths = page.evaluate("() => [...document.querySelectorAll('svg.elf rect')].map(r => r.getBBox().width)")
    assert min(widths) >= 3, widths  # every LOAD seen, however small
    clipped = page.evaluate("""() => [...document.querySelectorAll('svg')].flatMap(svg => {
        const w = svg.viewBox.baseVal.width;
        return [...svg.querySelectorAll('text')].filter(t => t.getBBox().x + t.getBBox().width > w + 1)
            .map(t => t.textContent); })""")
    assert clipped == [], clipped
    if os.geteuid() == 0:
        assert "PFNs need root" not in page.content()


def test_explain_and_bench_pages(browser, tmp_path):
    html = tmp_path / "explain.html"
    r = run_shmkit("explain", "--peers", "2", "--json", "--html", str(html))
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    body, errors, seconds, page = open_page(browser, html)
    assert errors == [] and seconds < 2 and html.stat().st_size < 1 << 20
    for step in d["steps"]:
        assert step["claim"] in body
    assert d["verdict"] in body and "Linux" in body and "shmkit explain" in body
    assert page.locator("svg").count() >= 6
    html = tmp_path / "bench.html"
    r = run_shmkit("bench", "--sizes", "4K,64K", "--mechanisms", "sysv,posix", "--repeat", "2", "--json",
                   "--html", str(html))
    assert r.returncode == 0, r.stderr
    body, errors, seconds, page = open_page(browser, html)
    assert errors == [] and seconds < 2
    assert "4K" in page.inner_html("svg.loglog >> nth=0") and "64K" in page.inner_html("svg.loglog >> nth=0")
    assert page.locator("svg.loglog").count() >= 5
    # no label of a plot lies on another (the axis label sat on the legend, between two mechanisms' names)
    overlaps = page.evaluate("""() => [...document.querySelectorAll('svg.loglog')].flatMap(svg => {
        const boxes = [...svg.querySelectorAll('text')].map(t => [t.textContent, t.getBoundingClientRect()]);
        return boxes.flatMap(([a, p], i) => boxes.slice(i + 1).filter(([b, q]) =>
            p.left < q.right && q.left < p.right && p.top < q.bottom && q.top < p.bottom).map(([b]) => a + ' / ' + b));
    })""")
    assert overlaps == [], overlaps


@pytest.fixture
def open_folder():
    """A folder uid 65534 can write (pytest's own tmp_path is root's, 0700)."""
    import pathlib
    import tempfile

    folder = tempfile.mkdtemp(prefix="shmkit-html-")
    os.chmod(folder, 0o777)
    yield pathlib.Path(folder)
    shutil.rmtree(folder)


def test_as_nobody_the_page_says_what_needs_root(browser, nobody_env, open_folder):
    folder = open_folder
    r = run_as_nobody(nobody_env, "compare", "--size", "4M", "--peers", "2", "--repeat", "1", "--json",
                      "--html", str(folder / "c.html"))
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["mechanisms"]["dso_text"]["footprint"]["page_grid"] is None
    body, errors, _s, page = open_page(browser, folder / "c.html")
    assert errors == [] and "needs root" in body.replace("need root", "needs root")
    assert "PFN 0x" not in page.inner_html("#pages")  # no invented identity: Shared/Private from smaps instead
    assert "Shared/Private from smaps" in page.inner_html("#pages")


def test_html_option_is_checked_before_measuring(tmp_path):
    r = run_shmkit("compare", "--html", str(tmp_path / "no" / "such" / "x.html"))
    assert r.returncode == 2 and "folder does not exist" in r.stderr
