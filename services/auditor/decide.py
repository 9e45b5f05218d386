"""The auditor's decisions, pure: one sealed AuditRecord per message that crossed the bus, in order, each a
leaf of the Merkle tree, and a signed tree head (a checkpoint) every `checkpoint_every` records. audit.log holds
them in pages: one message carries up to PAGE_RECORDS consecutive records (at most PAGE_BYTES of them, or one record
alone), written in the same transaction as the source offsets they cover."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from services.bus import Event, derive_id
from services.domain import (BLOCK, chain_problem, ChainHead, CombinedHead, combined_checkpoint, combined_root,
                             committed_problem, Frontier, growing_frontier, head_of_checkpoint, key_name, parse_line,
                             ProofError, python_seal, Seal, shard_of_log_id, ShardHead, signature_problem, TreeHead)
from services.bus.signing import Verdict

Sign = Callable[[int, str, int], TreeHead]      # (tree size, root hex, time ms) → the auditor's signed head
Bind = Callable[[TreeHead, str], str]           # (a head it signed, the chain's hash at its size) → chain signature


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


CLAIM_CHARS = 256            # what a header claims (ce_source, ce_type) is kept to this many characters


def header(crossing: Crossing, name: str) -> str | None:
    """A header's value as text, cut to CLAIM_CHARS (the whole value stays in the record's headers): a claim
    derived from a header must not grow the record (invalid UTF-8 decodes to three bytes per byte)."""
    found = next((v for k, v in crossing.headers if k == name and v is not None), None)
    return found.decode("utf-8", "replace")[:CLAIM_CHARS] if found is not None else None


def attest(value: dict, verdict: Verdict) -> str | None:
    """The actor of a message that may be a person's signed act: `ana (signed, key 1a2b…)` when its signature
    verifies, `unverified ana: <why>` when it does not, None when it names no signer (a service's act)."""
    if not value.get("signer"):
        return None
    if verdict.refusal:
        return f"unverified {value['signer']}: {verdict.refusal}"
    return f"{verdict.signer} (signed, key {verdict.signer_key})"


def audit_record(crossing: Crossing, sequence: int, now_ms: int) -> dict:
    """The record before sealing. The actor is the verified signer of a signed act (a person's or a service's);
    of anything else, what its producer claims (ce_source), marked unverified: a header proves nothing."""
    return {"sequence": sequence, "audited_at": now_ms, "source_topic": crossing.topic,
            "source_partition": crossing.partition, "source_offset": crossing.offset,
            "source_timestamp": crossing.timestamp_ms, "key": crossing.key,
            "headers": [{"key": k, "value": v} for k, v in crossing.headers], "value": crossing.value,
            "actor": crossing.attested or f"unverified:{header(crossing, 'ce_source') or 'unknown'}",
            "record_type": header(crossing, "ce_type"),
            "sealed": crossing.sealed}


@dataclass
class Log:
    """Where the log stands: the chain's head and the Merkle tree's frontier (both at the same record), and
    the hashes of the BLOCK-leaf blocks completed since the last checkpoint (`prove` is built from them)."""

    head: ChainHead = field(default_factory=ChainHead)
    tree: Frontier = field(default_factory=growing_frontier)
    block: Frontier = field(default_factory=growing_frontier)      # the block being filled
    blocks: list[bytes] = field(default_factory=list)      # complete blocks not yet in a checkpoint
    blocks_from: int = 0                                   # the index of blocks[0]
    resumed_from: TreeHead | None = None                   # the verified head it was resumed from (for the anchor)

    @classmethod
    def resumed(cls, head: ChainHead, tree: Frontier, signed: TreeHead | None = None) -> "Log":
        """The log from a checkpoint: every complete block is in a checkpoint already, and the block being
        filled is the frontier's subtrees smaller than a block."""
        partial, hashes = tree.size % BLOCK, list(tree.hashes)
        return cls(head, growing_frontier(tree.size, hashes),
                   growing_frontier(partial, hashes[len(hashes) - bin(partial).count("1"):]), [], tree.size // BLOCK,
                   signed)

    def add(self, record: dict, leaf: bytes) -> None:
        self.head = ChainHead(record["sequence"], record["hash"])
        self.tree.append(leaf)
        self.block.append(leaf)
        if self.block.size == BLOCK:
            self.blocks.append(self.block.root())
            self.block = growing_frontier()


def append(log: Log, crossings: list[Crossing], now_ms: int, checkpoint_every: int,
           sign: Sign, seal: Seal = python_seal, bind: Bind | None = None) -> tuple[list[Event], list[TreeHead]]:
    """Seal each crossing onto the chain and the tree (`log` moves on); the events to publish (records,
    checkpoints) and the signed heads among them, for the anchor once they are committed. `seal` may encode
    the record as it seals it (compiled_seal); `bind` signs each head's chain hash (checkpoint)."""
    events, heads = [], []
    for crossing in crossings:
        record, leaf, encoded = seal(audit_record(crossing, log.head.sequence + 1, now_ms), log.head.hash)
        log.add(record, leaf)
        events.append(Event("mlbus.AuditRecord", record, key=crossing.topic, encoded=encoded,
                            id=derive_id("audit", crossing.topic, crossing.partition, crossing.offset)))
        if checkpoint_every and log.head.sequence % checkpoint_every == 0:
            event, signed = checkpoint(log, now_ms, sign, bind)
            events.append(event)
            heads.append(signed)
    return events, heads


PAGE_RECORDS = 1000          # records per audit.log message at most (MLBUS_AUDIT_PAGE_RECORDS)
PAGE_BYTES = 1 << 20         # bytes of records per page at most; a larger record (up to 2 MiB) is a page alone


@dataclass
class Page:
    """The page being filled: its first sequence and its records, each AuditRecord single-object encoded and
    already framed as an Avro bytes item (`items`), so a full page is its header and these bytes."""

    first_sequence: int = 0
    count: int = 0
    items: list[bytes] = field(default_factory=list)
    size: int = 0

    def room(self, limit: int = PAGE_BYTES) -> int:
        return limit - self.size

    def add(self, items: bytes, count: int, first_sequence: int) -> None:
        if not self.count:
            self.first_sequence = first_sequence
        self.items.append(items)
        self.count += count
        self.size += len(items)


def item(encoded: bytes) -> bytes:
    """A record's bytes as an item of AuditPage's `records` array (Avro bytes: zigzag length, then the bytes)."""
    return avro_long(len(encoded)) + encoded


def avro_long(n: int) -> bytes:
    z, out = (n << 1) ^ (n >> 63), bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def page_event(page: Page, prefix: bytes, log: str, shard: int = 0) -> Event:
    """A full page as its audit.log message: AuditPage single-object encoded (`prefix`: its marker and
    fingerprint) — the first sequence, then the records as one array block — with its value for readers of
    events (the records' bytes)."""
    # one copy of the page's bytes (a concatenation copied its megabyte three times)
    encoded = b"".join([prefix, avro_long(page.first_sequence), *([avro_long(page.count), *page.items] if page.count
                                                                  else []), b"\0"])
    return Event("mlbus.AuditPage", {"first_sequence": page.first_sequence, "records": None}, key=str(shard),
                 id=derive_id("audit-page", log, page.first_sequence), encoded=encoded, partition=shard)


def paged(events: list[Event], encode: Callable[[dict], bytes], prefix: bytes, log: str,
          page_records: int = PAGE_RECORDS, page_bytes: int = PAGE_BYTES, shard: int = 0) -> list[Event]:
    """append's events with its AuditRecords gathered into pages (in order; the other events as they are)."""
    out: list[Event] = []
    page = Page()
    for event in events:
        if event.record != "mlbus.AuditRecord":
            out.append(event)
            continue
        framed = item(event.encoded or encode(event.value))
        if page.count and (page.count == page_records or len(framed) > page.room(page_bytes)):
            out.append(page_event(page, prefix, log, shard))
            page = Page()
        page.add(framed, 1, event.value["sequence"])
    if page.count:
        out.append(page_event(page, prefix, log, shard))
    return out


def checkpoint(log: Log, now_ms: int, sign: Sign, bind: Bind | None = None) -> tuple[Event, TreeHead]:
    """The signed tree head at the log's last record, as an AuditCheckpoint (with the frontier to resume from
    and the blocks completed since the last one) — and, with `bind`, the chain signature that ties the head to the
    chain's hash at its size: what lets a reader tell a head of the committed log (its record at that sequence has
    that hash) from one signed in a transaction that aborted (committed_problem). Without it the head is trusted by
    no reader that checks committed heads."""
    signed = sign(log.head.sequence, log.tree.root().hex(), now_ms)
    event = Event("mlbus.AuditCheckpoint", {
        "sequence": log.head.sequence, "hash": log.head.hash, "checkpoint_at": now_ms, "log_id": signed.log_id,
        "root_hash": signed.root_hash, "signed_at": signed.timestamp, "key_id": signed.key_id,
        "signature": signed.signature, "frontier": [bytes(h).hex() for h in log.tree.hashes],
        "blocks_from": log.blocks_from, "blocks": [h.hex() for h in log.blocks],
        "chain_signature": None if bind is None else bind(signed, log.head.hash)},
        key=signed.log_id, id=derive_id("audit-checkpoint", signed.log_id, log.head.sequence))
    log.blocks_from += len(log.blocks)
    log.blocks = []
    return event, signed


def key_created(subject: str, key: bytes, now_ms: int, shard: int = 0) -> Event:
    """A shard's new data key for a subject, on audit.keys under the shard's name for it (shards.key_name)."""
    return Event("mlbus.DataKey", {"subject": subject, "key": key, "created_at": now_ms},
                 key=key_name(subject, shard), id=derive_id("data-key", subject, key.hex()))


def erasable(value: dict, verdict: Verdict) -> bool:
    """An erasure is carried out only when an admin signed it (refused ones are audited all the same)."""
    return verdict.refusal is None and value.get("signer") == verdict.signer


def resume_problem(checkpoint: dict, keys: dict[str, bytes], log_id: str) -> str | None:
    """Why the auditor must not resume from this checkpoint (None when it may): it must carry a head of this log
    signed by one of `keys` (the auditor's own: a checkpoint anyone else signed is no head of this auditor's), a
    frontier that hashes to the root signed — the state the auditor builds on is then the one it signed —, and the
    chain signature binding that head to the chain hash it carries, which the caller checks against the log. (A
    checkpoint from before heads were bound is refused: the shard is read from its start, once.)"""
    if not checkpoint.get("root_hash"):
        return "it carries no signed head"
    try:
        head = TreeHead.from_json({**checkpoint, "tree_size": checkpoint["sequence"],
                                   "timestamp": checkpoint["signed_at"]})
        tree = Frontier(head.tree_size, [bytes.fromhex(h) for h in checkpoint["frontier"]])
    except (KeyError, TypeError, ValueError, ProofError) as error:
        return f"it is malformed ({error})"
    if head.log_id != log_id:
        return f"it is a head of another log ({head.log_id}, not {log_id})"
    if head.key_id not in keys:
        return f"it is signed by key {head.key_id}, not by this auditor's ({', '.join(sorted(keys))})"
    if problem := signature_problem(head, keys):
        return problem
    if tree.root().hex() != head.root_hash:
        return f"its frontier hashes to {tree.root().hex()[:16]}…, not to the root it signs ({head.root_hash[:16]}…)"
    # The chain hash the caller checks against the log must be the one the head was signed with: unbound, a head of
    # an aborted transaction republished beside the committed chain hash would resume the tree of a fork.
    return chain_problem(head, str(checkpoint.get("hash")), checkpoint.get("chain_signature"), keys)


def resume_points(checkpoints: list[dict], keys: dict[str, bytes],
                  log_id: str) -> tuple[list[dict], list[tuple[dict, str]]]:
    """The checkpoints the auditor may resume from, newest first, and those it refuses with why."""
    verified, refused = [], []
    for checkpoint in checkpoints:
        problem = resume_problem(checkpoint, keys, log_id)
        if problem:
            refused.append((checkpoint, problem))
        else:
            verified.append(checkpoint)
    return sorted(verified, key=lambda c: -c["sequence"]), refused


def anchored(lines: list[tuple[str, str]]) -> list[TreeHead]:
    """The heads among an anchor's lines (a line that is none is verify's to report, not the auditor's)."""
    heads = []
    for _, line in lines:
        try:
            heads.append(parse_line(line))
        except ValueError:
            continue
    return heads


def newest_shard_heads(newest: dict[int, TreeHead], checkpoints: list[dict], log: str, shards: int,
                       keys: dict[str, bytes], chain_at: Callable[[int, int], str | None]
                       ) -> tuple[dict[int, TreeHead], list[tuple[dict, str]]]:
    """Each shard's newest head among these checkpoints that is its committed log's (signed by one of `keys`, the
    auditor's own, bound to the chain hash that shard's committed record at its size holds: `chain_at(shard,
    sequence)`, audited.committed_problem), added to `newest`: what the combined checkpoint covers; and the newer
    ones refused, with why. A checkpoint of another log or of no shard is passed over (verify reports it; the
    combined head never vouches for it). Each shard's candidates are looked up newest first, until one holds."""
    found = dict(newest)
    candidates: dict[int, list[tuple[TreeHead, dict]]] = {}
    for checkpoint in checkpoints:
        signed = head_of_checkpoint(checkpoint, "audit.checkpoints").signed
        shard = None if signed is None else shard_of_log_id(log, signed.log_id)
        if signed is None or shard is None or shard >= shards or signature_problem(signed, keys):
            continue
        if shard not in found or signed.tree_size > found[shard].tree_size:
            candidates.setdefault(shard, []).append((signed, checkpoint))
    refused = []
    for shard, heads in candidates.items():
        for signed, checkpoint in sorted(heads, key=lambda pair: -pair[0].tree_size):
            problem = committed_problem(checkpoint, keys, lambda sequence: chain_at(shard, sequence))
            if problem is None:
                found[shard] = signed
                break
            refused.append((checkpoint, problem))
    return found, refused


def combined_event(leaves: tuple[ShardHead, ...], log: str, now_ms: int,
                   sign: Callable[[int, str, int], TreeHead]) -> tuple[Event, TreeHead]:
    """The signed checkpoint of every shard's head (one RFC 9162 tree over them, log id `<log>/shards`) as an
    AuditCheckpoint on audit.checkpoints, and its head for the anchor."""
    combined = CombinedHead(sign(len(leaves), combined_root(leaves), now_ms), leaves)
    value = combined_checkpoint(combined, now_ms)
    return (Event("mlbus.AuditCheckpoint", value, key=combined.signed.log_id,
                  id=derive_id("audit-combined", log, combined.signed.root_hash)), combined.signed)
