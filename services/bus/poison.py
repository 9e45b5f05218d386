"""The poison budget: one message must not crash a service forever.

Before a batch reaches its handler the runtime writes which offsets are in flight to a small local state
file, and clears it when the handler returns. A crash in between — an exception the handler let out, or
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

Offset = tuple[str, int, int]              # (physical topic, partition, offset)
DIED = "the process died while handling it (no exception reached the runtime)"


class PoisonMessage(BadInput):
    """A message that crashed its handler `budget` times: dead-lettered so that the service goes on."""

    stage = "handler"


@dataclass
class PoisonLedger:
    """Strikes against messages, the suspect ranges still to be handled one by one, and what is in flight."""

    budget: int = 3
    strikes: dict[Offset, tuple[int, str]] = field(default_factory=dict)   # offset → (crashes, last error)
    suspects: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)  # (topic, p) → [first, last]
    in_flight: list[Offset] = field(default_factory=list)

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
        self.in_flight = list(batch)

    def crashed(self, error: str) -> None:
        """What was in flight crashed: a strike when alone, else every message becomes a suspect."""
        if len(self.in_flight) == 1:
            at = self.in_flight[0]
            self.strikes[at] = (self.strikes.get(at, (0, ""))[0] + 1, error)
        for topic, partition, offset in self.in_flight:
            first, last = self.suspects.get((topic, partition), (offset, offset))
            self.suspects[(topic, partition)] = (min(first, offset), max(last, offset))
        self.in_flight = []

    def finished(self) -> None:
        """The handler returned (or the runtime dead-lettered the batch): forget what it covered."""
        for at in self.in_flight:
            self.settled(at)
        self.in_flight = []

    def settled(self, at: Offset) -> None:
        self.strikes.pop(at, None)
        span = self.suspects.get(at[:2])
        if span is not None and span[0] <= at[2]:
            if at[2] >= span[1]:
                del self.suspects[at[:2]]
            else:
                self.suspects[at[:2]] = (at[2] + 1, span[1])

    @property
    def empty(self) -> bool:
        return not (self.strikes or self.suspects or self.in_flight)

    def to_json(self) -> dict:
        return {"strikes": [[*at, n, error] for at, (n, error) in self.strikes.items()],
                "suspects": [[t, p, first, last] for (t, p), (first, last) in self.suspects.items()],
                "in_flight": [list(at) for at in self.in_flight]}

    @classmethod
    def from_json(cls, data: dict, budget: int) -> "PoisonLedger":
        return cls(budget=budget,
                   strikes={(t, p, o): (n, error) for t, p, o, n, error in data.get("strikes", [])},
                   suspects={(t, p): (first, last) for t, p, first, last in data.get("suspects", [])},
                   in_flight=[(t, p, o) for t, p, o in data.get("in_flight", [])])


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
        self.ledger.begin(batch)
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
