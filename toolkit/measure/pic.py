"""Position independence, shown: N peers load one library at N addresses, same distances inside."""
from __future__ import annotations

from dataclasses import dataclass

from toolkit import mechanisms
from toolkit.measure.peer import PeerGroup


@dataclass(frozen=True)
class PeerLayout:
    pid: int
    base: int  # text start minus its file offset: where the object's first page sits
    text_start: int
    data_start: int

    @property
    def text_to_data(self) -> int:
        return self.data_start - self.text_start


@dataclass(frozen=True)
class PicResult:
    library: str
    peers: tuple  # of PeerLayout

    @property
    def distinct_bases(self) -> int:
        return len({p.base for p in self.peers})

    @property
    def same_distance(self) -> bool:
        return len({p.text_to_data for p in self.peers}) == 1


def load_layout(library: str | None, n: int, env=None) -> PicResult:
    dso = mechanisms.get("dso")
    h = dso.new_handle(path=library)
    with PeerGroup(n, env) as group:
        replies = group.call_all("attach", region="lib", handle=h.to_json())
    layouts = []
    for r in replies:
        text = r["extra"]["text"][0]
        data = r["extra"]["data"][0] if r["extra"]["data"] else (text[0], 0, 0)
        layouts.append(PeerLayout(r["pid"], text[0] - text[2], text[0], data[0]))
    return PicResult(h.path, tuple(layouts))
