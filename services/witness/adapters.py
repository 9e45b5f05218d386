"""The witness's own state directory (MLBUS_WITNESS_DIR, default var/witness/, mode 0700): its Ed25519 key (made
here at its first start, 0600), its public key and enrolment for the admin to declare, the last head it co-signed
of each shard (what every new head of that shard must extend: shard 0's in last.json, as before shards, so a
witness of a one-partition log reads its old state unchanged; shard k's in last.shard-k.json), the last combined
head of all shard heads it co-signed, and the list of every co-signature it made. Nothing in it comes from the bus."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Iterator

from confluent_kafka import Consumer, KafkaException, TopicPartition

from services.bus import BadInput, Bus, Received
from services.bus.edge import content
from services.bus.kafka import base_config, group_id
from services.bus.logs import get_logger
from services.bus.received import decode_message
from services.bus.signing import prove_possession
from services.domain import (BLOCK, CombinedHead, Cosignature, Frontier, Leaves, LogKey, ProofError, Tiled,
                             TreeHead, consistency_path, leaf)
from services.adapters import WITNESS_ENROLMENT_FILE, WITNESS_PUBLIC_KEY_FILE, proof_tree, records_between

KEY_FILE, LAST_FILE, COSIGNED_FILE = "witness.ed25519", "last.json", "cosigned.jsonl"
COMBINED_FILE = "last.shards.json"      # the last combined head of every shard's head co-signed, with its leaves


class WitnessState:
    def __init__(self, directory: Path, name: str = "witness"):
        self.directory = directory
        self.name = name

    def key(self) -> LogKey:
        """The witness's key, made at its first start; its public key and enrolment written beside it."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.directory / KEY_FILE
        key = LogKey.load(path) if path.exists() else LogKey.create(path)
        if not (self.directory / WITNESS_ENROLMENT_FILE).exists():
            # The proof of possession, as people and services enrol their keys (signing.prove_possession).
            kid, public, proof = prove_possession(self.name, key.private.private_bytes_raw())
            _write(self.directory / WITNESS_PUBLIC_KEY_FILE, key.public_pem().decode())
            _write(self.directory / WITNESS_ENROLMENT_FILE, json.dumps(
                {"name": self.name, "key_id": kid, "public_key": public, "proof": proof}) + "\n")
        return key

    def last(self, shard: int = 0) -> TreeHead | None:
        """The last head of this shard this witness co-signed (None before its first)."""
        path = self.directory / last_file(shard)
        return TreeHead.from_json(content(path.read_text())) if path.exists() else None

    def cosigned(self, head: TreeHead, cosignature: Cosignature, shard: int = 0) -> None:
        """Remember a co-signature: appended to the list, and its head as the one the shard's next must extend."""
        self._listed(cosignature)
        _write(self.directory / last_file(shard), head.line() + "\n")

    def combined(self) -> CombinedHead | None:
        """The last combined head of every shard's head this witness co-signed (None before its first)."""
        path = self.directory / COMBINED_FILE
        return CombinedHead.from_json(content(path.read_text())) if path.exists() else None

    def combined_cosigned(self, combined: CombinedHead, cosignature: Cosignature) -> None:
        """Remember a co-signature of a combined head: listed, and the head kept with its leaves."""
        self._listed(cosignature)
        _write(self.directory / COMBINED_FILE, json.dumps(combined.as_json(), sort_keys=True) + "\n")

    def _listed(self, cosignature: Cosignature) -> None:
        fd = os.open(self.directory / COSIGNED_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, (json.dumps(cosignature.as_json(), sort_keys=True) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)


def last_file(shard: int) -> str:
    """Where the last co-signed head of a shard is kept: shard 0's where a single log's always was."""
    return LAST_FILE if shard == 0 else f"last.shard-{shard}.json"


def _write(path: Path, text: str) -> None:
    """Whole or not at all: a crash leaves the old file (written aside, fsync'd, renamed over it)."""
    aside = path.with_name(path.name + ".new")
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(aside, path)


def evidence(bus: Bus, kept: list[dict], last: TreeHead | None, head: TreeHead,
             whole: bool = False, shard: int = 0) -> tuple[list[bytes] | None, str | None]:
    """What the witness checks a shard's head with: (the RFC 9162 consistency proof between the smaller and the
    larger of `last` and `head`, None), or at its first head (None, the root of the shard's first tree_size records
    as it recomputes them). A proof is made from the shard's checkpoints (`kept`) block hashes and a few records,
    or (whole) from every record up to the larger head. (None, None) when it cannot be made now."""
    if last is None:
        records = records_between(bus, 1, head.tree_size, shard=shard)
        frontier = Frontier()
        for record in records:
            frontier.append(leaf(record))
        return None, frontier.root().hex() if len(records) == head.tree_size else f"of {len(records)} records only"
    small, large = sorted((last.tree_size, head.tree_size))
    if small == large:
        return [], None                     # the same size: the roots must be equal, no tree needed
    try:
        tree = (Leaves([leaf(r) for r in records_between(bus, 1, large, shard=shard)]) if whole
                else proof_tree(bus, kept, large, {(small - 1) // BLOCK}, shard))
        return consistency_path(small, large, tree if isinstance(tree, (Leaves, Tiled)) else Leaves(tree)), None
    except ProofError:
        return None, None


def follow_checkpoints(bus: Bus, stopping: Callable[[], bool]) -> Iterator[list[Received]]:
    """audit.checkpoints from its start (the block hashes of every checkpoint make the proofs), read_committed,
    a batch at a time as they come; a message that is no AuditCheckpoint is refused loudly (a forgery)."""
    topic = bus.catalogue.physical("audit.checkpoints")
    consumer = Consumer({**base_config(bus.settings), "group.id": group_id(bus.settings, "follow"),
                         "enable.auto.commit": False, "isolation.level": "read_committed"})
    consumer.assign([TopicPartition(topic, 0, 0)])
    try:
        while not stopping():
            batch = []
            for message in consumer.consume(500, 0.5):
                if message.error():
                    raise KafkaException(message.error())
                try:
                    batch.append(decode_message(bus, message))
                except BadInput as error:
                    get_logger(component="witness").critical("message on audit.checkpoints REFUSED: no checkpoint",
                                                             offset=message.offset(), reason=str(error))
            if batch:
                yield batch
    finally:
        consumer.close()
