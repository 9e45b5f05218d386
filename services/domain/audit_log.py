"""Reading audit.log back: its records in sequence order, and the events they hold decoded again with
their writers' schemas. What `mlbus audit` and the registry's rebuild are made of."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterable, Iterator

from .audit import EPOCH
from services.bus.context import Bus
from services.bus.errors import BadInput
from services.bus.replay import read_messages, read_topics
from services.bus.schema_topic import SchemasTopicResolver


@dataclass(frozen=True)
class Audited:
    """One event as audit.log holds it, decoded (record is None for bytes no schema reads, e.g. a DLQ's)."""

    sequence: int
    at: datetime                  # when it was on its topic (source timestamp)
    topic: str
    actor: str
    record: str | None
    value: dict | None
    entry: dict                   # the AuditRecord itself


def audit_records(bus: Bus, records: Iterable[str] | None = None, timeout_s: float = 300.0) -> list[dict]:
    """Every committed AuditRecord, in sequence order (audit.log has one partition); with `records`, only
    those whose event is of these types. audit.log is keyed by source topic and a topic carries one record
    type, so the others are skipped without decoding (replaying decisions does not read the traffic)."""
    wanted = None if records is None else {bus.catalogue.for_schema(r).name.encode() for r in records}
    return [bus.schemas.decode(m.value(), "mlbus.AuditRecord")[1] for m in read_messages(bus, ["audit.log"], timeout_s)
            if wanted is None or m.key() in wanted]


def checkpoints(bus: Bus) -> list[dict]:
    return [r.value for r in read_topics(bus, ["audit.checkpoints"])]


def decoded(bus: Bus, records: Iterable[dict]) -> Iterator[Audited]:
    if bus.schemas.resolver is None:
        bus.schemas.resolver = SchemasTopicResolver(bus)
    for entry in records:
        record, value = None, None
        if entry["value"] is not None and not entry["source_topic"].endswith(".dlq"):
            try:
                record, value = bus.schemas.decode(entry["value"])
            except BadInput:
                pass
            if record is not None and record != _carried(bus, entry["source_topic"]):
                record, value = None, None          # the topic decides the type: a misplaced record folds nowhere
        yield Audited(entry["sequence"], entry_time(entry), entry["source_topic"], entry["actor"], record, value,
                      entry)


def _carried(bus: Bus, source_topic: str) -> str | None:
    topic = bus.catalogue.topics.get(source_topic)
    return topic.schema if topic is not None else None


def entry_time(entry: dict) -> datetime:
    return EPOCH + timedelta(milliseconds=entry["source_timestamp"])
