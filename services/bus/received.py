"""Decoding a Kafka message into what a handler or a projection sees."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, KafkaException, Message

from .consumed import headers_of, message_size, position
from .context import Bus
from .envelope import Envelope, derive_id, from_headers
from .edge import CONTROL, MAX_IDENTIFIER, MAX_RECORD_BYTES, InvalidField, check_record, is_edge
from .errors import BadInput, DecodeError, InfrastructureError, WrongRecordType
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
    stamped_by_broker: bool = False     # timestamp_ms is the broker's LogAppendTime, not a time the producer chose

    @cached_property
    def typed(self) -> Any:
        """The record as its generated dataclass (services/bus/records.py), e.g. a DataBatch."""
        record_type: Any = RECORD_TYPES[self.record]      # a generated dataclass, with from_avro()
        return record_type.from_avro(self.value)


def decode_message(bus: Bus, message: Message) -> Received:
    """The one edge every consumed message passes, whatever its bytes, key or headers: a Received, or a
    BadInput saying why not — DecodeError when the bytes are not a record the catalogue can read,
    WrongRecordType when the record is not of its topic's type, InvalidField when a field breaks an
    invariant (edge.py). Nothing else comes out but the broker's own failures (KafkaException,
    InfrastructureError: the schemas topic could not be read), which must crash the service."""
    try:
        return _decode(bus, message)
    except (BadInput, KafkaException, InfrastructureError):
        raise
    except Exception as error:          # noqa: BLE001 - whatever else the bytes made a library raise
        raise DecodeError(f"cannot be read: {type(error).__name__}: {str(error)[:300]}") from None


def _decode(bus: Bus, message: Message) -> Received:
    physical, partition, offset = position(message)
    topic = bus.catalogue.logical(physical)
    payload = message.value()
    if (size := message_size(message)) > MAX_RECORD_BYTES:
        raise DecodeError(f"{size:,} bytes decompressed (key, value, headers): a message holds at most "
                          f"{MAX_RECORD_BYTES:,}")
    record, value = bus.schemas.decode(payload)        # a tombstone (None) is a DecodeError
    carried = bus.catalogue.topics.get(topic)
    if carried is not None and carried.schema is not None and record != carried.schema:
        raise WrongRecordType(f"{topic} carries {carried.schema} records, not {record}")
    check_record(record, value, carried is not None and is_edge(carried))
    key = message.key()
    envelope = from_headers(headers_of(message), lambda: derive_id(topic, partition, offset), record)
    for name in ("id", "source", "type", "subject", "correlation_id", "causation_id", "traceparent", "time"):
        text = getattr(envelope, name)
        if text is not None and (len(text) > MAX_IDENTIFIER or CONTROL.search(text)):
            raise InvalidField(f"header for the envelope's {name} is longer than {MAX_IDENTIFIER} characters or "
                               f"holds a control character: {text[:80]!r}")
    return Received(topic=topic, partition=partition, offset=offset,
                    timestamp_ms=message.timestamp()[1], key=key.decode("utf-8", "replace") if key else None,
                    record=record, value=value, envelope=envelope,
                    stamped_by_broker=message.timestamp()[0] == TIMESTAMP_LOG_APPEND_TIME)

