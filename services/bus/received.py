"""Decoding a Kafka message into what a handler or a projection sees."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, cast

from confluent_kafka import Message

from .consumed import position
from .context import Bus
from .envelope import Envelope, derive_id, from_headers
from .errors import WrongRecordType
from .invariants import check_record, is_edge
from .records import RECORD_TYPES


@dataclass(frozen=True)
class Received:
    """A decoded input message."""

    topic: str                   # catalogue name (without namespace)
    partition: int
    offset: int
    timestamp_ms: int
    key: str | None
    record: str                  # Avro full name
    value: dict
    envelope: Envelope

    @cached_property
    def typed(self) -> Any:
        """The record as its generated dataclass (services/bus/records.py), e.g. a DataBatch."""
        record_type: Any = RECORD_TYPES[self.record]      # a generated dataclass, with from_avro()
        return record_type.from_avro(self.value)


def decode_message(bus: Bus, message: Message) -> Received:
    """Raises DecodeError (a BadInput) when the bytes are not a record the catalogue can read,
    WrongRecordType when the record is not of its topic's type, and InvalidField when a field breaks an
    invariant (invariants.py)."""
    physical, partition, offset = position(message)
    topic = bus.catalogue.logical(physical)
    record, value = bus.schemas.decode(message.value())        # a tombstone (None) is a DecodeError
    carried = bus.catalogue.topics.get(topic)
    if carried is not None and carried.schema is not None and record != carried.schema:
        raise WrongRecordType(f"{topic} carries {carried.schema} records, not {record}")
    check_record(record, value, carried is not None and is_edge(carried))
    key = message.key()
    # A consumed message's headers are (key, bytes) pairs; the stubs also allow the dict a producer may pass.
    headers = cast("list[tuple[str, bytes | None]] | None", message.headers())
    return Received(topic=topic, partition=partition, offset=offset,
                    timestamp_ms=message.timestamp()[1], key=key.decode("utf-8", "replace") if key else None,
                    record=record, value=value, envelope=from_headers(
                        headers, lambda: derive_id(topic, partition, offset), record))
