"""Reading and declaring what the witness does on the bus: its co-signatures on audit.witness, its public key on
the identities topic (role witness, declared by the admin from the enrolment the witness made, as services' keys
are), and the tree a consistency proof is made from (the checkpoints' block hashes and the few records a proof
descends into)."""
from __future__ import annotations

from pathlib import Path

from services.bus.context import Bus
from services.bus.identity import declare_key, read_enrolment, read_identities
from services.bus.projections.identities import WITNESS_ROLE
from services.bus.replay import read_topics

from services.domain import (BLOCK, committed_problem, Cosignature, head_of_checkpoint, leaf, newest_head,
                             signature_problem, Tiled, block_hashes)

from .audit_log import (audit_records, checkpoint_shard, committed_chain_hash, kept_heads, log_id, log_signers,
                        records_between, shard_count)

PUBLIC_KEY_FILE = "witness.pem"         # in the witness's state directory: its public key, to hand to checkers
ENROLMENT_FILE = "enrolment.json"       # and what the admin declares (the key with its proof of possession)


def cosignatures(bus: Bus) -> list[Cosignature]:
    """Every co-signature on audit.witness that reads as one (the others prove nothing, and are left out)."""
    found = []
    for received in read_topics(bus, ["audit.witness"]):
        try:
            found.append(Cosignature.from_json(received.value))
        except ValueError:
            continue
    return found


def witness_keys(bus: Bus) -> dict[str, bytes]:
    """The witnesses' public keys declared on the identities topic (key id → raw key)."""
    return read_identities(bus).witnesses()


def declare_witness_key(admin_bus: Bus, state_dir: Path, name: str = "witness") -> str | None:
    """The witness's public key on the identities topic under the role witness, from the enrolment request (its
    key and proof of possession) it wrote in its state directory at its first start (None before it has). Run as
    admin: only the admin writes identities, so only the admin can make a key a witness's — and only a key whose
    owner signed its enrolment. Idempotent."""
    path = state_dir / ENROLMENT_FILE
    if not path.exists():
        return None
    request = read_enrolment(path, name)
    if request["key_id"] not in read_identities(admin_bus).keys:
        declare_key(admin_bus, request, admin_bus.catalogue.namespace + name, [WITNESS_ROLE])
    return request["key_id"]


def proof_tree(bus: Bus, kept: list[dict], size: int, blocks_needed: set[int], shard: int = 0,
               preread: dict[int, list[dict]] | None = None) -> list[bytes] | Tiled:
    """A shard's tree of `size` records as a proof needs it: its checkpoints' block hashes and the leaves of the
    blocks the proof descends into (its own, and the incomplete last one) — a few hundred records read, not
    the log. A log whose checkpoints lack block hashes (written before them) is read whole. Block hashes are not
    signed: a wrong one only makes a proof that does not verify against the signed roots. Checkpoints of other
    shards in `kept` are left out (each shard's blocks are its own tree's). `preread`: blocks' records already read
    (block → its records as records_between gave them, whole)."""
    blocks = block_hashes(c for c in kept if checkpoint_shard(c, log_id(bus)) == shard)
    complete = size // BLOCK
    if any(b not in blocks for b in range(complete)):
        return [leaf(r) for r in audit_records(bus, shard=shard)][:size]
    leaves = {}
    for block in {b for b in blocks_needed | {complete} if b * BLOCK < size}:
        last = min((block + 1) * BLOCK, size)
        read = (preread or {}).get(block)
        if read is None or len(read) < last - block * BLOCK:      # not read, or read before the log had all of it
            read = records_between(bus, block * BLOCK + 1, last, shard=shard)
        for record in read:
            if record["sequence"] <= last:
                leaves[record["sequence"] - 1] = leaf(record)
    return Tiled([blocks[b] for b in range(complete)], leaves)


def newest_cosigned(bus: Bus) -> bool:
    """Whether a witness has co-signed each shard's newest signed head kept (on audit.checkpoints or in the
    anchor), a shard with no signed head yet passing: what to wait for before `audit verify` right after the
    auditor signed a head."""
    found = cosignatures(bus)
    for shard in range(shard_count(bus)):
        on_topic, anchored = kept_heads(bus, shard)
        newest = newest_head(on_topic + anchored)
        if newest is not None and not any(c.covers(newest) for c in found):
            return False
    return True


def newest_committed(bus: Bus, kept: list[dict], shard: int) -> dict | None:
    """The newest checkpoint that is the shard's committed log's (signed by a declared log signer, bound to the chain
    hash the log's record at its size holds) — one kept to verify against later must not be a head of an aborted
    transaction republished, or an unsigned one; on a log signed before heads were bound, the newest signed."""
    keys, unbound = log_signers(bus), None
    for checkpoint in sorted(kept, key=lambda c: -c["sequence"]):
        problem = committed_problem(checkpoint, keys, lambda sequence: committed_chain_hash(bus, shard, sequence))
        if problem is None:
            return checkpoint
        signed = head_of_checkpoint(checkpoint, "audit.checkpoints").signed
        if unbound is None and not checkpoint.get("chain_signature") and signed is not None \
                and signature_problem(signed, keys) is None:
            unbound = checkpoint
    return unbound
