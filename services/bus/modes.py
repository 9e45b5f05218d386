"""What a service hands the runtime: its handler, in one of three modes, and a small frozen RuntimeConfig.

    ServiceRuntime(bus, "my-service", PerRecord(handle), RuntimeConfig(topics=("inference.predictions",)))

- PerRecord: one decoded record at a time (most services); offload=True runs a slow handler in a thread.
- Batched: every decoded record of a batch in one call, one result per record (vectorised work: the scorer).
- RawBatch: the messages undecoded, bytes as they are, one result for the whole batch (the auditor, the
  drift-watcher's router); it dead-letters nothing itself, and may pass messages on as they are (Forward).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from confluent_kafka import Message

from .envelope import Event
from .errors import BadInput
from .received import Received

Handler = Callable[[Received], Iterable[Event]]
BatchHandler = Callable[[list[Received]], list["list[Event] | BadInput"]]
RawBatchHandler = Callable[[list[Message]], "list[Event | Forward]"]
Tick = Callable[[], list[Event]]


@dataclass(frozen=True)
class Forward:
    """A message passed on as it is (bytes and headers untouched) to a topic outside the catalogue, e.g. a
    service's internal re-keyed topic. A raw batch handler may return these besides Events."""

    physical_topic: str
    key: bytes | None
    value: bytes | None
    headers: list
    timestamp_ms: int = 0


@dataclass(frozen=True)
class PerRecord:
    """Each decoded record alone; offload: in a thread while the consumer keeps polling, paused (the trainer)."""

    handler: Handler
    offload: bool = False


@dataclass(frozen=True)
class Batched:
    """The batch's decoded records in one call, one list of events or BadInput per record (the scorer)."""

    handler: BatchHandler


@dataclass(frozen=True)
class RawBatch:
    """The batch's messages undecoded, bytes as they are: events and Forwards for the whole batch (the auditor)."""

    handler: RawBatchHandler


HandlerMode = PerRecord | Batched | RawBatch


@dataclass(frozen=True)
class Ticker:
    """Time-driven decisions (canary steps, the auditor's head), called every every_s seconds between batches."""

    tick: Tick
    every_s: float = 1.0


@dataclass(frozen=True)
class Task:
    """One task of a service that splits its input into fixed parts (an auditor shard), run by whichever copy
    holds it: its input partitions (catalogue topic, partition), assigned rather than subscribed; the consumer
    group that keeps their offsets; the transactional id that fences an older runner of the same task, wherever it
    ran; and its name (its log lines, its poison file)."""

    name: str
    partitions: tuple[tuple[str, int], ...]
    group: str
    transactional_id: str


@dataclass(frozen=True)
class RuntimeConfig:
    """How the runtime runs a service. topics: what it consumes (None: what the catalogue says it consumes);
    outputs: records it writes, announced at start (a late first write of a type would otherwise announce its
    schema at any moment); rewindable: handling a batch again is harmless (the scorer), or is once on_aborted
    dropped what the aborted one changed (the auditor): an aborted transaction is then no crash."""

    topics: Sequence[str] | None = None
    transactional: bool = False
    batch_size: int = 500
    poll_timeout_s: float = 0.5
    ticker: Ticker | None = None
    on_stop: Tick | None = None                         # last events before stopping (the auditor's checkpoint)
    on_committed: Callable[[], None] | None = None      # after each committed transaction (the auditor's anchor)
    on_aborted: Callable[[], None] | None = None
    outputs: tuple[str, ...] = ()
    rewindable: bool = False
    task: Task | None = None                            # one task of the service: its partitions, group, txn id
    metrics: Any = None           # a ServiceMetrics the process serves itself (several tasks in one process)

    def __post_init__(self) -> None:
        if isinstance(self.topics, str):        # a bare name would be read as a sequence of one-letter topics
            raise TypeError(f"topics is a sequence of topic names, not one name: [{self.topics!r}]")
        if self.topics is not None:
            object.__setattr__(self, "topics", tuple(self.topics))

    @property
    def rewinds(self) -> bool:
        """Whether an aborted transaction's batch is handled again rather than crashing the service."""
        return self.rewindable or self.on_aborted is not None
