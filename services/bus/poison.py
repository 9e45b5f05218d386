"""The poison budget: one message must not crash a service forever.

Before a batch reaches its handler the runtime writes which offsets are in flight (a span per partition) to a
small local state file, and clears it when the handler returns. A crash in between — an exception the handler let
out, or
the process dying outright (os._exit, a signal, memory) — leaves that mark behind:

- a crash with several messages in flight makes them *suspects*: after the restart each is handled alone,
  so that the one that crashes is found;
- a crash with one message in flight is a *strike* against that message (topic, partition, offset);
- a message with `budget` strikes (MLBUS_POISON_BUDGET, default 3) is not handed to the handler again: the
  runtime dead-letters it with `dlq.stage=handler` and the last error, and goes on.

Kafka's own failures (KafkaException) are not strikes: they say nothing about the message and must crash
the service until the broker is back. The decisions are pure (PoisonLedger); PoisonFile keeps them on disk.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import BadInput
from .logs import get_logger
from .metrics import POISON

Offset = tuple[str, int, int]              # (physical topic, partition, offset)
DIED = "the process died while handling it (no exception reached the runtime)"


class PoisonMessage(BadInput):
    """A message that crashed its handler `budget` times: dead-lettered so that the service goes on."""

    stage = "handler"


Span = tuple[str, int, int, int]           # (physical topic, partition, first offset, last offset)


def spans(batch: list[Offset]) -> list[Span]:
    """A batch's offsets as one span per partition (a batch holds each partition's messages in order)."""
    found: dict[tuple[str, int], tuple[int, int]] = {}
    for topic, partition, offset in batch:
        first, last = found.get((topic, partition), (offset, offset))
        found[(topic, partition)] = (min(first, offset), max(last, offset))
    return [(t, p, first, last) for (t, p), (first, last) in found.items()]


@dataclass
class PoisonLedger:
    """Strikes against messages, the suspect spans still to be handled one by one, and what is in flight."""

    budget: int = 3
    strikes: dict[Offset, tuple[int, str]] = field(default_factory=dict)   # offset → (crashes, last error)
    suspects: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)  # (topic, p) → [first, last]
    in_flight: list[Span] = field(default_factory=list)

    def is_suspect(self, at: Offset) -> bool:
        span = self.suspects.get(at[:2])
        return span is not None and span[0] <= at[2] <= span[1]

    def exhausted(self, at: Offset) -> PoisonMessage | None:
        """The refusal for a message that has used up its budget, else None."""
        crashes, error = self.strikes.get(at, (0, ""))
        if crashes < self.budget:
            return None
        return PoisonMessage(f"crashed its handler {crashes} times (poison budget {self.budget}); last error: {error}")

    def begin(self, batch: list[Offset]) -> None:
        self.begin_spans(spans(batch))

    def begin_spans(self, in_flight: list[Span]) -> None:
        """begin, with the batch's spans already known (the runtime finds them as it reads the batch)."""
        self.in_flight = in_flight

    def crashed(self, error: str) -> None:
        """What was in flight crashed: a strike when it was one message, else every message becomes a suspect."""
        if len(self.in_flight) == 1 and self.in_flight[0][2] == self.in_flight[0][3]:
            at = self.in_flight[0][:3]
            self.strikes[at] = (self.strikes.get(at, (0, ""))[0] + 1, error)
        for topic, partition, first, last in self.in_flight:
            old_first, old_last = self.suspects.get((topic, partition), (first, last))
            self.suspects[(topic, partition)] = (min(first, old_first), max(last, old_last))
        self.in_flight = []

    def finished(self) -> None:
        """The handler returned: forget what the batch covered."""
        for topic, partition, first, last in self.in_flight:
            self.settled(topic, partition, first, last)
        self.in_flight = []

    def settled(self, topic: str, partition: int, first: int, last: int | None = None) -> None:
        """Offsets first..last of a partition are done with (handled, or dead-lettered and committed)."""
        last = first if last is None else last
        for at in [at for at in self.strikes if at[:2] == (topic, partition) and first <= at[2] <= last]:
            del self.strikes[at]
        span = self.suspects.get((topic, partition))
        if span is not None and first <= span[0] <= last:
            if last >= span[1]:
                del self.suspects[(topic, partition)]
            else:
                self.suspects[(topic, partition)] = (last + 1, span[1])

    @property
    def empty(self) -> bool:
        return not (self.strikes or self.suspects or self.in_flight)

    def to_json(self) -> dict:
        return {"strikes": [[*at, n, error] for at, (n, error) in self.strikes.items()],
                "suspects": [[t, p, first, last] for (t, p), (first, last) in self.suspects.items()],
                "in_flight": [list(span) for span in self.in_flight]}

    @classmethod
    def from_json(cls, data: dict, budget: int) -> "PoisonLedger":
        return cls(budget=budget,
                   strikes={(t, p, o): (n, error) for t, p, o, n, error in data.get("strikes", [])},
                   suspects={(t, p): (first, last) for t, p, first, last in data.get("suspects", [])},
                   in_flight=[(t, p, first, last) for t, p, first, last in data.get("in_flight", [])])


class PoisonFile:
    """The ledger kept in `path` (atomically replaced). At load, a mark left in flight is a crash: DIED."""

    def __init__(self, path: Path, budget: int):
        self.path = path
        data = json.loads(path.read_text()) if path.exists() else {}
        self.ledger = PoisonLedger.from_json(data, budget)
        if self.ledger.in_flight:
            self.ledger.crashed(DIED)
            self.save()

    def begin(self, batch: list[Offset]) -> None:
        self.begin_spans(spans(batch))

    def begin_spans(self, in_flight: list[Span]) -> None:
        self.ledger.begin_spans(in_flight)
        self.save()

    def crashed(self, error: str) -> None:
        self.ledger.crashed(error)
        self.save()

    def finished(self) -> None:
        had_marks = not self.ledger.empty
        self.ledger.finished()
        if had_marks:
            self.save()

    def save(self) -> None:
        if self.ledger.empty:
            self.path.unlink(missing_ok=True)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".partial")
        partial.write_text(json.dumps(self.ledger.to_json()))
        os.replace(partial, self.path)


def poison_record(service: str, path: str, topic: str, offset: int, error: BaseException, record: str = "") -> None:
    """A record `path` (rebuild | follow | agent | live) could not fold or handle: said once in the log as
    'poison record', counted in mlbus_poison_total (the MlbusPoison alert); the caller goes on without it."""
    POISON.labels(service or "-", path, topic).inc()
    get_logger(component=service or "-").error("poison record", path=path, topic=topic, offset=offset,
                                               record=record, error=f"{type(error).__name__}: {error}"[:500])
