"""Resolve unknown writer fingerprints from the compacted `schemas` topic."""
from __future__ import annotations

import time


from .codec import parse_announced, writer_schema
from .context import Bus
from .logs import get_logger
from .publish import SCHEMA_RECORD
from .replay import read_topics

REFRESH_INTERVAL_S = 5.0
READ_TIMEOUT_S = 10.0
BACK_OFF_S = 60.0          # after a read that did not reach the end in time (a flooded topic): wait this long
log = get_logger(component="schemas-topic")


class SchemasTopicResolver:
    """Reads the `schemas` topic to its end when a fingerprint is unknown (at most every few seconds)."""

    def __init__(self, bus: Bus):
        self.bus = bus
        self.known: dict[bytes, str] = {}
        self._last_read = float("-inf")
        self._refused: set[tuple[str, str]] = set()

    def __call__(self, fingerprint: bytes) -> str | None:
        if fingerprint not in self.known and time.monotonic() - self._last_read > REFRESH_INTERVAL_S:
            self.refresh()
        return self.known.get(fingerprint)

    def refresh(self) -> None:
        """Read the topic again. An entry whose JSON does not parse or does not hash to its fingerprint is
        skipped: its fingerprint stays unknown, so the messages that carry it are dead-lettered rather than
        crash anyone. A topic too long to read in READ_TIMEOUT_S (flooded: only the admin may write it) leaves
        the fingerprint unknown too, and is not read again for BACK_OFF_S; a broker that does not answer
        (KafkaException) crashes the service as any infrastructure failure."""
        self._last_read = time.monotonic()      # set first: a record read below may ask again; it waits
        topic = self.bus.catalogue.for_schema(SCHEMA_RECORD).name
        try:
            records = list(read_topics(self.bus, [topic], timeout_s=READ_TIMEOUT_S))
        except TimeoutError as error:
            self._last_read = time.monotonic() + BACK_OFF_S - REFRESH_INTERVAL_S
            log.error("schemas topic not read to its end in time; unknown fingerprints stay unknown",
                      back_off_s=BACK_OFF_S, error=str(error))
            return
        for record in records:
            if record.record == SCHEMA_RECORD:
                self._learn(record.value["fingerprint"], record.value["schema_json"])

    def _learn(self, fingerprint_hex: str, schema_json: str) -> None:
        """Keep the entry if its schema hashes to its fingerprint (a true entry after a lying one still counts)."""
        try:
            computed = writer_schema(parse_announced(schema_json)).fingerprint_hex
        except Exception as error:              # noqa: BLE001 - any parse failure means the entry is unusable
            computed, reason = None, f"{type(error).__name__}: {error}"[:300]
        else:
            reason = f"its schema hashes to {computed}"
        if computed != fingerprint_hex:
            if (fingerprint_hex, schema_json) not in self._refused:       # said once per entry
                self._refused.add((fingerprint_hex, schema_json))
                log.error("schemas topic entry refused", fingerprint=fingerprint_hex, reason=reason)
            return
        self.known[bytes.fromhex(fingerprint_hex)] = schema_json
