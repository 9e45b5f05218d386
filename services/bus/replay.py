"""Read whole topics from the start to their current end: how services rebuild their views at start-up
and how the CLI shows what is on the bus (runs, validations)."""
from __future__ import annotations

import queue
import threading
import time
from typing import Callable, Iterable, Iterator, TypeVar

from confluent_kafka import Consumer, Message, TopicPartition

from .consumed import position
from .context import Bus
from .errors import BadInput, is_infrastructure
from .kafka import base_config, group_id
from .poison import poison_record
from .received import Received, decode_message
from .topics import retry_while_retriable

T = TypeVar("T")


def read_topics(bus: Bus, topics: Iterable[str], timeout_s: float = 60.0) -> Iterator[Received]:
    """Every decodable committed record of the topics, up to their end when called, in offset order per
    partition. Undecodable or invalid records are skipped: they went to a DLQ when services met them."""
    for message in read_messages(bus, topics, timeout_s):
        try:
            yield decode_message(bus, message)
        except BadInput:
            continue


def read_messages(bus: Bus, topics: Iterable[str], timeout_s: float = 60.0,
                  partition: int | None = None) -> Iterator[Message]:
    """Every committed message of the topics (bytes as they are; with `partition`, of that partition alone), up to
    their end when called, in offset order per partition."""
    for batch in read_batches(bus, topics, timeout_s, partition):
        yield from batch


def read_batches(bus: Bus, topics: Iterable[str], timeout_s: float = 60.0,
                 partition: int | None = None, until: dict[tuple[str, int], int] | None = None
                 ) -> Iterator[list[Message]]:
    """read_messages a fetch at a time (up to 10,000 messages a list): for readers that work on whole batches.
    until: read each (physical topic, partition) only up to that offset (a partition not named: none of it)."""
    consumer = Consumer({**base_config(bus.settings), "group.id": group_id(bus.settings, "replay"),
                         "enable.auto.commit": False,
                         "isolation.level": "read_committed", "enable.partition.eof": False,
                         # Bulk reading: larger fetches than the defaults (1 MB per partition) mean fewer
                         # round trips over a long log such as audit.log (one partition).
                         "max.partition.fetch.bytes": 16 * 1024 * 1024, "fetch.max.bytes": 64 * 1024 * 1024})
    try:
        ends = _end_offsets(consumer, [bus.catalogue.physical(t) for t in topics], timeout_s)
        if partition is not None:
            ends = {where: end for where, end in ends.items() if where[1] == partition}
        if until is not None:
            ends = {where: min(end, until.get(where, 0)) for where, end in ends.items() if until.get(where, 0) > 0}
        consumer.assign([TopicPartition(t, p, 0) for (t, p) in ends])
        deadline = time.monotonic() + timeout_s
        while ends:
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {sorted({t for t, _ in ends})} to the end in {timeout_s}s")
            # consume() waits for its whole batch or the timeout: a short timeout, so the end of a topic
            # (or a transaction marker past its last record) costs 50 ms, not half a second per read.
            batch = [m for m in consumer.consume(10_000, 0.05) if not m.error()]
            for message in batch:
                topic, partition, offset = position(message)
                where = (topic, partition)
                if offset + 1 >= ends.get(where, 0):
                    ends.pop(where, None)
            if batch:
                yield batch
            ends = {w: end for w, end in ends.items() if _position(consumer, w) < end}
    finally:
        consumer.close()


def read_ahead(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """`items` produced in a thread of their own, up to `depth` ahead: reading the next batch overlaps the work
    on this one (work that releases the GIL, as compiled code does, runs beside it on another core). An error
    in the reader is raised here; leaving early stops the reader."""
    ahead: queue.Queue = queue.Queue(depth)
    stop = threading.Event()
    done = object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                ahead.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((done, None))
        except BaseException as error:          # handed to the caller's thread, raised there
            put((done, error))
        finally:
            getattr(items, "close", lambda: None)()    # a generator's own clean-up (a consumer closed) here

    reader = threading.Thread(target=read, name="read-ahead", daemon=True)
    reader.start()
    try:
        while True:
            item, error = ahead.get()
            if error is not None:
                raise error
            if item is done:
                return
            yield item
    finally:
        stop.set()
        reader.join()


def _end_offsets(consumer: Consumer, topics: list[str], timeout_s: float) -> dict[tuple[str, int], int]:
    """Where each partition ends now; a topic made a moment ago may not have its leader yet (retried)."""
    ends = {}
    for topic in topics:
        for partition in consumer.list_topics(topic, timeout=timeout_s).topics[topic].partitions:
            low, high = retry_while_retriable(
                lambda: consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout_s))
            if high > low:
                ends[(topic, partition)] = high
    return ends


def _position(consumer: Consumer, where: tuple[str, int]) -> int:
    [position] = consumer.position([TopicPartition(*where)])
    return position.offset if position.offset >= 0 else 0


def fold_history(bus: Bus, records: tuple[str, ...], *folds: Callable[..., object],
                 keep: Callable[[Received], bool] = lambda received: True) -> None:
    """Rebuild projections from the topics that carry these record types: every record is handed to each
    fold, record type by record type in the order given (a decision comes after what it decides on).
    keep: which records count (e.g. only people's acts whose signature verifies).
    A record a fold raises on is skipped, said and counted (poison.poison_record), as a live handler
    dead-letters it: no record stops a start-up. A failure of the infrastructure (errors.is_infrastructure)
    stops it."""
    history = list(read_topics(bus, [bus.catalogue.for_schema(name).name for name in records]))
    for name in records:
        for record in history:
            if record.record == name:
                _fold_one(bus, record, keep, folds)


def apply_fold(fold: Callable, received: Received) -> None:
    """fold(record, value), or fold(record, value, broker time) for a fold marked `timed` (identities: a key's
    validity is when the broker took its records, never a time written in them), or fold(received) for one
    marked `takes_received` (signed_only: it checks a signature first)."""
    if getattr(fold, "timed", False):
        fold(received.record, received.value, received.timestamp_ms)
    elif getattr(fold, "takes_received", False):
        fold(received)
    else:
        fold(received.record, received.value)


def _fold_one(bus: Bus, record: Received, keep: Callable[[Received], bool],
              folds: tuple[Callable[..., object], ...]) -> None:
    try:
        if keep(record):
            for fold in folds:
                apply_fold(fold, record)
    except Exception as error:              # noqa: BLE001 - told apart just below
        if is_infrastructure(error):
            raise
        poison_record(bus.settings.connection.client_principal, "rebuild", record.topic, record.offset, error,
                      record.record)
