"""The auditor's decisions, pure: one sealed AuditRecord per message that crossed the bus, in order, and
a checkpoint of the chain's head every `checkpoint_every` records."""
from __future__ import annotations

from dataclasses import dataclass

from services.bus import Event, derive_id
from services.domain import ChainHead, seal
from services.bus.signing import Verdict


@dataclass(frozen=True)
class Crossing:
    """A message as it was on its topic: the bytes and headers untouched."""

    topic: str                   # catalogue name
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    headers: list[tuple[str, bytes | None]]
    value: bytes | None
    attested: str | None = None  # a person's act: who signed it, as the auditor verified it (attest below)


def header(crossing: Crossing, name: str) -> str | None:
    found = next((v for k, v in crossing.headers if k == name and v is not None), None)
    return found.decode("utf-8", "replace") if found is not None else None


def attest(value: dict, verdict: Verdict) -> str | None:
    """The actor of a message that may be a person's signed act: `ana (signed, key 1a2b…)` when its signature
    verifies, `unverified ana: <why>` when it does not, None when it names no signer (a service's act)."""
    if not value.get("signer"):
        return None
    if verdict.refusal:
        return f"unverified {value['signer']}: {verdict.refusal}"
    return f"{verdict.signer} (signed, key {verdict.signer_key})"


def audit_record(crossing: Crossing, sequence: int, now_ms: int) -> dict:
    """The record before sealing. The actor is the verified signer of a person's act, else the event's
    ce_source (the service or application that sent it)."""
    return {"sequence": sequence, "audited_at": now_ms, "source_topic": crossing.topic,
            "source_partition": crossing.partition, "source_offset": crossing.offset,
            "source_timestamp": crossing.timestamp_ms, "key": crossing.key,
            "headers": [{"key": k, "value": v} for k, v in crossing.headers], "value": crossing.value,
            "actor": crossing.attested or header(crossing, "ce_source") or "unknown", "record_type": header(crossing, "ce_type")}


def append(head: ChainHead, crossings: list[Crossing], now_ms: int, checkpoint_every: int) -> tuple[ChainHead,
                                                                                                    list[Event]]:
    """Seal each crossing onto the chain; the new head and the events to publish (records, checkpoints)."""
    events = []
    for crossing in crossings:
        record = seal(audit_record(crossing, head.sequence + 1, now_ms), head.hash)
        head = ChainHead(record["sequence"], record["hash"])
        events.append(Event("mlbus.AuditRecord", record, key=crossing.topic,
                            id=derive_id("audit", crossing.topic, crossing.partition, crossing.offset)))
        if checkpoint_every and head.sequence % checkpoint_every == 0:
            events.append(checkpoint(head, now_ms))
    return head, events


def checkpoint(head: ChainHead, now_ms: int) -> Event:
    return Event("mlbus.AuditCheckpoint", {"sequence": head.sequence, "hash": head.hash, "checkpoint_at": now_ms},
                 key="audit.log", id=derive_id("audit-checkpoint", head.sequence))
