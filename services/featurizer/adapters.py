"""The featurizer's start: its state rebuilt from the bus up to where its consumer group committed, so the live
handler goes on exactly from there (what a committed transaction wrote was made from the same state)."""
from __future__ import annotations

from collections.abc import Iterator

from confluent_kafka import Consumer, TopicPartition

from services.bus import BadInput, Bus
from services.bus.kafka import base_config, group_id
from services.bus.logs import get_logger
from services.bus.received import decode_message
from services.bus.replay import read_batches
from services.bus.topics import retry_while_retriable

from .core import FeaturizerState, in_time_order
from .handlers import Featurizer, definition

Place = tuple[str, int]


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


def source_records(bus: Bus, topic: str, read_to: dict[Place, int]) -> Iterator[tuple]:
    """A source topic's records up to `read_to` (next offsets by partition), in time order (core.in_time_order):
    (topic, partition, offset, timestamp_ms, record, value). Records that do not decode are left out: they went
    to the dead-letter topic when the featurizer met them."""
    physical = bus.catalogue.physical(topic)
    until = {(physical, partition): end for (name, partition), end in read_to.items() if name == topic}
    records = []
    for batch in read_batches(bus, [topic], until=until):
        for message in batch:
            try:
                received = decode_message(bus, message)
            except BadInput:
                continue
            records.append((received.topic, received.partition, received.offset, received.timestamp_ms,
                            received.record, received.value))
    return iter(in_time_order(records))


def rebuild(bus: Bus, featurizer: Featurizer, views_topic: str) -> None:
    """The views and windows as they stood at the group's committed offsets: every definition taken before, then
    every source record read before, in time order; nothing is written (it was, when it was handled)."""
    state: FeaturizerState = featurizer.state
    done = committed(bus, [views_topic, *featurizer.sources])
    for batch in read_batches(bus, [views_topic], until={(bus.catalogue.physical(t), p): end
                                                         for (t, p), end in done.items() if t == views_topic}):
        for message in batch:
            try:
                state.define(definition(decode_message(bus, message), featurizer.verify, featurizer.sources))
            except BadInput:                    # refused live too: dead-lettered then, with its reason
                continue
    state.read_to = {place: end for place, end in done.items() if place[0] != views_topic}
    replayed = 0
    for topic in sorted(state.source_topics()):
        for record in source_records(bus, topic, state.read_to):
            state.add(*record)
            replayed += 1
    get_logger(component="featurizer").info("rebuilt", views=len(state.views), replayed=replayed,
                                            read_to={f"{t}:{p}": o for (t, p), o in sorted(state.read_to.items())})
