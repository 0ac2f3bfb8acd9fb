"""Stories (demos and explain) as text, JSON or a Markdown hand-out."""
from __future__ import annotations

import platform

from toolkit.records import to_dict

MARK = {True: "shown", False: "NOT shown", None: "cannot be shown here"}


def to_json(story) -> dict:
    d = to_dict(story._replace(comparison=None))
    if story.comparison is not None:  # the compare run the steps cite, in compare's own JSON shape
        from toolkit.report.compare import to_json as compare_json

        d["comparison"] = compare_json(story.comparison)
    d["machine"] = {"kernel": platform.release(), "machine": platform.machine()}
    return d


def render_text(story, out, width=None) -> None:
    """The story as text. On a terminal (or with a width: the CLI gives COLUMNS's) long lines fold at spaces
    under their own indent; in a pipe each claim and each piece of evidence stays one line, for grep."""
    from toolkit.report.view import terminal_width, wrap

    if width is None and hasattr(out, "isatty") and out.isatty():
        width = terminal_width(out)

    def w(head, body, indent):
        if width is None:
            out.write(head + body + "\n")
            return
        lines = wrap(body, max(20, width - max(len(head), len(indent))))
        out.write("\n".join((head if n == 0 else indent) + line for n, line in enumerate(lines)) + "\n")

    out.write(f"{story.title}\n{'=' * min(len(story.title), width or len(story.title))}\n")
    for i, s in enumerate(story.steps, 1):
        out.write("\n")
        w(f"{i}. ", f"{s.claim}  [{MARK[s.holds]}]", " " * len(f"{i}. "))
        for e in s.evidence:
            w("     ", e, "       ")
        if s.why_not:
            w("     ", f"({s.why_not})", "      ")
    out.write("\n")
    w("Verdict: ", story.verdict, "  ")
    if story.where:
        w("", f"(objects made {story.where})", " ")


def render_markdown(story, out) -> None:
    w = out.write
    w(f"# {story.title}\n\n")
    w(f"Measured on Linux {platform.release()} ({platform.machine()}) by `shmkit`. Every number below comes "
      "from this run.\n\n")
    for i, s in enumerate(story.steps, 1):
        w(f"## {i}. {s.claim}\n\n*{MARK[s.holds]}*\n\n")
        for e in s.evidence:
            w(f"- `{e}`\n" if len(e) < 60 else f"- {e}\n")
        if s.why_not:
            w(f"\n> {s.why_not}\n")
        w("\n")
    w(f"**Verdict:** {story.verdict}\n")
    if story.where:
        w(f"\n*Objects made {story.where}.*\n")
