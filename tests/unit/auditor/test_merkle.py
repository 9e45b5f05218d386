"""RFC 9162 Merkle hashing and proofs: the RFC 6962 reference roots, and every proof of every tree up to 33
leaves verifies while every altered one fails."""
import pytest

from services.domain.merkle import (ProofError, consistency_proof, inclusion_proof, leaf_hash, root,
                                    verify_consistency, verify_inclusion)

# The reference leaves of RFC 6962's test data and the tree heads of their first 1..8.
LEAVES = [bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                     "606162636465666768696a6b6c6d6e6f")]
ROOTS = {0: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
         1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
         8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"}
HASHES = [leaf_hash(bytes([i]) * i) for i in range(33)]


@pytest.mark.parametrize("size", sorted(ROOTS))
def test_the_reference_tree_heads(size):
    assert root([leaf_hash(leaf) for leaf in LEAVES[:size]]).hex() == ROOTS[size]


def test_every_inclusion_proof_verifies_and_any_change_fails():
    for size in range(1, len(HASHES) + 1):
        tree, head = HASHES[:size], root(HASHES[:size])
        for index in range(size):
            proof = inclusion_proof(index, tree)
            assert verify_inclusion(tree[index], index, size, proof, head)
            assert not verify_inclusion(leaf_hash(b"forged"), index, size, proof, head)
            if proof:
                assert not verify_inclusion(tree[index], index, size, proof[:-1], head)
                bent = [bytes(32)] + proof[1:]
                assert not verify_inclusion(tree[index], index, size, bent, head)


def test_every_consistency_proof_verifies_and_a_rewritten_history_fails():
    for second in range(1, len(HASHES) + 1):
        for first in range(1, second + 1):
            proof = consistency_proof(first, HASHES[:second])
            old, new = root(HASHES[:first]), root(HASHES[:second])
            assert verify_consistency(first, second, old, new, proof), (first, second)
            rewritten = root([leaf_hash(b"rewritten")] + HASHES[1:first])
            if first != second or proof:
                assert not verify_consistency(first, second, rewritten, new, proof), (first, second)


def test_proofs_outside_the_tree_are_refused():
    with pytest.raises(ProofError):
        inclusion_proof(3, HASHES[:3])
    with pytest.raises(ProofError):
        consistency_proof(0, HASHES[:3])
    assert not verify_inclusion(HASHES[0], 5, 3, [], root(HASHES[:3]))
