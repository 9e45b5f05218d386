"""CloudEvents Kafka binding, binary mode: the event's identity and lineage travel in headers."""
from __future__ import annotations

import hashlib
import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

SPEC_VERSION = b"1.0"
CONTENT_TYPE = b"application/avro"
ID_NAMESPACE = uuid.UUID("6f1c9b1e-5a57-4a8e-9a39-6d6c62757301")   # mlbus's uuid5 namespace
_NAMESPACE_BYTES = ID_NAMESPACE.bytes


@dataclass(frozen=True)
class Event:
    """An event a handler wants published. The runtime picks the topic from the record's Avro name."""

    record: str                  # Avro full name, e.g. mlbus.DataValidated
    value: dict
    key: str                     # the entity that orders it (dataset, model, entity id)
    id: str                      # uuid5 of the cause where one exists: a redelivery yields the same id
    subject: str | None = None
    # The value already Avro-encoded (single-object) by compiled code that made it (the auditor's records):
    # published as it is instead of encoding `value` again.
    encoded: bytes | None = field(default=None, compare=False, repr=False)
    partition: int | None = None        # its topic's partition, chosen (an auditor shard's page); None: by key


@dataclass(frozen=True)
class Envelope:
    id: str
    source: str
    type: str
    time: str
    subject: str | None
    correlation_id: str
    causation_id: str | None
    traceparent: str


def derive_id(*parts: Any) -> str:
    """A deterministic event id from its cause (input id, model, version...): handlers stay idempotent.
    uuid5 (RFC 4122: SHA-1 of the namespace and the name, version and variant bits set), written out here
    rather than through uuid.UUID: a third of the time, on every event (a unit test holds it to uuid.uuid5)."""
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + "/".join(map(str, parts)).encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def new_id() -> str:
    return str(uuid.uuid4())


def utc_now() -> datetime:
    """The wall clock, in UTC: what edges read (the envelope's ce_time, a record stamped as it is published) and
    hand to pure code as `now`."""
    return datetime.now(timezone.utc)


def now_rfc3339() -> str:
    return utc_now().isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_traceparent(cause: Envelope | None = None) -> str:
    """W3C trace context: the trace id of the cause (a new one at the start), a new span id."""
    # Trace ids need to be unique, not secret: random.getrandbits (as OpenTelemetry's SDK) costs a fraction of
    # secrets.token_hex's system call per event, which showed in the auditor's profile.
    trace_id = (cause.traceparent.split("-")[1] if cause and cause.traceparent.count("-") == 3
                else f"{random.getrandbits(128):032x}")
    return f"00-{trace_id}-{random.getrandbits(64):016x}-01"


def envelope_for(event: Event, source: str, cause: Envelope | None = None, time: str | None = None) -> Envelope:
    return Envelope(
        id=event.id, source=source, type=event.record, time=time or now_rfc3339(), subject=event.subject,
        correlation_id=cause.correlation_id if cause else event.id,
        causation_id=cause.id if cause else None, traceparent=new_traceparent(cause))


def to_headers(envelope: Envelope) -> list[tuple[str, bytes]]:
    headers = [("ce_specversion", SPEC_VERSION), ("ce_id", envelope.id.encode()),
               ("ce_source", envelope.source.encode()), ("ce_type", envelope.type.encode()),
               ("ce_time", envelope.time.encode()), ("content-type", CONTENT_TYPE),
               ("correlationid", envelope.correlation_id.encode()), ("traceparent", envelope.traceparent.encode())]
    if envelope.subject:
        headers.append(("ce_subject", envelope.subject.encode()))
    if envelope.causation_id:
        headers.append(("causationid", envelope.causation_id.encode()))
    return headers


def from_headers(headers: Iterable[tuple[str, bytes | None]] | None, fallback_id: str | Callable[[], str],
                 record: str) -> Envelope:
    """Read the envelope; a message from a plain producer without ce_* headers still gets a stable id
    (fallback_id may be a function: deriving an id per message showed in the scorer's profile)."""
    found = {k: v.decode("utf-8", "replace") for k, v in (headers or []) if v is not None}
    event_id = found.get("ce_id") or (fallback_id() if callable(fallback_id) else fallback_id)
    return Envelope(
        id=event_id, source=found.get("ce_source", "unknown"), type=found.get("ce_type", record),
        time=found.get("ce_time", ""), subject=found.get("ce_subject"),
        correlation_id=found.get("correlationid", event_id), causation_id=found.get("causationid"),
        traceparent=found.get("traceparent", ""))
