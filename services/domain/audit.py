"""audit.log's hash chain, pure: how a record is sealed and how a copy of the log is verified.

hash = SHA-256(prev_hash as bytes ‖ canonical bytes of the record), where the canonical bytes are the
JSON (sorted keys, no spaces, bytes as lowercase hex, times as epoch milliseconds) of every field but
`hash` — independent of the Avro schema's version, so an outside auditor can recompute it with any
language. The first record's prev_hash is GENESIS. Written by the auditor, checked by `mlbus audit verify`.

The same canonical bytes are the leaves of an RFC 9162 Merkle tree (merkle.py), in sequence order: a signed tree
head (tree_head.py) commits to every record up to its size, and verify checks each head against the log.
The chain says *where* a record was changed; the signed heads, kept outside Kafka too (anchor.py), say that
the whole history was not rewritten with a recomputed chain.
"""
from __future__ import annotations

import hashlib
from json.encoder import encode_basestring_ascii as _string     # JSON string, ASCII with \u escapes (C)
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Iterator


from .compiled import native
from .merkle import Frontier, leaf_hash
from .tree_head import TreeHead, signature_problem

GENESIS = "0" * 64
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

def canonical_bytes(record: dict) -> bytes:
    """The JSON the hash covers: the record's fields but `hash` in sorted order, written out directly (the
    shape is fixed and this is the auditor's hot path: three times faster than building a dict for
    json.JSONEncoder(sort_keys=True, separators=(",", ":")), whose output it equals byte for byte — a unit
    test holds them equal). `sealed` (personal data, encrypted) is covered when present and left out when
    null, so records from before it hash as they did."""
    headers = ",".join(f'{{"key":{_string(h["key"])},"value":{_hex(h["value"])}}}' for h in record["headers"])
    sealed = record.get("sealed")
    sealed_part = "" if sealed is None else (
        f',"sealed":{{"ciphertext":"{sealed["ciphertext"].hex()}","nonce":"{sealed["nonce"].hex()}",'
        f'"subject":{_string(sealed["subject"])}}}')
    return (f'{{"actor":{_string(record["actor"])},"audited_at":{_millis(record["audited_at"])},'
            f'"headers":[{headers}],"key":{_hex(record["key"])},"prev_hash":{_string(record["prev_hash"])},'
            f'"record_type":{_optional(record["record_type"])}{sealed_part},"sequence":{int(record["sequence"])},'
            f'"source_offset":{int(record["source_offset"])},"source_partition":{int(record["source_partition"])},'
            f'"source_timestamp":{int(record["source_timestamp"])},"source_topic":{_string(record["source_topic"])},'
            f'"value":{_hex(record["value"])}}}').encode()


def _hex(value: bytes | None) -> str:
    return "null" if value is None else f'"{value.hex()}"'


def _optional(value: str | None) -> str:
    return "null" if value is None else _string(value)


def _millis(value: int | datetime) -> int:
    """A decoded timestamp-millis back to its exact integer (the auditor itself writes the integer)."""
    return value if isinstance(value, int) else (value - EPOCH) // timedelta(milliseconds=1)


def chain_hash(prev_hash: str, record: dict) -> str:
    return hashlib.sha256(bytes.fromhex(prev_hash) + canonical_bytes(record)).hexdigest()


def seal(record: dict, prev_hash: str) -> dict:
    """The record with prev_hash and hash set: the next link of the chain."""
    return sealed_leaf(record, prev_hash)[0]


def sealed_leaf(record: dict, prev_hash: str) -> tuple[dict, bytes]:
    """The sealed record and its Merkle leaf hash, from one canonical encoding (the auditor's hot path)."""
    linked = {**record, "prev_hash": prev_hash}
    canonical = canonical_bytes(linked)
    return {**linked, "hash": hashlib.sha256(bytes.fromhex(prev_hash) + canonical).hexdigest()}, leaf_hash(canonical)


Seal = Callable[[dict, str], "tuple[dict, bytes, bytes | None]"]


def python_seal(record: dict, prev_hash: str) -> tuple[dict, bytes, None]:
    """(the sealed record, its leaf hash, None: the runtime encodes it)."""
    return (*sealed_leaf(record, prev_hash), None)


def compiled_seal(prefix: bytes) -> Seal:
    """The same seal in compiled code (services/native), which also encodes the record (single-object, after
    `prefix`: the marker and AuditRecord's fingerprint) from the same pass; python_seal without it."""
    if native is None:
        return python_seal

    def seal_(record: dict, prev_hash: str) -> tuple[dict, bytes, bytes]:
        sealed = record["sealed"]
        encoded, hash_, leaf_ = native.seal(
            prefix, record["sequence"], record["audited_at"], record["source_topic"], record["source_partition"],
            record["source_offset"], record["source_timestamp"], record["key"],
            [(h["key"], h["value"]) for h in record["headers"]], record["value"], record["actor"],
            record["record_type"], sealed and (sealed["subject"], sealed["nonce"], sealed["ciphertext"]), prev_hash)
        return {**record, "prev_hash": prev_hash, "hash": hash_}, leaf_, encoded
    return seal_


def leaf(record: dict) -> bytes:
    """A sealed record's Merkle leaf hash."""
    return leaf_hash(canonical_bytes(record))


@dataclass(frozen=True)
class ChainHead:
    sequence: int = 0            # of the last record (0: the log is empty)
    hash: str = GENESIS


@dataclass(frozen=True)
class Head:
    """What a checkpoint claims about the log, from wherever it was kept: the chain's hash at a sequence, and the
    Merkle root the auditor signed at that size (a tree head; checkpoints before the Merkle log have none)."""

    source: str                          # audit.checkpoints, the anchor's file:line, a --from-checkpoint file
    tree_size: int
    chain_hash: str | None = None
    signed: TreeHead | None = None
    problem: str | None = None           # kept, but unreadable as a head


@dataclass(frozen=True)
class Broken:
    sequence: int                # the first sequence number that is not what it should be
    reason: str
    head: str | None = None      # the checkpoint or head that caught it (where it was kept)


@dataclass(frozen=True)
class Verified:
    head: ChainHead              # the last record that verified
    root: str                    # the Merkle root of the records up to it (hex)
    heads: int                   # checkpoints and signed heads the log was checked against
    broken: Broken | None


def verify(records: Iterable[dict], heads: Iterable[Head] = (), keys: dict[str, bytes] | None = None,
           log_id: str | None = None) -> Verified:
    """verify_walk over decoded records."""
    return verify_walk(_batches(records), RecordWalk(), heads, keys, log_id)


def verify_walk(batches: Iterable[list], walk: "RecordWalk | EncodedWalk", heads: Iterable[Head] = (),
                keys: dict[str, bytes] | None = None, log_id: str | None = None) -> Verified:
    """Walk the chain from the start — every sequence in order with no gap, every prev_hash the previous hash,
    every hash recomputed — growing the Merkle tree as it goes. Each head must lie on the log: its chain hash
    that of the record at its sequence, its signed root the tree's root at its size (checked against the
    records themselves, which is stronger than a consistency proof: each later head extends each earlier one),
    its signature valid under `keys` (key id → raw Ed25519 public key), its log_id this log's. A head past
    the end of the log means the tail was truncated. The first problem found is returned. The records come
    in batches (lists), fed to `walk` a run at a time up to the next head."""
    heads = sorted(heads, key=lambda h: h.tree_size)
    for head in heads:
        problem = head.problem or _signed_problem(head, keys or {}, log_id)
        if problem:
            return Verified(ChainHead(), "", 0, Broken(head.tree_size, problem, head.source))
    pending = iter(heads)
    due = next(pending, None)
    checked, last_good = 0, 0

    def result(broken: Broken | None) -> Verified:
        return Verified(ChainHead(walk.sequence, walk.hash), walk.root().hex(), checked, broken)

    for batch in batches:
        start = 0
        while start < len(batch):
            end = len(batch) if due is None else min(len(batch), start + max(1, due.tree_size - walk.sequence))
            added, stop = walk.feed(batch, start, end)
            start += added
            if stop:
                return result(_stopped(stop, walk.sequence + 1))
            if due is not None and due.tree_size <= walk.sequence:
                at, root = ChainHead(walk.sequence, walk.hash), walk.root().hex()
                while due is not None and due.tree_size <= walk.sequence:       # every head kept at this size
                    broken = _head_problem(due, at, root, last_good)
                    if broken:
                        return result(broken)
                    checked, due = checked + 1, next(pending, None)
                last_good = walk.sequence
    if due is not None:
        return result(Broken(walk.sequence + 1, f"the log ends at {walk.sequence} but a checkpoint was taken at "
                                                f"{heads[-1].tree_size} (the tail was truncated)", due.source))
    return result(None)


Stop = tuple[str, int]  # why a walk stopped: ("sequence", found) | ("prev_hash", 0) | ("hash", 0) | ("unreadable", 0)


def _stopped(stop: Stop, expected: int) -> Broken:
    kind, found = stop
    if kind == "sequence":
        return Broken(expected, f"found sequence {found} where {expected} belongs "
                                f"(a record dropped, reordered or inserted)")
    if kind == "prev_hash":
        return Broken(expected, "prev_hash is not the hash of the record before")
    return Broken(expected, "the record's content does not match its hash (changed)")


class RecordWalk:
    """The chain's head and the Merkle frontier along decoded records (what services/native's ChainWalk does
    on raw values, in compiled code)."""

    def __init__(self):
        self.sequence, self.hash, self.frontier = 0, GENESIS, Frontier()

    def feed(self, records: list[dict], start: int, end: int) -> tuple[int, Stop | None]:
        for index in range(start, end):
            record = records[index]
            stop = self.feed_canonical(record["sequence"], record["prev_hash"], record["hash"], canonical_bytes(record))
            if stop:
                return index - start, stop
        return end - start, None

    def feed_canonical(self, sequence: int, prev_hash: str, hash_: str, canonical: bytes) -> Stop | None:
        if sequence != self.sequence + 1:
            return "sequence", sequence
        if prev_hash != self.hash:
            return "prev_hash", 0
        if hashlib.sha256(bytes.fromhex(self.hash) + canonical).hexdigest() != hash_:
            return "hash", 0
        self.frontier.append(leaf_hash(canonical))
        self.sequence, self.hash = sequence, hash_
        return None

    def root(self) -> bytes:
        return self.frontier.root()


class EncodedWalk:
    """The walk along audit.log's raw values: in compiled code (mlbus_native, built by scripts/setup) where it
    reads them — the current AuditRecord schema — and record by record through `decode` where it does not (an
    older writer schema, or the native module missing). Both give the same bytes, hashes and verdicts."""

    def __init__(self, decode: Callable[[bytes], dict], fingerprint: bytes, compiled: bool = True):
        self.decode = decode
        # Any: feed() takes raw values on native's ChainWalk (used only when compiled), dicts on a RecordWalk.
        self.inner: Any = native.ChainWalk(fingerprint) if native is not None and compiled else RecordWalk()
        self.compiled = not isinstance(self.inner, RecordWalk)

    sequence = property(lambda self: self.inner.sequence)
    hash = property(lambda self: self.inner.hash)

    def root(self) -> bytes:
        return self.inner.root()

    def feed(self, values: list[bytes], start: int, end: int) -> tuple[int, Stop | None]:
        done = start
        while done < end:
            added, stop = self.inner.feed(values, done, end) if self.compiled else (0, ("unreadable", 0))
            done += added
            if stop is None:
                break
            if stop[0] != "unreadable":
                return done - start, stop
            record = self.decode(values[done])
            stop = self.inner.feed_canonical(record["sequence"], record["prev_hash"], record["hash"],
                                             canonical_bytes(record))
            if stop:
                return done - start, stop
            done += 1
        return done - start, None


def _batches(records: Iterable[dict], size: int = 10_000) -> Iterator[list[dict]]:
    batch: list[dict] = []
    for record in records:
        batch.append(record)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _signed_problem(head: Head, keys: dict[str, bytes], log_id: str | None) -> str | None:
    if head.signed is None:
        return None
    if log_id is not None and head.signed.log_id != log_id:
        return f"the tree head at size {head.tree_size} is of another log ({head.signed.log_id}, not {log_id})"
    problem = signature_problem(head.signed, keys)
    return f"the tree head at size {head.tree_size}: {problem}" if problem else None


def _head_problem(head: Head, at: ChainHead, root: str, last_good: int) -> Broken | None:
    if head.tree_size < 1:
        return Broken(1, f"a checkpoint at size {head.tree_size} names no record", head.source)
    if head.chain_hash is not None and head.chain_hash != at.hash:
        return Broken(at.sequence, "the record differs from the checkpoint taken at this sequence", head.source)
    if head.signed is not None and head.signed.root_hash != root:
        return Broken(at.sequence, f"the first {at.sequence} records are not the ones the auditor signed at "
                                   f"{head.signed.timestamp} ms (root {head.signed.root_hash[:16]}…, the log's "
                                   f"{root[:16]}…): history between sequences {last_good + 1} "
                                   f"and {at.sequence} was rewritten", head.source)
    return None
