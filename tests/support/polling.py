"""Waiting for the bus: poll with a deadline, never sleep."""
from __future__ import annotations

import time
from typing import Callable, TypeVar

from confluent_kafka import Consumer, Message, TopicPartition

from services.bus.context import Bus
from services.bus.kafka import base_config
from services.domain import audited_topics

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 60.0, message: str = "condition", *,
               interval: float = 0.2) -> T:
    """Call predicate until it returns something truthy; TimeoutError at the deadline (the suite, the
    reliability scenarios and the benchmarks poll with deadlines, never sleep to wait)."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {message}")
        time.sleep(interval)


def read_topic(bus: Bus, topic: str, expected: int, timeout: float = 60.0,
               read_committed: bool = True, settle_s: float = 1.0) -> list[Message]:
    """All messages of a catalogue topic from the start: waits for `expected`, then settle_s more so that
    extra (duplicate) messages would be seen too."""
    physical = bus.catalogue.physical(topic)
    consumer = Consumer({**base_config(bus.settings), "group.id": "test-reader", "enable.auto.commit": False,
                         "isolation.level": "read_committed" if read_committed else "read_uncommitted"})
    try:
        partitions = consumer.list_topics(physical, timeout=10).topics[physical].partitions
        consumer.assign([TopicPartition(physical, p, -2) for p in partitions])
        messages: list[Message] = []
        deadline = time.monotonic() + timeout
        settle_until = None
        while time.monotonic() < deadline:
            batch = consumer.consume(1000, 0.2)
            messages.extend(m for m in batch if not m.error())
            if len(messages) >= expected and settle_until is None:
                settle_until = time.monotonic() + settle_s
            if settle_until is not None and time.monotonic() > settle_until:
                break
        return messages
    finally:
        consumer.close()


def topic_values(bus: Bus, topic: str) -> list[dict]:
    """Every decoded record on a catalogue topic right now (to its end offsets), oldest first per partition."""
    from services.bus.replay import read_topics

    return [record.value for record in read_topics(bus, [topic])]


def bus_messages(bus) -> set[tuple[str, int, int]]:
    """(topic, partition, offset) of every committed message on the audited topics (all but audit.*) now."""
    consumer = Consumer({**base_config(bus.settings), "group.id": "count", "isolation.level": "read_committed"})
    found = set()
    try:
        for name in audited_topics(bus):
            physical = bus.catalogue.physical(name)
            for p in consumer.list_topics(physical, timeout=10).topics[physical].partitions:
                end = consumer.get_watermark_offsets(TopicPartition(physical, p), timeout=10)[1]
                if end == 0:
                    continue
                consumer.assign([TopicPartition(physical, p, 0)])
                while consumer.position([TopicPartition(physical, p)])[0].offset < end:
                    batch = consumer.consume(1000, 1.0)
                    found |= {(name, m.partition(), m.offset()) for m in batch if not m.error()}
                    if not batch:
                        break
    finally:
        consumer.close()
    return found


def served(bus: Bus, ids: list[str]) -> dict[str, dict]:
    """The served predictions for these request ids, by id."""
    wanted = set(ids)
    return {p["request_id"]: p for p in topic_values(bus, "inference.predictions")
            if p["request_id"] in wanted and p["served"]}
