"""Dead letters: the original message byte for byte on `<topic>.dlq`, the reason in headers."""
from __future__ import annotations

import re

from confluent_kafka import Message

from .catalogue import DLQ_SUFFIX
from .consumed import position
from .envelope import now_rfc3339

MAX_REASON_CHARS = 2000
SECRET_PATTERN = re.compile(r"(?i)((?:password|passwd|secret|token|api[_-]?key)\s*[=:]\s*)\S+")


def scrub(text: str, secrets: list[str]) -> str:
    """Remove secrets from an error message before it leaves the process."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "******")
    return SECRET_PATTERN.sub(r"\1******", text)[:MAX_REASON_CHARS]


def dead_letter_headers(message: Message, logical_topic: str, service: str, stage: str,
                        error: BaseException, secrets: list[str]) -> list[tuple[str, bytes]]:
    """The original headers, untouched, followed by the dlq.* headers that say where it came from and why."""
    _, partition, offset = position(message)
    return reason_headers(list(message.headers() or []), logical_topic, partition, offset,
                          message.timestamp()[1], service, stage, error, secrets)


def reason_headers(original: list, logical_topic: str, partition: int, offset: int, timestamp_ms: int,
                   service: str, stage: str, error: BaseException, secrets: list[str]) -> list[tuple[str, bytes]]:
    """dead_letter_headers for any client (the drift-watcher's faust consumer too)."""
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
