"""Where a consumed message sits, typed. The client's stubs make topic(), partition() and offset() Optional (an
error event may lack them); a message the consumer returned without error() always has all three."""
from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from typing import cast

from confluent_kafka import KafkaError, Message

from .errors import InfrastructureError


@dataclass
class Surveyed:
    """A consumed batch read in one pass: its messages without error (in order), the errors, each partition's
    span of offsets (physical topic, partition, first, last: poison.Span) and how many messages each topic had."""

    good: list[Message] = field(default_factory=list)
    errors: list[KafkaError] = field(default_factory=list)
    spans: list[tuple[str, int, int, int]] = field(default_factory=list)
    per_topic: dict[str, int] = field(default_factory=dict)

    def next_offsets(self) -> dict[tuple[str, int], int]:
        """Where each partition goes on from: its last offset in the batch, plus one."""
        return {(topic, partition): last + 1 for topic, partition, _, last in self.spans}


def survey(messages: list[Message]) -> Surveyed:
    """A batch's positions, counts and errors in one pass over its messages (the runtime took four, ~10 % of the
    auditor's time under load: 2026-12-06). A batch holds each partition's messages in offset order."""
    found = Surveyed()
    first: dict[tuple[str, int], int] = {}
    last: dict[tuple[str, int], int] = {}
    per_topic = found.per_topic
    for message in messages:
        if (error := message.error()) is not None:
            found.errors.append(error)
            continue
        topic, partition, offset = position(message)
        found.good.append(message)
        if (topic, partition) not in first:
            first[(topic, partition)] = offset
        last[(topic, partition)] = offset
        per_topic[topic] = per_topic.get(topic, 0) + 1
    found.spans = [(topic, partition, offset, last[(topic, partition)]) for (topic, partition), offset in first.items()]
    return found


def position(message: Message) -> tuple[str, int, int]:
    """(physical topic, partition, offset) of a message consumed without error (poison.Offset)."""
    topic, partition, offset = message.topic(), message.partition(), message.offset()
    if topic is None or partition is None or offset is None:
        raise InfrastructureError(f"a consumed message without a position ({topic}, {partition}, {offset}): "
                                  "an error event taken for a message?")
    return topic, partition, offset


UNREADABLE_HEADERS = [("mlbus.headers", b"unreadable: a header key is not UTF-8")]
_unreadable: dict[int, Message] = {}         # id(message) → message, for those whose headers could not be read
_KEPT = 1_000
_remembering = threading.Lock()         # the auditor's shard threads remember messages at once
unreadable_messages = _unreadable     # the same dict, for the compiled pager (which only looks in it)


def headers_of(message: Message) -> list[tuple[str, bytes | None]]:
    """A consumed message's headers as (key, bytes) pairs. A header key that is not UTF-8 makes the client
    raise (SystemError) and leaves a broken list behind that must not be read again: such a message is
    remembered, and UNREADABLE_HEADERS stand for its headers from then on — so every reader of a message's
    headers goes through here."""
    if _unreadable.get(id(message)) is message:
        return list(UNREADABLE_HEADERS)
    try:
        # A consumed message's headers are (key, bytes) pairs; the stubs also allow what a producer may pass.
        return cast("list[tuple[str, bytes | None]]", list(message.headers() or []))
    except Exception:                   # noqa: BLE001 - SystemError from the client's C code
        return unreadable(message)


def unreadable(message: Message) -> list[tuple[str, bytes | None]]:
    """Remember a message whose headers the client could not read (headers_of never reads them again):
    UNREADABLE_HEADERS stand for them. The compiled pager, which reads headers itself, hands such a message here.
    The oldest are forgotten past _KEPT, one at a time: a message is read again only after a thousand newer ones
    (clearing them all at once could forget one remembered an instant before, which another shard's thread of the
    auditor had not audited yet, and its headers would be read again)."""
    with _remembering:
        while len(_unreadable) >= _KEPT:
            del _unreadable[next(iter(_unreadable))]
        _unreadable[id(message)] = message
    return list(UNREADABLE_HEADERS)


def wire_size(key: bytes | None, value: bytes | None, headers: list) -> int:
    """The bytes a message holds before compression: key, value and headers (a topic's cap counts them compressed)."""
    return len(key or b"") + len(value or b"") + sum(len(k.encode()) + len(v or b"") for k, v in headers)


def message_size(message: Message) -> int:
    """wire_size of a consumed message."""
    return wire_size(message.key(), message.value(), headers_of(message))


def digest(message: Message) -> str:
    """SHA-256 of a message's key, value and headers, in that order: what stands for a message too large to keep."""
    hashed = hashlib.sha256(message.key() or b"")
    hashed.update(message.value() or b"")
    for k, v in headers_of(message):
        hashed.update(k.encode() + (v or b""))
    return hashed.hexdigest()
