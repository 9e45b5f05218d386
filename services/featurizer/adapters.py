"""The featurizer's start: its state rebuilt from the bus, and what was published since it last committed caught
up in event time across partitions.

Up to its group's committed offsets, records are folded only (what they made was written when they were
handled). Past them — a backlog: it was stopped, or killed — they are handled in the same merged time order as a
backfill, their values written to the stores and features.online here (the same values and event ids as a
transaction would have written: the outputs are idempotent); the runtime then meets those records again from the
committed offsets and each view drops them as redelivered. A backlog read live, partition by partition, would
make one partition's events late against another's."""
from __future__ import annotations

from collections.abc import Iterator

from confluent_kafka import Consumer, TopicPartition

from services.adapters import snapshot_digest
from services.bus import BadInput, Bus, Publisher
from services.bus.kafka import base_config, group_id
from services.bus.logs import get_logger
from services.bus.received import decode_message
from services.bus.replay import read_batches
from services.bus.topics import retry_while_retriable

from services.domain import FeatureValue

from .core import FeaturizerState, in_time_order
from .handlers import Featurizer, definition, online_event

Place = tuple[str, int]
READ_TIMEOUT_S = 3600.0      # a source's whole history at start or for a new view: long, not for ever


def committed(bus: Bus, topics: list[str], timeout_s: float = 30.0) -> dict[Place, int]:
    """The featurizer group's committed offsets on `topics` (catalogue names), by (topic, partition)."""
    consumer = Consumer({**base_config(bus.settings), "group.id": group_id(bus.settings),
                         "enable.auto.commit": False})
    try:
        places = []
        for topic in topics:
            physical = bus.catalogue.physical(topic)
            metadata = retry_while_retriable(lambda: consumer.list_topics(physical, timeout=timeout_s))
            places += [TopicPartition(physical, p) for p in metadata.topics[physical].partitions]
        found = consumer.committed(places, timeout=timeout_s) if places else []
        return {(bus.catalogue.logical(tp.topic), tp.partition): tp.offset for tp in found if tp.offset > 0}
    finally:
        consumer.close()


def source_records(bus: Bus, topic: str, read_to: dict[Place, int] | None) -> Iterator[tuple]:
    """A source topic's records up to `read_to` (next offsets by partition; None: to the end now), in time order
    (core.in_time_order): (topic, partition, offset, timestamp_ms, record, value). Records that do not decode are
    left out: they went to the dead-letter topic when the featurizer met them."""
    physical = bus.catalogue.physical(topic)
    until = None if read_to is None else \
        {(physical, partition): end for (name, partition), end in read_to.items() if name == topic}
    records = []
    for batch in read_batches(bus, [topic], timeout_s=READ_TIMEOUT_S, until=until):
        for message in batch:
            try:
                received = decode_message(bus, message)
            except BadInput:
                continue
            records.append((received.topic, received.partition, received.offset, received.timestamp_ms,
                            received.record, received.value))
    return iter(in_time_order(records))


def rebuild(bus: Bus, featurizer: Featurizer, views_topic: str) -> list[FeatureValue]:
    """The views as they stood at the group's committed offsets and every source record up to the end now, in time
    order; the values of the records past the committed offsets (the backlog), which the caller writes."""
    state: FeaturizerState = featurizer.state
    done = committed(bus, [views_topic, *featurizer.sources])
    for batch in read_batches(bus, [views_topic], until={(bus.catalogue.physical(t), p): end
                                                         for (t, p), end in done.items() if t == views_topic}):
        for message in batch:
            try:
                state.define(definition(decode_message(bus, message), featurizer.verify, featurizer.sources))
            except BadInput:                    # refused live too: dead-lettered then, with its reason
                continue
    backlog: list[FeatureValue] = []
    folded = 0
    for topic in sorted(state.source_topics()):
        for record in source_records(bus, topic, None):
            made = state.add(*record)
            if record[2] >= done.get((record[0], record[1]), 0):
                backlog += made.values
            else:
                folded += 1
    get_logger(component="featurizer").info("rebuilt", views=len(state.views), folded=folded,
                                            backlog_values=len(backlog),
                                            read_to={f"{t}:{p}": o for (t, p), o in sorted(state.read_to.items())})
    return backlog


def catch_up(bus: Bus, featurizer: Featurizer, backlog: list[FeatureValue]) -> None:
    """The backlog's values into the stores and onto features.online, before the runtime starts."""
    if not backlog:
        return
    publisher = Publisher(bus, "featurizer")
    now = featurizer.clock()
    for value in featurizer.store(backlog, f"catch-up-{snapshot_digest(backlog)[:16]}"):
        publisher.publish(online_event(value, now))
    publisher.flush()
