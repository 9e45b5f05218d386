"""Resolve unknown writer fingerprints from the compacted `schemas` topic."""
from __future__ import annotations

import time

from .context import Bus
from .publish import SCHEMA_RECORD
from .replay import read_topics

REFRESH_INTERVAL_S = 5.0


class SchemasTopicResolver:
    """Reads the `schemas` topic to its end when a fingerprint is unknown (at most every few seconds)."""

    def __init__(self, bus: Bus):
        self.bus = bus
        self.known: dict[bytes, str] = {}
        self._last_read = float("-inf")

    def __call__(self, fingerprint: bytes) -> str | None:
        if fingerprint not in self.known and time.monotonic() - self._last_read > REFRESH_INTERVAL_S:
            self.refresh()
        return self.known.get(fingerprint)

    def refresh(self) -> None:
        self._last_read = time.monotonic()      # set first: a record read below may ask again; it waits
        topic = self.bus.catalogue.for_schema(SCHEMA_RECORD).name
        for record in read_topics(self.bus, [topic], timeout_s=10.0):
            if record.record == SCHEMA_RECORD:
                self.known[bytes.fromhex(record.value["fingerprint"])] = record.value["schema_json"]
