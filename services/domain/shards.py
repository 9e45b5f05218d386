"""audit.log's shards, pure: which shard audits a source partition, and what a shard's log and data keys are named.

audit.log has P partitions; partition k holds shard k's own hash chain, Merkle tree and signed heads. Shard k
audits a fixed set of source partitions, chosen by (hash(catalogue topic) + partition) mod P, like a Kafka
Streams task: the same partitions whichever auditor copy runs it. P is audit.log's partition count on the broker,
fixed when the topic is made. A log of one partition is today's single chain (a v1 log): shard 0 keeps the log's
own name, its data keys their subjects' names and its consumer group the auditor's, so a v1 log is shard 0 of a
sharded one.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Iterable

KEY_SEPARATOR = "\x00shard-"    # a shard's data key names: subject, this and its number (no subject holds a NUL)
SHARD_NUMBER = re.compile(r"[1-9][0-9]{0,8}", re.ASCII)     # how a shard past 0 is written in names: nothing else
PLACE_NUMBER = re.compile(r"[0-9]{1,18}", re.ASCII)         # a shard or a sequence in a record's place


def _shard_number(text: str) -> int | None:
    """A shard number (1 or more) as names spell it — ASCII digits, no leading zero, at most nine — else None:
    str.isdigit() also takes '²' (int() refuses it) and '١' (int() reads 1, a second name for shard 1), and int()
    refuses more than 4,300 digits; a name read from the bus must never raise, nor alias another."""
    return int(text) if SHARD_NUMBER.fullmatch(text) else None


def shard_of(topic: str, partition: int, shards: int) -> int:
    """The shard that audits this partition of this catalogue topic: the topic's hash plus the partition, mod P,
    so a topic's partitions go round the shards evenly from a place its name decides (a hash of the pair would
    leave a hot topic's partitions bunched on one shard). The same on every machine and in every release:
    SHA-256, not Python's salted hash."""
    if shards < 1:
        raise ValueError(f"audit.log needs at least one partition, not {shards}")
    digest = hashlib.sha256(topic.encode()).digest()
    return (int.from_bytes(digest[:8], "big") + partition) % shards


def owned(partitions: Iterable[tuple[str, int]], shard: int, shards: int) -> list[tuple[str, int]]:
    """The (catalogue topic, partition) pairs shard `shard` audits, in order."""
    return sorted(p for p in partitions if shard_of(p[0], p[1], shards) == shard)


def shard_partitions(partitions: list[tuple[str, int]], erasure_topics: set[str], shard: int,
                     shards: int) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(what shard k audits, what it only reads for erasures): of every audited (catalogue topic, partition), its
    own by shard_of, and the erasure topics' partitions another shard audits."""
    mine = owned(partitions, shard, shards)
    observed = sorted(p for p in partitions if p[0] in erasure_topics and shard_of(p[0], p[1], shards) != shard)
    return mine, observed

def shard_log_id(log: str, shard: int) -> str:
    """The name shard k's signed heads carry: the log's own for shard 0 (a v1 log's heads stay valid), else
    the log's name and `/shard-k`."""
    return log if shard == 0 else f"{log}/shard-{shard}"


def shard_of_log_id(log: str, name: str) -> int | None:
    """The shard a signed head's log id names (None: not one of this log's)."""
    if name == log:
        return 0
    prefix = f"{log}/shard-"
    return _shard_number(name[len(prefix):]) if name.startswith(prefix) else None


def shard_group(group: str, shard: int) -> str:
    """Shard k's consumer group, under the auditor's `group`: the auditor's own for shard 0 (a v1 log's offsets go
    on), `<group>.shard-k` otherwise."""
    return group if shard == 0 else f"{group}.shard-{shard}"


def shard_transactional_id(group: str, shard: int) -> str:
    """Shard k's transactional id, which fences an older runner of it on any copy: for shard 0 the one a v1
    auditor used (`<group>.0`, its default MLBUS_INSTANCE), so an auditor of before shards still running during an
    upgrade is fenced too; `<group>.shard-k` otherwise."""
    return f"{group}.0" if shard == 0 else f"{group}.shard-{shard}"


def key_name(subject: str, shard: int) -> str:
    """The name of shard k's data key for a subject on audit.keys. Each shard makes its own (two shards making
    one subject's key at once would otherwise overwrite each other's, and records sealed under the lost one could
    never be opened); an erasure deletes every shard's."""
    return subject if shard == 0 else f"{subject}{KEY_SEPARATOR}{shard}"


def subject_of_key(name: str) -> tuple[str, int]:
    """(subject, shard) of a data key's name on audit.keys."""
    subject, separator, shard = name.rpartition(KEY_SEPARATOR)
    number = _shard_number(shard) if separator else None
    return (subject, number) if number is not None else (name, 0)


def keys_of_shard(keys: dict[str, bytes], shard: int) -> dict[str, bytes]:
    """Of every data key on audit.keys (by name), shard k's, by subject: what its auditor seals with. Another
    shard's key of the same subject is never used (records it sealed are opened by their own shard's name)."""
    return {subject: key for name, key in keys.items() for subject, owner in [subject_of_key(name)] if owner == shard}


@dataclass(frozen=True)
class ShardAt:
    """Where a record is: its shard and its sequence in that shard's chain (written `k:sequence`; a bare
    sequence is shard 0's, so a v1 log's numbers keep their meaning)."""

    shard: int
    sequence: int

    @classmethod
    def parse(cls, text: str) -> "ShardAt":
        shard, separator, sequence = text.strip().partition(":")
        if not separator:
            shard, sequence = "0", shard
        if not (PLACE_NUMBER.fullmatch(shard) and PLACE_NUMBER.fullmatch(sequence)):
            raise ValueError(f"{text!r} is not a record's place: SEQUENCE (shard 0) or SHARD:SEQUENCE, e.g. 2:1500")
        return cls(int(shard), int(sequence))

    def __str__(self) -> str:
        return f"{self.shard}:{self.sequence}"
