"""The export bridge's pure decisions: names, the copy of a record's value, the copy topic's settings, when it has
caught up. No I/O, no clock."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterable, Mapping

from services.bus.codec import CONFLUENT_HEADER_LEN, confluent_prefix

TARGETS = ("confluent",)
# Copies keep each record's own time (the source's, which the broker may have stamped): the producer's timestamp
# is taken as it is, so the copy's topic must not stamp its own.
SOURCE_ONLY_CONFIG = ("message.timestamp.type",)

Key = tuple[str, int]          # (physical topic, partition)


def copied_value(payload: bytes, header_len: int, registry_id: int | None) -> bytes:
    """Confluent's framing of a record the codec placed: 00 + the writer schema's registry id + the SAME body
    bytes (nothing decoded and written again); a record already in Confluent's framing (registry_id None) as is."""
    if header_len == CONFLUENT_HEADER_LEN and registry_id is None:
        return payload
    if registry_id is None:
        raise ValueError("a single-object encoded record needs the registry id of its writer schema")
    return confluent_prefix(registry_id) + payload[header_len:]


def copy_config(source_config: Mapping[str, str]) -> dict[str, str]:
    """The copy topic's settings: the source's (retention, size caps, cleanup), but the time it stamps."""
    return {key: value for key, value in source_config.items() if key not in SOURCE_ONLY_CONFIG}


def bridge_name(topics: Iterable[str], target: str) -> str:
    """The consumer group and transactional id suffix of a bridge over this set of topics: stable for the set (a
    restarted bridge fences its zombie and resumes from its committed offsets), distinct for another set."""
    chosen = sorted(set(topics))
    return f"export.{target}." + hashlib.sha256(f"{target}:{','.join(chosen)}".encode()).hexdigest()[:16]


def next_offsets(positions: Iterable[tuple[str, int, int]]) -> dict[Key, int]:
    """The offsets to commit for a batch: per partition, one past the last record handled."""
    offsets: dict[Key, int] = {}
    for topic, partition, offset in positions:
        offsets[(topic, partition)] = max(offset + 1, offsets.get((topic, partition), -1))
    return offsets


def first_offsets(positions: Iterable[tuple[str, int, int]]) -> dict[Key, int]:
    """Where to read a batch again after an aborted transaction: per partition, its first record."""
    first: dict[Key, int] = {}
    for topic, partition, offset in positions:
        first.setdefault((topic, partition), offset)
    return first


def caught_up(ends: Mapping[Key, int], targets: Mapping[Key, int]) -> bool:
    """Whether every partition's reader reached the end it had when the bridge started (ends: where the consumer
    last reported reaching a partition's end)."""
    return all(ends.get(key, -1) >= target for key, target in targets.items())


def foreign_copies(committed: Mapping[Key, int], copy_ends: Mapping[Key, int]) -> list[Key]:
    """Source partitions this bridge never committed whose copy has offsets in use: another bridge (another set of
    topics, another group) may have written them, and starting from the source's beginning would copy them twice
    (or a predecessor killed before its first commit left only an aborted transaction: the bridge reads to see)."""
    return sorted(key for key, offset in committed.items() if offset < 0 and copy_ends.get(key, 0) > 0)


@dataclass(frozen=True)
class Tally:
    copied: int = 0
    dead_lettered: int = 0

    def plus(self, copied: int, dead_lettered: int) -> "Tally":
        return Tally(self.copied + copied, self.dead_lettered + dead_lettered)
