"""Waiting for the bus: poll with a deadline, never sleep."""
from __future__ import annotations

import time
from typing import Callable, TypeVar

from confluent_kafka import Consumer, Message, TopicPartition

from services.bus.context import Bus
from services.bus.kafka import base_config

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 60.0, interval: float = 0.2,
               message: str = "condition") -> T:
    """Call predicate until it returns something truthy; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
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
