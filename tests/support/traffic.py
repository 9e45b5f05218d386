"""Producing test traffic: good inference requests and every kind of malformed message."""
from __future__ import annotations

import os
from datetime import datetime, timezone

from services.bus import Bus, Event, Publisher, derive_id
from services.bus.codec import MARKER


def request(i: int, nan: bool = False) -> Event:
    request_id = f"req-{i:06d}"
    return Event(record="mlbus.InferenceRequest", key=f"entity-{i % 97}", id=derive_id("test-request", i), value={
        "request_id": request_id, "entity_id": f"entity-{i % 97}", "model": "relay",
        "features": {"x": float("nan") if nan else float(i)}, "categories": {},
        "sent_at": datetime.now(timezone.utc)})


def malformed_payloads(bus: Bus, count: int) -> list[bytes]:
    """Random bytes, a wrong fingerprint, truncated Avro, and valid Avro with an impossible value."""
    good = bus.schemas.encode("mlbus.InferenceRequest", request(0).value)
    kinds = [lambda i: os.urandom(20 + i),
             lambda i: MARKER + i.to_bytes(8, "little") + good[10:],
             lambda i: good[: len(good) // 2],
             lambda i: bus.schemas.encode("mlbus.InferenceRequest", request(i, nan=True).value)]
    return [kinds[i % len(kinds)](i) for i in range(count)]


def publish_mixed(bus: Bus, good: int, bad: int) -> tuple[list[str], list[bytes]]:
    """`good` valid requests with `bad` malformed ones spread evenly among them."""
    publisher = Publisher(bus, "test-traffic")
    published_bad = malformed_payloads(bus, bad)
    bad_payloads = list(published_bad)
    every = max(1, good // max(bad, 1))
    request_ids = []
    for i in range(good):
        event = request(i)
        publisher.publish(event)
        request_ids.append(event.value["request_id"])
        if bad_payloads and i % every == 0:
            publisher.produce("inference.requests", b"poison", bad_payloads.pop(), [("origin", b"test")])
    for payload in bad_payloads:
        publisher.produce("inference.requests", b"poison", payload, [("origin", b"test")])
    publisher.flush()
    return request_ids, published_bad
