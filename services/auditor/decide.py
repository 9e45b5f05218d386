"""The auditor's decisions, pure: one sealed AuditRecord per message that crossed the bus, in order, each a
leaf of the Merkle tree, and a signed tree head (a checkpoint) every `checkpoint_every` records."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from services.bus import Event, derive_id
from services.domain import BLOCK, ChainHead, Frontier, Seal, TreeHead, python_seal
from services.bus.signing import Verdict

Sign = Callable[[int, str, int], TreeHead]      # (tree size, root hex, time ms) → the auditor's signed head


@dataclass(frozen=True)
class Crossing:
    """A message as it was on its topic: the bytes and headers untouched."""

    topic: str                   # catalogue name
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    headers: list[tuple[str, bytes | None]]
    value: bytes | None
    attested: str | None = None  # a person's act: who signed it, as the auditor verified it (attest below)
    sealed: dict | None = None   # personal data: the original value encrypted (value is then it redacted)


def header(crossing: Crossing, name: str) -> str | None:
    found = next((v for k, v in crossing.headers if k == name and v is not None), None)
    return found.decode("utf-8", "replace") if found is not None else None


def attest(value: dict, verdict: Verdict) -> str | None:
    """The actor of a message that may be a person's signed act: `ana (signed, key 1a2b…)` when its signature
    verifies, `unverified ana: <why>` when it does not, None when it names no signer (a service's act)."""
    if not value.get("signer"):
        return None
    if verdict.refusal:
        return f"unverified {value['signer']}: {verdict.refusal}"
    return f"{verdict.signer} (signed, key {verdict.signer_key})"


def audit_record(crossing: Crossing, sequence: int, now_ms: int) -> dict:
    """The record before sealing. The actor is the verified signer of a person's act, else the event's
    ce_source (the service or application that sent it)."""
    return {"sequence": sequence, "audited_at": now_ms, "source_topic": crossing.topic,
            "source_partition": crossing.partition, "source_offset": crossing.offset,
            "source_timestamp": crossing.timestamp_ms, "key": crossing.key,
            "headers": [{"key": k, "value": v} for k, v in crossing.headers], "value": crossing.value,
            "actor": crossing.attested or header(crossing, "ce_source") or "unknown",
            "record_type": header(crossing, "ce_type"),
            "sealed": crossing.sealed}


@dataclass
class Log:
    """Where the log stands: the chain's head and the Merkle tree's frontier (both at the same record), and
    the hashes of the BLOCK-leaf blocks completed since the last checkpoint (`prove` is built from them)."""

    head: ChainHead = field(default_factory=ChainHead)
    tree: Frontier = field(default_factory=Frontier)
    block: Frontier = field(default_factory=Frontier)      # the block being filled
    blocks: list[bytes] = field(default_factory=list)      # complete blocks not yet in a checkpoint
    blocks_from: int = 0                                   # the index of blocks[0]

    @classmethod
    def resumed(cls, head: ChainHead, tree: Frontier) -> "Log":
        """The log from a checkpoint: every complete block is in a checkpoint already, and the block being
        filled is the frontier's subtrees smaller than a block."""
        partial = tree.size % BLOCK
        return cls(head, tree, Frontier(partial, tree.hashes[len(tree.hashes) - bin(partial).count("1"):]),
                   [], tree.size // BLOCK)

    def add(self, record: dict, leaf: bytes) -> None:
        self.head = ChainHead(record["sequence"], record["hash"])
        self.tree.append(leaf)
        self.block.append(leaf)
        if self.block.size == BLOCK:
            self.blocks.append(self.block.root())
            self.block = Frontier()


def append(log: Log, crossings: list[Crossing], now_ms: int, checkpoint_every: int,
           sign: Sign, seal: Seal = python_seal) -> tuple[list[Event], list[TreeHead]]:
    """Seal each crossing onto the chain and the tree (`log` moves on); the events to publish (records,
    checkpoints) and the signed heads among them, for the anchor once they are committed. `seal` may encode
    the record as it seals it (compiled_seal)."""
    events, heads = [], []
    for crossing in crossings:
        record, leaf, encoded = seal(audit_record(crossing, log.head.sequence + 1, now_ms), log.head.hash)
        log.add(record, leaf)
        events.append(Event("mlbus.AuditRecord", record, key=crossing.topic, encoded=encoded,
                            id=derive_id("audit", crossing.topic, crossing.partition, crossing.offset)))
        if checkpoint_every and log.head.sequence % checkpoint_every == 0:
            event, signed = checkpoint(log, now_ms, sign)
            events.append(event)
            heads.append(signed)
    return events, heads


def checkpoint(log: Log, now_ms: int, sign: Sign) -> tuple[Event, TreeHead]:
    """The signed tree head at the log's last record, as an AuditCheckpoint (with the frontier to resume from
    and the blocks completed since the last one)."""
    signed = sign(log.head.sequence, log.tree.root().hex(), now_ms)
    event = Event("mlbus.AuditCheckpoint", {
        "sequence": log.head.sequence, "hash": log.head.hash, "checkpoint_at": now_ms, "log_id": signed.log_id,
        "root_hash": signed.root_hash, "signed_at": signed.timestamp, "key_id": signed.key_id,
        "signature": signed.signature, "frontier": [h.hex() for h in log.tree.hashes],
        "blocks_from": log.blocks_from, "blocks": [h.hex() for h in log.blocks]},
        key="audit.log", id=derive_id("audit-checkpoint", log.head.sequence))
    log.blocks_from += len(log.blocks)
    log.blocks = []
    return event, signed


def key_created(subject: str, key: bytes, now_ms: int) -> Event:
    return Event("mlbus.DataKey", {"subject": subject, "key": key, "created_at": now_ms}, key=subject,
                 id=derive_id("data-key", subject, key.hex()))


def erasable(value: dict, verdict: Verdict) -> bool:
    """An erasure is carried out only when an admin signed it (refused ones are audited all the same)."""
    return verdict.refusal is None and value.get("signer") == verdict.signer
