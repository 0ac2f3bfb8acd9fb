"""`--html FILE`: one self-contained page (inline CSS and SVG, nothing from the network) built from the same
records as `--json`, so every number on the page is one the JSON has. Jinja2 renders the page (autoescaped);
the drawings are hand-written SVG (report/svg.py). A light theme that prints well and fits a phone."""
from __future__ import annotations

import datetime
import platform

from toolkit.report import svg
from toolkit.report.view import escape
from toolkit.units import counted, human_bytes, human_seconds, region_size

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
:root { color-scheme: light; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222; background: #fff;
       max-width: 960px; margin: 0 auto; padding: 16px; }
h1 { font-size: 1.5em; margin: .2em 0; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
.meta { color: #555; font-size: .9em; } .meta code { word-break: break-all; }
figure { margin: 1em 0; } figcaption { color: #555; font-size: .9em; margin-top: .3em; }
svg { display: block; max-width: 100%; height: auto; background: #fcfcfc; border: 1px solid #eee; }
figure { overflow-x: auto; } figure.small { display: inline-block; margin: .3em .3em .3em 0; vertical-align: top; }
svg text { font-family: system-ui, sans-serif; }
table { border-collapse: collapse; font-size: .9em; display: block; overflow-x: auto; }
td, th { border-bottom: 1px solid #eee; padding: 2px 8px; text-align: right; white-space: nowrap; }
td:first-child, th:first-child { text-align: left; }
.step { border-left: 4px solid #ccc; padding: .2em .8em; margin: 1em 0; }
.step.yes { border-color: #54a24b; } .step.no { border-color: #e45756; } .step.na { border-color: #bbb; }
.verdict { font-weight: bold; } .why { color: #8a5a00; }
ul.evidence { margin: .3em 0; padding-left: 1.2em; } ul.evidence li { word-break: break-word; }
.note { color: #8a5a00; }
@media print { body { max-width: none; } svg { border: none; } h2 { break-after: avoid; } figure { break-inside: avoid; } }
@media (max-width: 600px) { body { padding: 8px; font-size: 14px; }
  /* on a phone a drawing keeps a readable size and scrolls sideways instead of shrinking its text away */
  svg.elf, svg.aspace, svg.chart, svg.grid { max-width: none; width: 640px; } }
</style></head>
<body>
<h1>{{ title }}</h1>
<p class="meta">Measured on <b>{{ meta.host }}</b> ({{ meta.machine }}), Linux {{ meta.kernel }}, {{ meta.date }},
by <code>{{ meta.command }}</code>.{% if not meta.privileged %} <span class="note">Run without root: physical page
numbers (pagemap PFNs, kpagecount) are hidden, so the page identity below is not shown; what smaps can say is shown
instead.</span>{% endif %}</p>
{% for s in sections %}
<section id="{{ s.id }}"><h2>{{ s.title }}</h2>
{% if s.text %}<p>{{ s.text }}</p>{% endif %}
{% for step in s.steps %}
<div class="step {{ step.cls }}"><div><b>{{ loop.index }}. {{ step.claim }}</b> — <span class="verdict">{{ step.mark }}</span></div>
<ul class="evidence">{% for e in step.evidence %}<li>{{ e }}</li>{% endfor %}</ul>
{% if step.why %}<div class="why">{{ step.why }}</div>{% endif %}</div>
{% endfor %}
{% for f in s.figures %}<figure class="{{ f.cls or '' }}">{{ f.svg }}{% if f.caption %}<figcaption>{{ f.caption }}</figcaption>{% endif %}</figure>{% endfor %}
{% if s.table %}<table><tr>{% for h in s.table[0] %}<th>{{ h }}</th>{% endfor %}</tr>
{% for row in s.table[1:] %}<tr>{% for c in row %}<td>{{ c }}</td>{% endfor %}</tr>{% endfor %}</table>{% endif %}
{% if s.bullets %}<ul>{% for i in s.bullets %}<li>{{ i }}</li>{% endfor %}</ul>{% endif %}
</section>
{% endfor %}
</body></html>
"""


def _meta(command, kernel=None, privileged=True) -> dict:
    return {"host": platform.node(), "machine": platform.machine(), "kernel": kernel or platform.release(),
            "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"), "command": command,
            "privileged": privileged}


def _render(title, meta, sections) -> str:
    try:
        import jinja2
        from markupsafe import Markup
    except ImportError as err:
        from toolkit.errors import BadInput

        raise BadInput("--html needs Jinja2: pip install 'shmkit[html]'") from err
    env = jinja2.Environment(autoescape=True)
    for s in sections:
        s.setdefault("figures", [])
        s.setdefault("steps", [])
        for f in s["figures"]:
            f["svg"] = Markup(f["svg"])  # built from escaped text only (report/svg.py)
    return env.from_string(TEMPLATE).render(title=title, meta=meta, sections=sections)


# ------------------------------------------------------------------ compare


def compare_sections(c) -> list:
    by = {m.mechanism: m for m in c.mechanisms}
    secs = []
    text = by.get("dso_text")
    physical = text.footprint.physical_bytes if text else None
    t = c.text_sharing
    summary = [f"{c.peers} peers, each given a {region_size(c.size_bytes)} System V segment and POSIX object, and "
               f"{escape(c.library)}."]
    if t is not None:
        summary.append(f"The library's code is {counted(t.pages, 'page')}; " + (
            f"its physical pages: {human_bytes(physical)} for an Rss summed over the peers of "
            f"{human_bytes(text.footprint.rss_sum)}." if physical is not None else
            "its physical pages cannot be counted without root."))
    secs.append({"id": "summary", "title": "In short", "bullets": summary})
    if c.library_segments:
        secs.append({"id": "elf", "title": "The library file and its PT_LOADs", "figures": [{
            "svg": svg.elf_bar(escape(c.library), c.library_segments, c.page_size),
            "caption": "Each PT_LOAD is mapped at its page-aligned offset; code and read-only data stay the page "
                       "cache's pages, the RW segment is copied page by page on first write (RELRO is written during "
                       "relocation, then made read-only)."}]})
    secs.append({"id": "aspace", "title": "Where each peer maps them", "figures": [{
        "svg": svg.address_spaces(c),
        "caption": "Each peer loads the library at its own address (ASLR); the distance from its code to its data "
                   "is the same everywhere, which is why one copy of the code serves every address."}]})
    figs = []
    for key in ("dso_text", "dso_data", "sysv", "posix"):
        m = by.get(key)
        if m is None:
            continue
        g = m.footprint.page_grid
        if g is None and not any(p.rss for p in m.footprint.per_peer):
            # nothing mapped (a library whose RW segment is all RELRO has no data mapping): no figure, and
            # no "PFNs need root" said as root
            continue
        figs.append({"svg": svg.page_grid(m.title, g, c.page_size) if g is not None
                     else svg.shared_private(m.title, m.footprint), "caption": ""})
    secs.append({"id": "pages", "title": "The pages themselves", "figures": figs,
                 "text": ("One row per peer, one cell per page: the same colour in two rows is the same physical page "
                          "(PFN from /proc/PID/pagemap); darker cells are mapped by more processes (/proc/kpagecount)."
                          if c.privileged else "Physical page numbers need root: each peer's Shared and Private bytes "
                          "(smaps) are shown instead, and no page identity is drawn.")})
    cow = svg.cow(c.library_write)
    if cow:
        w = c.library_write
        secs.append({"id": "cow", "title": "Copy on write", "figures": [{"svg": cow, "caption": (
            f"Peer A set {w.symbol} from {w.value_before} to {w.value_written}; peer B still reads {w.value_seen_by_b}."
            if w.symbol else (w.note or ""))}]})
    rows = []
    for i, m in enumerate(c.mechanisms):
        if m.mechanism == "dso_data":
            continue
        for p in m.setup.phases:
            if p.median_s:
                rows.append((f"{m.title}: {p.name.replace('_', ' ')}", p.median_s, svg.MECH_COLOUR[i]))
    secs.append({"id": "setup", "title": "What setting each up costs", "figures": [{
        "svg": svg.bars_log(f"median of {max((p.repeat for m in c.mechanisms for p in m.setup.phases), default=0)} "
                            "runs, log scale", rows),
        "caption": "Creating and attaching cost microseconds whatever the size; the first touch pays a fault and a "
                   "zeroed page for every page."}]})
    groups = [(m.title, [("Rss sum", m.footprint.rss_sum), ("Pss sum", m.footprint.pss_sum),
                         ("physical", m.footprint.physical_bytes)]) for m in c.mechanisms]
    secs.append({"id": "footprint", "title": "What it really costs: Rss, Pss and physical pages", "figures": [{
        "svg": svg.bars(f"{c.peers} peers", groups),
        "caption": "Rss counts a shared page in every process that maps it; Pss divides it among them; physical "
                   "pages count it once."}]})
    from toolkit.report.compare import findings

    secs.append({"id": "findings", "title": "Findings", "bullets": findings(c)})
    return secs


def compare_page(c, command: str) -> str:
    return _render(f"shmkit compare: {region_size(c.size_bytes)} regions, {c.peers} peers",
                   _meta(command, c.kernel, c.privileged), compare_sections(c))


# ------------------------------------------------------------------ explain and the demos


def story_page(story, command: str) -> str:
    mark = {True: ("shown", "yes"), False: ("NOT shown", "no"), None: ("cannot be shown here", "na")}
    steps = [{"claim": s.claim, "evidence": list(s.evidence), "mark": mark[s.holds][0], "cls": mark[s.holds][1],
              "why": s.why_not} for s in story.steps]
    secs = [{"id": "steps", "title": "The argument, step by step", "steps": steps},
            {"id": "verdict", "title": "Verdict", "bullets": [story.verdict] + ([f"objects made {story.where}"]
                                                                          if story.where else [])}]
    privileged = True
    if story.comparison is not None:
        secs += compare_sections(story.comparison)
        privileged = story.comparison.privileged
    return _render(story.title, _meta(command, privileged=privileged), secs)


# ------------------------------------------------------------------ bench


def bench_page(result, command: str) -> str:
    from toolkit.report.bench import COLUMNS

    m = result.machine
    secs = []
    figs = []
    mechs = [x for x in ("sysv", "posix", "memfd", "anon") if any(r.mechanism == x for r in result.rows)]
    for phase in COLUMNS:
        series = [(mech, [(r.size_bytes, r.median_s) for r in result.rows
                          if r.mechanism == mech and r.phase == phase and r.median_s]) for mech in mechs]
        if any(s for _, s in series):
            figs.append({"svg": svg.loglog(phase.replace("_", " "), series), "caption": "", "cls": "small"})
    secs.append({"id": "phases", "title": "Time per phase against size", "figures": figs,
                 "text": "Medians of N runs per point, log scales; sizes in K/M/G bytes, times in µs and ms."})
    head = ["mechanism", "size", "phase", "median", "p10", "p90", "faults", "ns/page"]
    table = [head] + [[r.mechanism, region_size(r.size_bytes), r.phase.replace("_", " "), human_seconds(r.median_s),
                       human_seconds(r.p10_s), human_seconds(r.p90_s), "-" if r.minor_faults is None else r.minor_faults,
                       "-" if r.ns_per_page is None else f"{r.ns_per_page:.0f}"] for r in result.rows]
    secs.append({"id": "table", "title": "Every measurement", "table": table})
    secs.append({"id": "findings", "title": "Findings", "bullets": list(result.findings) + [f"note: {n}" for n in result.notes]})
    return _render(f"shmkit bench ({m['cpu']}, touch {m['touch_method']})", _meta(command, m["kernel"]), secs)
