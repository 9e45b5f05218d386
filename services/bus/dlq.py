"""Dead letters: the original message byte for byte on `<topic>.dlq`, the reason in headers."""
from __future__ import annotations

import re

from confluent_kafka import Message

from .catalogue import DLQ_SUFFIX
from .consumed import digest, headers_of, message_size, position
from .envelope import now_rfc3339

MAX_REASON_CHARS = 2000
SECRET_PATTERN = re.compile(r"(?i)((?:password|passwd|secret|token|api[_-]?key)\s*[=:]\s*)\S+")


def scrub(text: str, secrets: list[str]) -> str:
    """Remove secrets from an error message before it leaves the process."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "******")
    return SECRET_PATTERN.sub(r"\1******", text)[:MAX_REASON_CHARS]


DLQ_BYTES = (1 << 20) + (60 << 10)        # under a DLQ's cap (1 MiB + 64 KiB), the reason (under 3 KiB) included


def dead_letter(message: Message, logical_topic: str, service: str, stage: str, error: BaseException,
                secrets: list[str]) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]]]:
    """(key, value, headers) of the message's dead letter: its key, value and headers untouched, followed by the
    dlq.* headers that say where it came from and why. A message larger than a DLQ takes (decompressed: a topic
    caps only the compressed size, and the sender may have compressed better than we do) is stood in for by
    its size and SHA-256 (`dlq.original.size`, `dlq.original.sha256`): a dead letter that cannot be sent would
    stop the service."""
    _, partition, offset = position(message)
    key, value, original = message.key(), message.value(), headers_of(message)
    if (size := message_size(message)) > DLQ_BYTES:
        key, value, original = None, None, [("dlq.original.size", str(size).encode()),
                                            ("dlq.original.sha256", digest(message).encode())]
    return key, value, reason_headers(original, logical_topic, partition, offset, message.timestamp()[1], service,
                                      stage, error, secrets)


def reason_headers(original: list, logical_topic: str, partition: int, offset: int, timestamp_ms: int, service: str,
                   stage: str, error: BaseException, secrets: list[str]) -> list[tuple[str, bytes | None]]:
    """The original headers followed by the dlq.* headers (dead_letter's)."""
    reason = {
        "dlq.original.topic": logical_topic,
        "dlq.original.partition": str(partition),
        "dlq.original.offset": str(offset),
        "dlq.original.timestamp": str(timestamp_ms),
        "dlq.service": service,
        "dlq.stage": stage,
        "dlq.error.class": type(error).__name__,
        "dlq.error.message": scrub(str(error), secrets),
        "dlq.time": now_rfc3339(),
    }
    return original + [(k, v.encode()) for k, v in reason.items()]


def dlq_topic(logical_topic: str) -> str:
    return logical_topic + DLQ_SUFFIX
