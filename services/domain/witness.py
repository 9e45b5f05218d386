"""The witness's co-signatures of the auditor's tree heads, and its decision on each new head (pure apart from the
Ed25519 primitives).

A witness is a second principal with its own key: it co-signs a head only once it has checked the auditor's
signature on it and that the head extends the last head it co-signed (an RFC 9162 consistency proof), or — the
first time — that the head's root is the log's own. A history rewritten behind a co-signed head cannot extend it,
so the witness refuses to co-sign the rewrite: rewriting the log then needs both the auditor's key and the
witness's. The co-signed bytes are the JSON, sorted keys, no spaces, of
    {"cosigned_at", "head_key_id", "head_timestamp", "log_id", "root_hash", "tree_size", "version": COSIGNATURE}
— another version string than the auditor's heads, so neither signature can be passed off as the other.
"""
from __future__ import annotations

import base64
import json
from dataclasses import asdict, dataclass
from typing import Iterable, Mapping, Sequence

from . import merkle
from services.bus.projections.identities import verifies as signature_holds

from .shard_heads import CombinedHead, ShardHead, combined_problem
from .tree_head import LogKey, TreeHead, signature_problem

COSIGNATURE = "mlbus-cosignature/1"
_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class Cosignature:
    """A witness's signature over one of the auditor's heads (what audit.witness carries)."""

    log_id: str
    tree_size: int
    root_hash: str               # hex, the auditor's head's
    head_timestamp: int          # epoch ms: when the auditor signed the head
    head_key_id: str             # the auditor's key that signed it
    cosigned_at: int             # epoch ms: when the witness co-signed it
    witness: str                 # the witness's name
    key_id: str                  # the witness's key
    signature: str               # base64 Ed25519 over signed_bytes()

    def signed_bytes(self) -> bytes:
        return _JSON.encode({"cosigned_at": self.cosigned_at, "head_key_id": self.head_key_id,
                             "head_timestamp": self.head_timestamp, "log_id": self.log_id,
                             "root_hash": self.root_hash, "tree_size": self.tree_size,
                             "version": COSIGNATURE}).encode()

    def covers(self, head: TreeHead) -> bool:
        """Whether this co-signs that head's tree: the same log, size and root."""
        return (self.log_id, self.tree_size, self.root_hash) == (head.log_id, head.tree_size, head.root_hash)

    def as_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, value: dict) -> "Cosignature":
        """A co-signature from audit.witness or a proof document (ValueError if it is not one)."""
        try:
            return cls(**{name: type_(value[name]) for name, type_ in _FIELDS.items()})
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"not a co-signature: {error!r}") from None


_FIELDS = {"log_id": str, "tree_size": int, "root_hash": str, "head_timestamp": int, "head_key_id": str,
           "cosigned_at": int, "witness": str, "key_id": str, "signature": str}


def cosign(key: LogKey, witness: str, head: TreeHead, now_ms: int) -> Cosignature:
    """The witness's co-signature of a head (only once decide() said so)."""
    unsigned = Cosignature(head.log_id, head.tree_size, head.root_hash, head.timestamp, head.key_id, now_ms, witness,
                           key.key_id, "")
    signature = key.private.sign(unsigned.signed_bytes())
    return Cosignature(**{**asdict(unsigned), "signature": base64.b64encode(signature).decode()})


def cosignature_problem(cosignature: Cosignature, witness_keys: dict[str, bytes]) -> str | None:
    """Why a co-signature does not hold under these witness keys (None when it does)."""
    public = witness_keys.get(cosignature.key_id)
    if public is None:
        return f"co-signed by {cosignature.key_id}, which is no trusted witness key"
    if not signature_holds(public, cosignature.signature, cosignature.signed_bytes()):
        return f"the co-signature by witness key {cosignature.key_id} does not verify"
    return None


def second_keys(witness_keys: dict[str, bytes], log_keys: dict[str, bytes]) -> dict[str, bytes]:
    """The witness keys that are no log key (by id or by public key): only those are a second principal."""
    return {k: v for k, v in witness_keys.items() if k not in log_keys and v not in log_keys.values()}


def witness_problem(newest: TreeHead | None, cosignatures: Sequence[Cosignature], witness_keys: dict[str, bytes],
                    log_keys: dict[str, bytes]) -> str | None:
    """Why the newest signed head is not vouched for by a witness (None when a valid co-signature from a trusted
    witness key covers it, or there is no head yet). A witness key that also signs the log's heads is no second
    key and is not counted."""
    if newest is None:
        return None
    keys = second_keys(witness_keys, log_keys)
    if not keys:
        return ("no witness key is trusted (none declared with the role witness on the identities topic, nor given "
                "with --witness-key), so no head is co-signed")
    covering = [c for c in cosignatures if c.covers(newest)]
    if any(cosignature_problem(c, keys) is None for c in covering):
        return None
    why = "; ".join(sorted({p for c in covering if (p := cosignature_problem(c, keys))}))
    return (f"the newest signed head (size {newest.tree_size}, root {newest.root_hash[:16]}…) has no valid "
            f"co-signature by a trusted witness" + (f" ({why})" if why else "")
            + ": is `mlbus audit witness` running? A head it refused is a split view or a rewrite")


def cosignature_due_ms(newest: TreeHead | None, cosignatures: Sequence[Cosignature], witness_keys: dict[str, bytes],
                       log_keys: dict[str, bytes], wait_ms: int, now_ms: int) -> int:
    """How much longer a witness is given to co-sign the newest head (0: no more): a head is given `wait_ms` from
    when it was signed (its timestamp; one in the future counts from now), and only while nothing covers it — a
    co-signature of it that does not verify is an answer, not a delay, and with no trusted witness key there is
    nothing to wait for. Then witness_problem judges, as before."""
    if newest is None or any(c.covers(newest) for c in cosignatures):
        return 0
    if not second_keys(witness_keys, log_keys):
        return 0
    return newest.young_for_ms(wait_ms, now_ms)


def cosigned_beyond(newest: TreeHead | None, cosignatures: Sequence[Cosignature], witness_keys: dict[str, bytes],
                    log_id: str) -> str | None:
    """A trusted witness co-signed a head of this log larger than any head kept: heads were removed from both
    audit.checkpoints and the anchor (or the log's tail truncated with them) — the co-signatures are a second
    record of how far the log went. None when no valid co-signature goes further."""
    size = newest.tree_size if newest is not None else 0
    further = [c for c in cosignatures if c.log_id == log_id and c.tree_size > size
               and cosignature_problem(c, witness_keys) is None]
    if not further:
        return None
    largest = max(further, key=lambda c: c.tree_size)
    return (f"witness key {largest.key_id} co-signed a head of size {largest.tree_size}, but the newest head kept is "
            f"of size {size}: heads were removed from audit.checkpoints and the anchor, or the log was truncated")


@dataclass(frozen=True)
class Decision:
    """What the witness does with a head: co-sign it, skip it (older than what it co-signed, and consistent),
    wait (it cannot check it now: no co-signature), or refuse it (alarm: forged, or inconsistent with what it
    co-signed — a split view or a rewrite)."""

    action: str                  # cosign | skip | wait | refuse
    reason: str


def decide(last: TreeHead | None, head: TreeHead, log_keys: dict[str, bytes], log_id: str,
           proof: Sequence[bytes] | None = None, log_root: str | None = None) -> Decision:
    """The witness's verdict on a head. `last` is the head it co-signed last (None at its first); `proof` the RFC
    9162 consistency proof between the smaller and the larger of `last` and `head`; `log_root` (first head only)
    the root the witness recomputed from the log at the head's size. Without them it cannot check: it waits."""
    if head.log_id != log_id:
        return Decision("refuse", f"the head of size {head.tree_size} is of another log ({head.log_id}, not {log_id})")
    if problem := signature_problem(head, log_keys):
        return Decision("refuse", f"the head of size {head.tree_size}: {problem}")
    if last is None:
        if log_root is None:
            return Decision("wait", f"the head of size {head.tree_size} cannot be checked against the log yet")
        if log_root != head.root_hash:
            return Decision("refuse", f"the head of size {head.tree_size} signs root {head.root_hash[:16]}… but the "
                                      f"log's first {head.tree_size} records hash to {log_root[:16]}…")
        return Decision("cosign", f"the head of size {head.tree_size} matches the log")
    if proof is None and head.tree_size < last.tree_size:
        # Read again at a restart (audit.checkpoints from its start): what came before the co-signed head was
        # checked then, and verify compares every head with the records.
        return Decision("skip", f"the head of size {head.tree_size} is older than the one co-signed "
                                f"({last.tree_size})")
    if proof is None:
        return Decision("wait", f"no consistency proof between sizes {last.tree_size} and {head.tree_size} yet")
    small, large = (last, head) if last.tree_size <= head.tree_size else (head, last)
    if not merkle.verify_consistency(small.tree_size, large.tree_size, bytes.fromhex(small.root_hash),
                                     bytes.fromhex(large.root_hash), proof):
        return Decision("refuse", f"SPLIT VIEW: the head of size {head.tree_size} (root {head.root_hash[:16]}…) is "
                                  f"not consistent with the head of size {last.tree_size} this witness co-signed "
                                  f"(root {last.root_hash[:16]}…): the log was rewritten or forked")
    if head.tree_size < last.tree_size:
        return Decision("skip", f"the head of size {head.tree_size} is older than the one co-signed "
                                f"({last.tree_size}) and consistent with it")
    return Decision("cosign", f"the head of size {head.tree_size} extends the co-signed one of {last.tree_size}")


def decide_combined(combined: CombinedHead, log: str, log_keys: dict[str, bytes], shard_heads: Iterable[TreeHead],
                    cosigned: Mapping[int, TreeHead], last: CombinedHead | None,
                    proofs: Mapping[int, Sequence[bytes]] | None = None, shards: int | None = None) -> Decision:
    """The witness's verdict on a combined head (shard_heads.py): it must hold (signed, its leaves signed heads of
    their shards) and each leaf must be a prefix of the head of its shard this witness co-signed last (`cosigned`):
    that head itself, an older one with the consistency proof between them (`proofs`, by shard), or the empty tree.
    A leaf the witness has not co-signed up to yet makes it wait; a combined head no newer than the last one it
    co-signed (`last`) is skipped. `shards`: audit.log's partitions, which the combined head must cover."""
    if problem := combined_problem(combined, log, log_keys, shard_heads, shards):
        return Decision("refuse", problem)
    if last is not None and combined.signed.root_hash != last.signed.root_hash and _no_newer(combined, last):
        return Decision("skip", f"the combined head at {combined.signed.timestamp} is no newer than the one "
                                f"co-signed ({last.signed.timestamp})")
    for leaf in (leaf for leaf in combined.leaves if leaf.tree_size):
        if (verdict := _leaf_verdict(leaf, cosigned.get(leaf.shard), (proofs or {}).get(leaf.shard))) is not None:
            return verdict
    return Decision("cosign", f"each of the {combined.signed.tree_size} shard heads in the combined head is one "
                              f"co-signed or a prefix of it")


def _no_newer(combined: CombinedHead, last: CombinedHead) -> bool:
    return len(combined.leaves) == len(last.leaves) and all(
        new.tree_size <= old.tree_size for new, old in zip(combined.leaves, last.leaves))


def _leaf_verdict(leaf: ShardHead, cosigned: TreeHead | None, proof: Sequence[bytes] | None) -> Decision | None:
    """Why one shard's leaf stops the combined head from being co-signed (None: it is vouched for)."""
    if cosigned is None or leaf.tree_size > cosigned.tree_size:
        return Decision("wait", f"shard {leaf.shard}'s head of size {leaf.tree_size} is not co-signed yet")
    if leaf.tree_size == cosigned.tree_size:
        if leaf.root_hash == cosigned.root_hash:
            return None
        return Decision("refuse", f"SPLIT VIEW: the combined head gives shard {leaf.shard} root "
                                  f"{leaf.root_hash[:16]}… at size {leaf.tree_size}, the head co-signed "
                                  f"{cosigned.root_hash[:16]}…")
    if proof is None:
        return Decision("wait", f"no consistency proof for shard {leaf.shard} between sizes {leaf.tree_size} and "
                                f"{cosigned.tree_size} yet")
    if not merkle.verify_consistency(leaf.tree_size, cosigned.tree_size, bytes.fromhex(leaf.root_hash),
                                     bytes.fromhex(cosigned.root_hash), proof):
        return Decision("refuse", f"SPLIT VIEW: the combined head's shard {leaf.shard} head of size "
                                  f"{leaf.tree_size} is not a prefix of the one of size {cosigned.tree_size} this "
                                  f"witness co-signed")
    return None
