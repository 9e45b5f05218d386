"""The signed checkpoint of all of a sharded log's shard heads (issue 34), pure apart from the Ed25519 primitives:
one RFC 9162 tree over the shards' newest signed heads, signed as a tree head of its own log id `<log>/shards`.

Its leaves are one per shard, in shard order 0..P-1: the shard, the tree_size and the root_hash of that shard's
newest signed head (size 0 and the empty tree's root for a shard that has signed none yet: the empty tree is a
prefix of every tree). A leaf's bytes are the JSON, sorted keys, no spaces, of
    {"root_hash": hex, "shard": int, "tree_size": int, "version": "mlbus-shard-head/1"}
and the signed head is an ordinary tree head (tree_head.py) with log id `<log>/shards`, tree_size P and the root
over those leaves: `<log>/shards` is no shard's log id (shards.shard_of_log_id), so it cannot pass for a shard's
head, nor a shard's for it. One signature, one witness co-signature and one anchor line then vouch for every shard
at once, and an inclusion proof (shard_head_proof) shows any one shard's head in it.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Iterable, Mapping, Sequence

from . import merkle
from .shards import shard_log_id
from .tree_head import LogKey, TreeHead, signature_problem

LEAF_VERSION = "mlbus-shard-head/1"
EMPTY_ROOT = merkle.root([]).hex()
_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


def combined_log_id(log: str) -> str:
    """The log id the signed checkpoint of all of a log's shard heads carries."""
    return f"{log}/shards"


@dataclass(frozen=True)
class ShardHead:
    """One leaf: a shard's newest signed head as its size and root."""

    shard: int
    tree_size: int
    root_hash: str                  # hex

    def leaf_bytes(self) -> bytes:
        return _JSON.encode({"root_hash": self.root_hash, "shard": self.shard, "tree_size": self.tree_size,
                             "version": LEAF_VERSION}).encode()

    def leaf_hash(self) -> bytes:
        return merkle.leaf_hash(self.leaf_bytes())

    def as_json(self) -> dict:
        return {"shard": self.shard, "tree_size": self.tree_size, "root_hash": self.root_hash}


@dataclass(frozen=True)
class CombinedHead:
    """The signed head over every shard's head, with the leaves it was made from."""

    signed: TreeHead
    leaves: tuple[ShardHead, ...]

    def as_json(self) -> dict:
        return {"head": asdict(self.signed), "shard_heads": [leaf.as_json() for leaf in self.leaves]}

    @classmethod
    def from_json(cls, value: dict) -> "CombinedHead":
        """From as_json's form (the witness's state) — ValueError if it is not one."""
        return cls(TreeHead.from_json(value.get("head") or {}), leaves_from_json(value.get("shard_heads")))


def leaves_from_json(value: object) -> tuple[ShardHead, ...]:
    """The leaves as a checkpoint or a state file lists them (ValueError when they are not)."""
    if not isinstance(value, list):
        raise ValueError(f"shard heads are a list, not {type(value).__name__}")
    try:
        return tuple(ShardHead(int(v["shard"]), int(v["tree_size"]), str(v["root_hash"])) for v in value)
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"not a shard head: {error!r}") from None


def shard_leaves(newest: Mapping[int, TreeHead], shards: int) -> tuple[ShardHead, ...]:
    """The leaves for a log of `shards` shards from each shard's newest signed head (a shard missing from
    `newest`: size 0, the empty root)."""
    return tuple(ShardHead(k, newest[k].tree_size, newest[k].root_hash) if k in newest
                 else ShardHead(k, 0, EMPTY_ROOT) for k in range(shards))


def combined_root(leaves: Sequence[ShardHead]) -> str:
    """The RFC 9162 root (hex) over the leaves."""
    return merkle.root([leaf.leaf_hash() for leaf in leaves]).hex()


def sign_combined(key: LogKey, log: str, leaves: Sequence[ShardHead], now_ms: int) -> CombinedHead:
    """The auditor's signed checkpoint of these shard heads (what the copy running shard 0 emits)."""
    return CombinedHead(key.sign(combined_log_id(log), len(leaves), combined_root(leaves), now_ms), tuple(leaves))


def combined_problem(combined: CombinedHead, log: str, log_keys: dict[str, bytes],
                     shard_heads: Iterable[TreeHead], shards: int | None = None) -> str | None:
    """Why a combined head does not hold (None when it does): its log id, its signature, its size (the log's
    `shards`, when known: one that leaves a shard out vouches for nothing about it), its leaves (one per shard in
    order, as many as its size, hashing to its root), and every leaf a head of that shard signed by a log key among
    `shard_heads` (or the empty tree)."""
    signed = combined.signed
    if signed.log_id != combined_log_id(log):
        return f"the combined head is of another log ({signed.log_id}, not {combined_log_id(log)})"
    if problem := signature_problem(signed, log_keys):
        return f"the combined head of {signed.tree_size} shards: {problem}"
    if shards is not None and signed.tree_size != shards:
        return f"the combined head covers {signed.tree_size} shards, but audit.log has {shards}"
    if [leaf.shard for leaf in combined.leaves] != list(range(signed.tree_size)) or not combined.leaves:
        return (f"the combined head of {signed.tree_size} shards lists shards "
                f"{[leaf.shard for leaf in combined.leaves]}, not each of 0..{signed.tree_size - 1} once in order")
    if combined_root(combined.leaves) != signed.root_hash:
        return f"the combined head signs root {signed.root_hash[:16]}…, but its shard heads hash to another"
    held = {(h.log_id, h.tree_size, h.root_hash) for h in shard_heads if signature_problem(h, log_keys) is None}
    for leaf in combined.leaves:
        if leaf.tree_size == 0 and leaf.root_hash != EMPTY_ROOT:
            return f"shard {leaf.shard}'s empty tree is given root {leaf.root_hash[:16]}…, not the empty tree's"
        if leaf.tree_size and (shard_log_id(log, leaf.shard), leaf.tree_size, leaf.root_hash) not in held:
            return (f"shard {leaf.shard}'s head of size {leaf.tree_size} (root {leaf.root_hash[:16]}…) in the "
                    f"combined head is no head of that shard signed by a log key")
    return None


def shard_head_proof(combined: CombinedHead, shard: int) -> list[bytes]:
    """The RFC 9162 inclusion proof of a shard's leaf in the combined head."""
    return merkle.inclusion_proof(shard, [leaf.leaf_hash() for leaf in combined.leaves])


def shard_head_included(head: ShardHead, combined: TreeHead, proof: Sequence[bytes]) -> bool:
    """Whether `proof` shows this shard head is leaf `head.shard` of the combined head (checked offline)."""
    return merkle.verify_inclusion(head.leaf_hash(), head.shard, combined.tree_size, proof,
                                   bytes.fromhex(combined.root_hash))


def combined_of_checkpoint(checkpoint: dict) -> CombinedHead:
    """A combined head as an AuditCheckpoint carries it: log id `<log>/shards`, sequence P, and its leaves in
    `shard_heads` (ValueError when it is none)."""
    signed = TreeHead.from_json({**checkpoint, "tree_size": checkpoint.get("sequence"),
                                 "timestamp": checkpoint.get("signed_at")})
    return CombinedHead(signed, leaves_from_json(checkpoint.get("shard_heads")))


def combined_checkpoint(combined: CombinedHead, now_ms: int) -> dict:
    """The AuditCheckpoint value that carries a combined head on audit.checkpoints (keyed by its log id). It has no
    chain and no records of its own, so no frontier or blocks; its chain hash, a field every message must fill with
    a SHA-256 (the edge refuses one that is not 64 hex digits), repeats its root."""
    signed = combined.signed
    return {"sequence": signed.tree_size, "hash": signed.root_hash, "checkpoint_at": now_ms, "log_id": signed.log_id,
            "root_hash": signed.root_hash, "signed_at": signed.timestamp, "key_id": signed.key_id,
            "signature": signed.signature, "frontier": [], "blocks_from": 0, "blocks": [],
            "shard_heads": [leaf.as_json() for leaf in combined.leaves]}
