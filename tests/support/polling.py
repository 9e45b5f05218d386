"""Waiting for the bus: poll with a deadline, never sleep."""
from __future__ import annotations

import time
from typing import Callable, TypeVar

from confluent_kafka import Consumer, Message, TopicPartition

from services.bus.context import Bus
from services.bus.kafka import base_config
from services.adapters import audited_topics

T = TypeVar("T")
# pytest's timeout for the tests that tell a whole story (a deployment and its canary, a chaos scenario on brokers
# of their own): on a slow hour their waits add up past the 600 s default; the time counts only when it is needed
LONG_STORY_S = 1200
_test_deadline: float | None = None         # monotonic time by which the running test must have failed by name


def set_test_deadline(seconds_from_now: float | None) -> None:
    """tests/conftest.py: the running test's budget (its pytest-timeout less a margin), or None."""
    global _test_deadline
    _test_deadline = None if seconds_from_now is None else time.monotonic() + seconds_from_now


def wait_until(predicate: Callable[[], T], timeout: float = 60.0, message: str = "condition", *,
               interval: float = 0.2) -> T:
    """Call predicate until it returns something truthy; TimeoutError at the deadline (the suite, the
    reliability scenarios and the benchmarks poll with deadlines, never sleep to wait). Inside a test the
    deadline is never later than the test's own budget, so a test that runs out of time names what it waited for."""
    deadline = time.monotonic() + timeout
    cut = _test_deadline is not None and _test_deadline < deadline
    if cut:
        deadline = _test_deadline
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {message}: "
                               + ("the test's time budget ran out (pytest timeout)" if cut else f"{timeout:.0f}s"))
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
        # Every end first, before any partition is assigned: once the consumer fetches, a request to the broker
        # waits behind its long-polling fetch (up to fetch.wait.max.ms, 0.5 s) — 0.5 s a partition, ~30 s a call.
        listed = consumer.list_topics(timeout=10).topics
        ends = {(name, p): end for name in audited_topics(bus) if (physical := bus.catalogue.physical(name)) in listed
                for p in listed[physical].partitions
                if (end := consumer.get_watermark_offsets(TopicPartition(physical, p), timeout=10)[1]) > 0}
        consumer.assign([TopicPartition(bus.catalogue.physical(name), p, 0) for name, p in ends])
        # to each end offset (a transaction marker may be last: the position passes it); a slow hour's empty
        # poll is no end: only 10 s without a message is (an open transaction holds the rest)
        quiet_since = time.monotonic()
        while ends and time.monotonic() - quiet_since <= 10:
            batch = [m for m in consumer.consume(1000, 0.05) if not m.error()]
            found |= {(bus.catalogue.logical(m.topic()), m.partition(), m.offset()) for m in batch}
            if batch:
                quiet_since = time.monotonic()
            positions = consumer.position([TopicPartition(bus.catalogue.physical(n), p) for n, p in ends])
            ends = {(n, p): end for ((n, p), end), at in zip(ends.items(), positions) if at.offset < end}
    finally:
        consumer.close()
    return found


def served(bus: Bus, ids: list[str]) -> dict[str, dict]:
    """The served predictions for these request ids, by id."""
    wanted = set(ids)
    return {p["request_id"]: p for p in topic_values(bus, "inference.predictions")
            if p["request_id"] in wanted and p["served"]}
