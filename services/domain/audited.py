"""audit.log's records as a reader holds them, pure: one event decoded (Audited), what a reader may see of its
personal data, when it was on its topic, a checkpoint as the head it claims, the checkpoints' block hashes, and
where a record's page is (an interpolation search over probes its caller makes). The reading itself is
services/adapters/audit_log.py."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable

from .audit import EPOCH, Head
from .erasure import Erasure
from .tree_head import chain_problem, signature_problem, TreeHead


@dataclass(frozen=True)
class Audited:
    """One event as audit.log holds it, decoded (record is None for bytes no schema reads, e.g. a DLQ's)."""

    sequence: int
    at: datetime                  # when it was on its topic (source timestamp)
    topic: str
    actor: str
    record: str | None
    value: dict | None
    entry: dict                   # the AuditRecord itself
    personal: str | None = None   # personal data sealed in it: "readable", "erased" (key deleted), "sealed" (no key),
    #                               "redacted" (this reader may not read audit.keys: not the dpo role)
    erasure: Erasure | None = None    # when it was erased: when, by whom, why
    hidden: tuple[str, ...] = ()  # the personal fields this reader sees blank ("*": the whole value)
    shard: int = 0                # audit.log's partition holding it: its sequence counts in that shard's chain
    sharded: bool = False         # the log has more than one shard: its places are written `shard:sequence`
    erasure_shard: int = 0        # the shard of the record that erased its subject (erasure.audit_sequence's chain)

    @property
    def place(self) -> str:
        """Where the record is, as readers print it: `shard:sequence` in a sharded log, the bare sequence in a
        v1 (one-shard) log, so its numbers read as they always did."""
        return place(self.shard, self.sequence, self.sharded)

    def shown(self) -> dict | None:
        """The value as this reader may see it: each personal field it may not open says so (redacted())."""
        return redacted_fields(self.value, self.hidden) if self.personal == "redacted" else self.value


def place(shard: int, sequence: int, sharded: bool) -> str:
    """A record's place as printed: `shard:sequence` (ShardAt's form) where the log has shards, else the sequence."""
    return f"{shard}:{sequence}" if sharded else str(sequence)


REDACTED = "[redacted: needs the dpo role]"


def redacted_fields(value: dict | None, hidden: Iterable[str]) -> dict | None:
    """The value with each of these fields replaced by the REDACTED marker (a reader without the data keys)."""
    if value is None:
        return None
    return {name: REDACTED if name in hidden else field for name, field in value.items()}


def personal_state(opened: bool, erased: bool, refused: bool) -> str:
    """What a reader sees of a record's personal data: readable, erased (its key deleted by `audit forget`),
    redacted (the broker refuses this reader audit.keys: no dpo role) or sealed (no key, and no erasure)."""
    return "readable" if opened else "erased" if erased else "redacted" if refused else "sealed"


def entry_time(entry: dict) -> datetime:
    """When the audited message was on its topic (a time past what a datetime holds, as a sender may set on a
    topic of CreateTime, reads as the nearest one it holds)."""
    try:
        return EPOCH + timedelta(milliseconds=entry["source_timestamp"])
    except OverflowError:
        return datetime.min.replace(tzinfo=timezone.utc) if entry["source_timestamp"] < 0 else \
            datetime.max.replace(tzinfo=timezone.utc)


def head_of_checkpoint(checkpoint: dict, source: str) -> Head:
    """A checkpoint (from audit.checkpoints or a saved file) as the head it claims: chain hash, and the signed
    tree head when it carries one."""
    try:
        signed = None
        if checkpoint.get("root_hash"):
            signed = TreeHead.from_json({**checkpoint, "tree_size": checkpoint["sequence"],
                                         "timestamp": checkpoint["signed_at"]})
        return Head(source, int(checkpoint["sequence"]), str(checkpoint["hash"]), signed)
    except (KeyError, TypeError, ValueError) as error:
        return Head(source, 0, problem=f"{source}: not a checkpoint ({error!r})")


def committed_problem(checkpoint: dict, keys: dict[str, bytes], chain_at: Callable[[int], str | None]) -> str | None:
    """Why a shard's checkpoint is no head of its committed log (None when it is one): its head signed by one of
    `keys`, its chain signature binding that head to the chain hash it carries, and the log's committed record at its
    size holding that hash (`chain_at(sequence)`: the committed record's chain hash there, None when there is none).
    read_committed is not enough: a head signed in a transaction that then aborted (a fork the log never held) can
    be read uncommitted and republished on audit.checkpoints by anyone who may write there — and the chain hash a
    checkpoint carries is not in the head's signed bytes, so without the binding it could be swapped for the
    committed one. The chain hash at a size commits to every record up to it, so a head bound to the committed one
    is the committed log's head."""
    head = head_of_checkpoint(checkpoint, "audit.checkpoints")
    if head.signed is None or head.chain_hash is None:
        return head.problem or f"the checkpoint at {head.tree_size} carries no signed head"
    if problem := signature_problem(head.signed, keys) or chain_problem(head.signed, head.chain_hash,
                                                                         checkpoint.get("chain_signature"), keys):
        return problem
    found = chain_at(head.tree_size)
    if found != head.chain_hash:
        return (f"the head of size {head.tree_size} (root {head.signed.root_hash[:16]}…) is of a history the log does "
                f"not hold: its record {head.tree_size} has chain hash {(found or 'none')[:16]}…, the head's "
                f"{head.chain_hash[:16]}… (a head of an aborted transaction, republished)")
    return None


def holding(read_at: Callable[[int], tuple[int, int | None] | None], first: int, low: int, end: int) -> int:
    """The offset of the last message whose first sequence is ≤ first (where `first` is, when it is in the log),
    `read_at(offset)` giving the first committed message at or after an offset as (its offset, its first
    sequence). An interpolation search — pages hold about as many records each, so a record's offset is about
    proportional to its sequence: a probe or two —, halving the range whenever a guess did not."""
    start, lo, hi, lo_sequence, hi_sequence = low, low, end, 1, 0

    def probe(mid: int) -> None:
        nonlocal start, lo, hi, lo_sequence, hi_sequence
        found = read_at(mid)
        if found is not None and found[1] is not None and found[1] <= first:
            start, lo, lo_sequence = found[0], found[0] + 1, found[1]
        else:
            hi, hi_sequence = mid, (found[1] if found is not None and found[1] is not None else hi_sequence)

    while lo < hi:
        width = hi - lo
        guess = lo + (first - lo_sequence) * width // (hi_sequence - lo_sequence) if hi_sequence > lo_sequence \
            else hi - 1                     # the last message first: a tail read ends here, else it gives the scale
        probe(min(max(guess, lo), hi - 1))
        if lo < hi and hi - lo > width // 2:
            probe((lo + hi) // 2)
    return start


def block_hashes(kept: Iterable[dict]) -> dict[int, bytes]:
    """The roots of the complete 256-record blocks, by block index, as the checkpoints carry them."""
    found: dict[int, bytes] = {}
    for checkpoint in kept:
        for n, hashed in enumerate(checkpoint.get("blocks") or []):
            found[checkpoint.get("blocks_from", 0) + n] = bytes.fromhex(hashed)
    return found


# The log itself, the keys it must not keep, and the witness's co-signatures of its heads (auditing them would make
# each co-signature a record, hence a new head to co-sign: a head every MLBUS_AUDIT_HEAD_INTERVAL_S forever).
NOT_AUDITED = ("audit.log", "audit.checkpoints", "audit.keys", "audit.witness")


