"""The signed checkpoint of all shard heads, pure: one leaf per shard (its newest signed head's size and root, or
the empty tree), an RFC 9162 root over them signed as `<log>/shards`, and what makes one hold — its signature,
one leaf per shard in order hashing to its root, each leaf a head of its shard the auditor signed."""
from __future__ import annotations

from dataclasses import replace

import pytest

from services.bus.edge import check_record
from services.domain import (CombinedHead, ShardHead, combined_checkpoint, combined_log_id, combined_of_checkpoint,
                             combined_problem, combined_root, shard_head_included, shard_head_proof, shard_leaves,
                             shard_log_id, shard_of_log_id, sign_combined)
from services.domain.merkle import leaf_hash, root
from tests.unit.auditor.test_trust_roots import key_in_memory, keys_of

LOG = "audit.log"
EMPTY = root([]).hex()


@pytest.fixture(scope="module")
def auditor():
    return key_in_memory()


def shard_head(key, shard: int, size: int, tag: bytes = b"record"):
    return key.sign(shard_log_id(LOG, shard), size, root([leaf_hash(tag + b" %d" % i) for i in range(size)]).hex(), 5)


def test_a_leaf_is_the_exact_json_of_its_shard_size_and_root():
    assert ShardHead(2, 30, "ab" * 32).leaf_bytes() == (
        b'{"root_hash":"' + b"ab" * 32 + b'","shard":2,"tree_size":30,"version":"mlbus-shard-head/1"}')
    assert ShardHead(2, 30, "ab" * 32).leaf_hash() == leaf_hash(ShardHead(2, 30, "ab" * 32).leaf_bytes())


def test_the_leaves_are_each_shards_newest_head_and_the_empty_tree_for_a_shard_without_one(auditor):
    heads = {0: shard_head(auditor, 0, 12), 2: shard_head(auditor, 2, 7)}
    leaves = shard_leaves(heads, 3)
    assert leaves == (ShardHead(0, 12, heads[0].root_hash), ShardHead(1, 0, EMPTY), ShardHead(2, 7, heads[2].root_hash))
    assert combined_root(leaves) == root([leaf.leaf_hash() for leaf in leaves]).hex()


def test_a_combined_head_is_signed_under_a_log_id_that_is_no_shards(auditor):
    heads = [shard_head(auditor, k, 10 + k) for k in range(3)]
    combined = sign_combined(auditor, LOG, shard_leaves(dict(enumerate(heads)), 3), 99)
    assert combined.signed.log_id == combined_log_id(LOG) == "audit.log/shards"
    assert shard_of_log_id(LOG, combined.signed.log_id) is None          # cannot pass for a shard's head
    assert (combined.signed.tree_size, combined.signed.timestamp) == (3, 99)
    assert combined_problem(combined, LOG, keys_of(auditor), heads) is None


def test_a_one_shard_log_has_a_combined_head_of_one_leaf(auditor):
    only = shard_head(auditor, 0, 4)
    combined = sign_combined(auditor, LOG, shard_leaves({0: only}, 1), 1)
    assert combined.signed.tree_size == 1 and combined_problem(combined, LOG, keys_of(auditor), [only]) is None


def test_a_combined_head_that_does_not_hold_says_why(auditor):
    heads = [shard_head(auditor, k, 10 + k) for k in range(3)]
    keys = keys_of(auditor)
    combined = sign_combined(auditor, LOG, shard_leaves(dict(enumerate(heads)), 3), 1)
    stranger = key_in_memory()

    def problem(candidate: CombinedHead, shard_heads=heads) -> str | None:
        return combined_problem(candidate, LOG, keys, shard_heads)

    assert "another log" in problem(sign_combined(auditor, "other.log", combined.leaves, 1))
    assert "unknown key" in problem(sign_combined(stranger, LOG, combined.leaves, 1))
    assert "not each of" in problem(sign_combined(auditor, LOG, combined.leaves[::-1], 1))
    assert "not each of" in problem(sign_combined(auditor, LOG, combined.leaves[:2] + combined.leaves[1:2], 1))
    assert "not each of" in problem(sign_combined(auditor, LOG, (), 1))
    swapped = replace(combined, leaves=(combined.leaves[0], ShardHead(1, 11, heads[0].root_hash), combined.leaves[2]))
    assert "hash to another" in problem(swapped)
    forked = shard_head(auditor, 1, 11, b"mallory")              # signed, but not a head kept on the log
    assert "no head of that shard signed" in problem(
        sign_combined(auditor, LOG, shard_leaves({0: heads[0], 1: forked, 2: heads[2]}, 3), 1))
    by_stranger = shard_head(stranger, 1, 12)                 # signed by no log key
    assert "no head of that shard signed" in problem(
        sign_combined(auditor, LOG, shard_leaves({0: heads[0], 1: by_stranger, 2: heads[2]}, 3), 1),
        heads + [by_stranger])
    moved = replace(heads[1], log_id=shard_log_id(LOG, 2))       # shard 1's head named as shard 2's leaf
    assert "no head of that shard" in problem(
        sign_combined(auditor, LOG, (combined.leaves[0], combined.leaves[1], ShardHead(2, 11, heads[1].root_hash)),
                      1), heads + [moved])
    assert "audit.log has 4" in combined_problem(combined, LOG, keys, heads, shards=4)
    assert combined_problem(combined, LOG, keys, heads, shards=3) is None
    assert "empty tree" in problem(sign_combined(auditor, LOG, combined.leaves[:2] + (ShardHead(2, 0, "00" * 32),), 1))


def test_each_shard_head_is_proved_in_the_combined_head_and_no_other(auditor):
    heads = {k: shard_head(auditor, k, 3 + k) for k in range(5)}
    combined = sign_combined(auditor, LOG, shard_leaves(heads, 5), 1)
    for leaf in combined.leaves:
        assert shard_head_included(leaf, combined.signed, shard_head_proof(combined, leaf.shard))
    proof = shard_head_proof(combined, 3)
    assert not shard_head_included(replace(combined.leaves[3], tree_size=2), combined.signed, proof)
    assert not shard_head_included(replace(combined.leaves[3], shard=2), combined.signed, proof)


def test_a_combined_head_travels_as_an_audit_checkpoint_of_its_log_id_and_back(auditor):
    heads = {k: shard_head(auditor, k, 5 * k) for k in range(1, 3)}
    combined = sign_combined(auditor, LOG, shard_leaves(heads, 3), 42)
    value = combined_checkpoint(combined, 43)
    assert (value["log_id"], value["sequence"], value["checkpoint_at"]) == ("audit.log/shards", 3, 43)
    assert value["hash"] == combined.signed.root_hash           # the edge wants a SHA-256 there: no chain, its root
    check_record("mlbus.AuditCheckpoint", dict(value), edge=True)     # what every reader's edge checks passes
    assert value["shard_heads"][1] == {"shard": 1, "tree_size": 5, "root_hash": heads[1].root_hash}
    assert combined_of_checkpoint(value) == combined
    assert CombinedHead.from_json(combined.as_json()) == combined
    with pytest.raises(ValueError):
        combined_of_checkpoint({**value, "shard_heads": None})
    with pytest.raises(ValueError):
        combined_of_checkpoint({**value, "shard_heads": [{"shard": 0}]})
