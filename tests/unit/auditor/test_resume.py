"""The auditor resumes only from a checkpoint it signed itself whose frontier hashes to the root it signed (pure):
a forged one — a wrong root, another key's, a bent frontier, another log's — is refused with why."""
from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.auditor.decide import anchored, resume_points, resume_problem
from services.domain import Frontier, LogKey
from services.domain.merkle import leaf_hash, root

LOG = "audit.log"
LEAVES = [leaf_hash(b"record %d" % i) for i in range(40)]
FORKED = LEAVES[:10] + [leaf_hash(b"mallory %d" % i) for i in range(10, 40)]


@pytest.fixture(scope="module")
def auditor() -> LogKey:
    return LogKey(Ed25519PrivateKey.generate())


def own(key: LogKey) -> dict[str, bytes]:
    return {key.key_id: key.public}


def resumable(key: LogKey, size: int, leaves=LEAVES) -> dict:
    """The checkpoint the auditor writes at `size` (signed head, frontier)."""
    tree = Frontier()
    for leaf in leaves[:size]:
        tree.append(leaf)
    signed = key.sign(LOG, size, root(leaves[:size]).hex(), 1)
    return {"sequence": size, "hash": "00" * 32, "checkpoint_at": 1, "log_id": LOG, "root_hash": signed.root_hash,
            "signed_at": signed.timestamp, "key_id": signed.key_id, "signature": signed.signature,
            "frontier": [h.hex() for h in tree.hashes], "blocks_from": 0, "blocks": [],
            "chain_signature": key.bind(signed, "00" * 32)}
def test_the_auditor_resumes_from_the_latest_checkpoint_it_signed_and_refuses_forged_ones(auditor):
    genuine = resumable(auditor, 20)
    forged_root = {**resumable(auditor, 30), "root_hash": root(FORKED[:30]).hex()}         # signature breaks
    undeclared = resumable(LogKey(Ed25519PrivateKey.generate()), 40)                      # another key's
    bent = {**resumable(auditor, 35), "frontier": resumable(auditor, 35, FORKED)["frontier"]}
    verified, refused = resume_points([resumable(auditor, 10), genuine, forged_root, undeclared, bent],
                                      own(auditor), LOG)
    assert [c["sequence"] for c in verified] == [20, 10]
    reasons = {c["sequence"]: why for c, why in refused}
    assert "signature does not verify" in reasons[30]
    assert "not by this auditor's" in reasons[40]
    assert "frontier hashes to" in reasons[35]


def test_a_checkpoint_of_another_log_or_malformed_or_unsigned_is_no_resume_point(auditor):
    assert "another log" in resume_problem(resumable(auditor, 10) | {"log_id": "x"}, own(auditor), LOG)
    assert "malformed" in resume_problem(resumable(auditor, 10) | {"frontier": ["zz"]}, own(auditor), LOG)
    assert "no signed head" in resume_problem(resumable(auditor, 10) | {"root_hash": None}, own(auditor), LOG)
    assert resume_problem(resumable(auditor, 10), own(auditor), LOG) is None
    # the chain hash it carries is the one its head was signed with: swapped, or the binding gone, it is refused
    assert "does not verify" in resume_problem(resumable(auditor, 10) | {"hash": "11" * 32}, own(auditor), LOG)
    assert "no chain signature" in resume_problem(resumable(auditor, 10) | {"chain_signature": None}, own(auditor),
                                                  LOG)


def test_the_anchors_heads_are_read_and_a_line_that_is_none_is_left_to_verify(auditor):
    line = auditor.sign(LOG, 10, root(LEAVES[:10]).hex(), 1).line()
    assert [h.tree_size for h in anchored([("a:1", line), ("a:2", "not json")])] == [10]
