"""Counting what a fault did: every event carries an id and a sequence number; the checker compares what
was sent and acknowledged with what was read back (read_committed). Pure: no I/O."""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Hashable, Iterable


@dataclass(frozen=True)
class Sent:
    """One event as its producer saw it: its id, the key that orders it and its sequence number in that key."""

    id: str
    key: Hashable
    seq: int


@dataclass
class ScenarioResult:
    name: str
    sent: int
    acknowledged: int
    read_back: int
    lost: int
    duplicated: int
    out_of_order: int
    passed: bool
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Tally:
    sent: int
    acknowledged: int
    read_back: int
    lost: int             # acknowledged, never read back
    duplicated: int       # read back more than once (each extra copy counts)
    out_of_order: int     # read back before an event its producer sent earlier on the same key
    unexpected: int       # read back but never sent (e.g. a refused, unacknowledged event that still landed)


def tally(sent: Iterable[Sent], acknowledged: Iterable[str], read_back: Iterable[str]) -> Tally:
    """read_back: the ids in the order read (per partition order is what Kafka promises; keys stay on a
    partition, so order is judged per key)."""
    sent = list(sent)
    by_id = {s.id: s for s in sent}
    acked = set(acknowledged)
    read = list(read_back)
    copies = Counter(read)
    newest: dict[Hashable, int] = {}
    out_of_order = 0
    seen: set[str] = set()
    for event_id in read:
        if event_id in seen or event_id not in by_id:
            continue
        seen.add(event_id)
        event = by_id[event_id]
        if event.seq < newest.get(event.key, -1):
            out_of_order += 1
        newest[event.key] = max(event.seq, newest.get(event.key, -1))
    return Tally(sent=len(sent), acknowledged=len(acked), read_back=len(read),
                 lost=len(acked - set(copies)), duplicated=sum(n - 1 for n in copies.values()),
                 out_of_order=out_of_order, unexpected=len(set(copies) - set(by_id)))


def result(name: str, counts: Tally, passed: bool, notes: list[str]) -> ScenarioResult:
    extra = [f"{counts.unexpected} read back that were never sent"] if counts.unexpected else []
    return ScenarioResult(name=name, sent=counts.sent, acknowledged=counts.acknowledged, read_back=counts.read_back,
                          lost=counts.lost, duplicated=counts.duplicated, out_of_order=counts.out_of_order,
                          passed=passed and not counts.unexpected, notes=notes + extra)


COLUMNS = ("name", "sent", "acknowledged", "read_back", "lost", "duplicated", "out_of_order", "passed")


def table(results: list[ScenarioResult]) -> str:
    """A Markdown table of the results, notes under it."""
    lines = ["| " + " | ".join(COLUMNS) + " | seconds |", "|" + "---|" * (len(COLUMNS) + 1)]
    for r in results:
        cells = [str(getattr(r, c)) if c != "passed" else ("yes" if r.passed else "**NO**") for c in COLUMNS]
        lines.append("| " + " | ".join(cells) + f" | {r.seconds:.0f} |")
    for r in results:
        lines += [f"- **{r.name}**: {note}" for note in r.notes]
    return "\n".join(lines)


def report_json(results: list[ScenarioResult]) -> str:
    return json.dumps([r.as_json() for r in results], indent=2)
