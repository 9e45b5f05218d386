"""librdkafka settings for mlbus's producers, consumers and admin clients, in one place: the broker's
address, the process's credentials (credentials.py), then MLBUS_KAFKA_* settings
(Settings.connection.kafka_overrides), applied last so they win over these defaults."""
from __future__ import annotations

from typing import Mapping

from .credentials import client_credentials
from .settings import Settings


def group_id(settings: Settings, purpose: str = "") -> str:
    """Consumer groups and transactional ids live under `<ns>mlbus.<principal>[.purpose]`: where the
    principal's ACLs allow it (access.py)."""
    base = f"{settings.connection.namespace}mlbus.{settings.connection.client_principal}"
    return f"{base}.{purpose}" if purpose else base


def base_config(settings: Settings) -> dict:
    # librdkafka leaves Nagle's algorithm on (the Java client does not): a small request sent while another is
    # unacknowledged waits for the broker's delayed ACK, ~40 ms. Measured on the local broker at 1,000 msgs/s:
    # produce → consume p50 65-72 ms with it, 4-6 ms without; a transaction's commit 38-43 ms → 4-7 ms.
    return {"bootstrap.servers": settings.bootstrap, "socket.nagle.disable": True, **client_credentials(settings),
            **settings.connection.kafka_overrides}


# topics.yaml caps messages at 1 MiB (DLQs 1 MiB + 64 KiB, audit.log 2 MiB + 256 KiB). A batch of several
# messages stays under the smallest cap; a single message may be as large as the largest, and a topic's own cap
# refuses it there (a delivery error, not a batch that takes good messages down with it).
MAX_BATCH_BYTES = 1_000_000
MAX_REQUEST_BYTES = 4 * 1024 * 1024


def producer_config(settings: Settings, client_id: str, transactional_id: str | None = None) -> dict:
    config = {**base_config(settings), "client.id": client_id,
              "enable.idempotence": True, "acks": "all", "linger.ms": 5,
              "compression.type": "lz4", "message.max.bytes": MAX_REQUEST_BYTES, "batch.size": MAX_BATCH_BYTES}
    if transactional_id:
        config["transactional.id"] = transactional_id
        config["transaction.timeout.ms"] = 60_000
        # Right after a commit the broker may answer CONCURRENT_TRANSACTIONS while it writes the markers;
        # librdkafka retries after retry.backoff.ms (100 ms by default), which showed as ~100 ms gaps.
        config["retry.backoff.ms"] = 10
    return {**config, **_for_producers(settings.connection.kafka_overrides)}


def consumer_config(settings: Settings, group: str, client_id: str, read_committed: bool = True) -> dict:
    config = {**base_config(settings), "group.id": group, "client.id": client_id,
              "enable.auto.commit": False, "enable.auto.offset.store": False,
              "auto.offset.reset": "earliest",
              "isolation.level": "read_committed" if read_committed else "read_uncommitted",
              "partition.assignment.strategy": "cooperative-sticky",
              # A crashed member is noticed in 10 s (the broker's minimum is 6 s), so its partitions move on.
              "session.timeout.ms": 10_000, "heartbeat.interval.ms": 2_000, "max.poll.interval.ms": 300_000,
              # Bound the prefetch queue so a slow consumer's memory stays small. Once it is full, librdkafka
              # waited 1 s (fetch.queue.backoff.ms) before fetching again: the auditor, reading 5,000 messages a
              # batch, then waited for data it could have had (append +10-15 %, two alternating runs, 2026-12-07).
              "queued.max.messages.kbytes": 16_384, "fetch.queue.backoff.ms": 10}
    return {**config, **settings.connection.kafka_overrides}


def admin_config(settings: Settings) -> dict:
    return base_config(settings)


CONSUMER_ONLY = ("session.timeout.ms", "heartbeat.interval.ms", "max.poll.interval.ms", "group.", "isolation.level",
                 "auto.offset.reset", "fetch.", "queued.", "partition.assignment")


def _for_producers(overrides: Mapping[str, str]) -> dict:
    """Consumer settings from the environment are left out of producers (librdkafka would warn)."""
    return {k: v for k, v in overrides.items() if not k.startswith(CONSUMER_ONLY)}
