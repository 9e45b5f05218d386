"""Proofs about audit.log that anyone can check offline with the auditor's public key and nothing else
(docs/audit.md gives the format and the algorithm for another implementation).

An inclusion proof holds one record's leaf data (its canonical JSON, exactly the bytes the tree hashed), its leaf
index (sequence - 1), the RFC 9162 audit path and the signed tree head it is proved against. A consistency
proof holds two signed heads of the same log and the RFC 9162 proof that the later one extends the earlier.
"""
from __future__ import annotations

import json
from typing import Sequence

from . import merkle
from .audit import canonical_bytes
from .tree_head import TreeHead, signature_problem

INCLUSION = "mlbus-inclusion-proof/1"
CONSISTENCY = "mlbus-consistency-proof/1"


def inclusion(record: dict, tree: Sequence[bytes] | merkle.Tiled, head: TreeHead) -> dict:
    """The proof that `record` is leaf sequence-1 of the tree `head` signed (tree: the log's leaf hashes, at
    least head.tree_size of them, or its block hashes with the leaves the proof descends into)."""
    index = record["sequence"] - 1
    path = merkle.inclusion_path(index, head.tree_size, _tree(tree))
    return {"format": INCLUSION, "leaf_index": index, "tree_size": head.tree_size,
            "leaf_data": canonical_bytes(record).decode(), "audit_path": [h.hex() for h in path],
            "tree_head": _head_json(head)}


def consistency(first: TreeHead, second: TreeHead, tree: Sequence[bytes] | merkle.Tiled) -> dict:
    """The proof that the tree `second` signed extends the one `first` signed."""
    proof = merkle.consistency_path(first.tree_size, second.tree_size, _tree(tree))
    return {"format": CONSISTENCY, "first": _head_json(first), "second": _head_json(second),
            "proof": [h.hex() for h in proof]}


def check(document: dict, keys: dict[str, bytes]) -> tuple[bool, str]:
    """Whether a proof document holds (and what it shows, or why not); keys: key id → raw public key."""
    try:
        if document.get("format") == INCLUSION:
            return _check_inclusion(document, keys)
        if document.get("format") == CONSISTENCY:
            return _check_consistency(document, keys)
        return False, f"not an mlbus proof (format {document.get('format')!r})"
    except (KeyError, TypeError, ValueError) as error:
        return False, f"the proof is malformed: {error!r}"


def _check_inclusion(document: dict, keys: dict[str, bytes]) -> tuple[bool, str]:
    head = TreeHead.from_json(document["tree_head"])
    if problem := signature_problem(head, keys):
        return False, f"the tree head: {problem}"
    index, size, data = int(document["leaf_index"]), int(document["tree_size"]), document["leaf_data"]
    if size != head.tree_size:
        return False, f"the proof's tree size {size} is not its head's {head.tree_size}"
    record = json.loads(data)
    if record.get("sequence") != index + 1:
        return False, f"the record's sequence {record.get('sequence')} is not leaf {index} + 1"
    path = [bytes.fromhex(h) for h in document["audit_path"]]
    if not merkle.verify_inclusion(merkle.leaf_hash(data.encode()), index, size, path, bytes.fromhex(head.root_hash)):
        return False, f"the audit path does not lead from the record to the signed root of {size} records"
    return True, (f"record #{record['sequence']} ({record['source_topic']}, actor {record['actor']}) "
                  f"is in {head.log_id} "
                  f"as signed by key {head.key_id} at {head.timestamp} ms over {size} records")


def _check_consistency(document: dict, keys: dict[str, bytes]) -> tuple[bool, str]:
    first, second = TreeHead.from_json(document["first"]), TreeHead.from_json(document["second"])
    for name, head in (("first", first), ("second", second)):
        if problem := signature_problem(head, keys):
            return False, f"the {name} head: {problem}"
    if first.log_id != second.log_id:
        return False, f"the heads are of two logs ({first.log_id}, {second.log_id})"
    proof = [bytes.fromhex(h) for h in document["proof"]]
    if not merkle.verify_consistency(first.tree_size, second.tree_size, bytes.fromhex(first.root_hash),
                                     bytes.fromhex(second.root_hash), proof):
        return False, f"the head of {second.tree_size} records does not extend the head of {first.tree_size}"
    return True, f"{first.log_id}: the head of {second.tree_size} records extends the head of {first.tree_size}"


def _tree(tree: Sequence[bytes] | merkle.Tiled) -> merkle.Leaves | merkle.Tiled:
    return tree if isinstance(tree, merkle.Tiled) else merkle.Leaves(tree)


def _head_json(head: TreeHead) -> dict:
    return json.loads(head.line())
