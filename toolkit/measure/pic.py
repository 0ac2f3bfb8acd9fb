"""Position independence, shown: N peers load one library at N addresses, same distances inside."""
from __future__ import annotations

from toolkit import mechanisms
from toolkit.measure.peer import PeerGroup
from toolkit.records import PeerLayout, PicResult


def load_layout(library: str | None, n: int, env=None) -> PicResult:
    dso = mechanisms.get("dso")
    h = dso.new_handle(path=library)
    with PeerGroup(n, env) as group:
        replies = group.call_all("attach", region="lib", handle=h.to_json())
    layouts = []
    for r in replies:
        text = r["extra"]["text"][0]
        layouts.append(PeerLayout(r["pid"], text[0] - text[2], text[0], r["extra"]["data_start"]))
    return PicResult(h.path, tuple(layouts))
