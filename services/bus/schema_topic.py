"""Resolve unknown writer fingerprints from the compacted `schemas` topic."""
from __future__ import annotations

import time

from confluent_kafka import Consumer, TopicPartition

from .codec import DecodeError
from .context import Bus
from .kafka import base_config
from .publish import SCHEMA_RECORD

REFRESH_INTERVAL_S = 5.0


class SchemasTopicResolver:
    """Reads the `schemas` topic to its end when a fingerprint is unknown (at most every few seconds)."""

    def __init__(self, bus: Bus):
        self.bus = bus
        self.known: dict[bytes, str] = {}
        self._last_read = 0.0

    def __call__(self, fingerprint: bytes) -> str | None:
        if fingerprint not in self.known and time.monotonic() - self._last_read > REFRESH_INTERVAL_S:
            self.refresh()
        return self.known.get(fingerprint)

    def refresh(self, timeout: float = 10.0) -> None:
        self._last_read = time.monotonic()
        topic = self.bus.catalogue.physical(self.bus.catalogue.for_schema(SCHEMA_RECORD).name)
        consumer = Consumer({**base_config(self.bus.settings), "group.id": "mlbus-schema-reader",
                             "enable.auto.commit": False, "isolation.level": "read_committed"})
        try:
            partitions = consumer.list_topics(topic, timeout=timeout).topics[topic].partitions
            ends = {}
            for p in partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
                if high > low:
                    ends[p] = high
            consumer.assign([TopicPartition(topic, p, 0) for p in ends])
            deadline = time.monotonic() + timeout
            while ends and time.monotonic() < deadline:
                message = consumer.poll(0.5)
                if message is None or message.error():
                    continue
                self._learn(message.value())
                if message.offset() + 1 >= ends.get(message.partition(), 0):
                    ends.pop(message.partition(), None)
        finally:
            consumer.close()

    def _learn(self, value: bytes) -> None:
        try:
            _, definition = self.bus.schemas.decode(value)
        except DecodeError:
            return      # a foreign record on the schemas topic: nothing to learn from it
        self.known[bytes.fromhex(definition["fingerprint"])] = definition["schema_json"]
