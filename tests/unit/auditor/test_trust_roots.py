"""The roots of trust apart, pure: the anchor must hold the newest head (not missing, emptied, rolled back or an
older copy), heads kept in two places must agree, keys given are pinned, a witness must have co-signed the newest
head with a key that is not the auditor's, the witness co-signs only what it checked, and the auditor resumes only
from a checkpoint it signed whose frontier hashes to the root it signed."""
from __future__ import annotations

import stat
from types import SimpleNamespace

import pytest

from services.cli.audit_trust import proof_witness_problem
from services.domain import Head, LogKey, TreeHead, anchor_problem, pinned, split_view
from services.domain.merkle import consistency_proof, leaf_hash, root
from services.domain.witness import cosign, cosignature_problem, decide, witness_problem
from services.witness.adapters import WitnessState
from services.witness.handlers import Witness

LOG = "audit.log"
LEAVES = [leaf_hash(b"record %d" % i) for i in range(40)]
FORKED = LEAVES[:10] + [leaf_hash(b"mallory %d" % i) for i in range(10, 40)]


@pytest.fixture(scope="module")
def auditor():
    return key_in_memory()


@pytest.fixture(scope="module")
def witness_key():
    return key_in_memory()


MADE: dict[str, LogKey] = {}           # the keys these tests made, by id: an auditor's checkpoint is bound by its own


def key_in_memory() -> LogKey:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    key = LogKey(Ed25519PrivateKey.generate())
    MADE[key.key_id] = key
    return key


CHAIN = "00" * 32                       # the chain hash of every record of these tests' logs


def held(shard: int, sequence: int) -> str:
    """The witness's look-up of a shard's committed chain hash: these tests' logs hold CHAIN everywhere."""
    return CHAIN


def head(key: LogKey, size: int, leaves=LEAVES, log: str = LOG, at: int = 1) -> TreeHead:
    return key.sign(log, size, root(leaves[:size]).hex(), at)


def kept(source: str, signed: TreeHead) -> Head:
    return Head(source, signed.tree_size, signed=signed)


def keys_of(*keys: LogKey) -> dict[str, bytes]:
    return {k.key_id: k.public for k in keys}


# -- the anchor --------------------------------------------------------------------------------------------------

def test_an_anchor_holding_the_newest_head_vouches_for_the_log(auditor):
    heads = [kept("audit.checkpoints", head(auditor, n)) for n in (10, 20)]
    assert anchor_problem(heads, [kept("anchor a:1", head(auditor, 10)), kept("anchor a:2", head(auditor, 20))],
                          "var/audit-anchor") is None
    assert anchor_problem([], [], "var/audit-anchor") is None             # nothing signed yet: nothing to anchor


def test_a_missing_or_emptied_anchor_fails_while_signed_heads_exist(auditor):
    reason, where = anchor_problem([kept("audit.checkpoints", head(auditor, 20))], [], "s3://b/anchor")
    assert "anchor holds no head" in reason and "size 20" in reason and where == "anchor s3://b/anchor"


def test_a_rolled_back_anchor_or_an_older_consistent_copy_fails(auditor):
    on_topic = [kept("audit.checkpoints", head(auditor, n)) for n in (10, 20, 30)]
    older = [kept("anchor a:1", head(auditor, 10)), kept("anchor a:2", head(auditor, 20))]   # last line removed
    reason, _ = anchor_problem(on_topic, older, "var/audit-anchor")
    assert "rolled back" in reason and "size 20" in reason and "size 30" in reason


def test_two_signed_heads_of_one_size_that_disagree_are_a_split_view(auditor):
    honest, forked = head(auditor, 20), head(auditor, 20, FORKED)
    reason, where = split_view([kept("anchor a:2", honest), kept("audit.checkpoints", forked)], keys_of(auditor))
    assert "two signed heads of size 20 disagree" in reason and where == "audit.checkpoints"
    assert split_view([kept("anchor a:2", honest), kept("audit.checkpoints", honest)], keys_of(auditor)) is None


def test_a_head_signed_by_an_undeclared_key_is_no_split_view_but_a_bad_signature(auditor):
    stranger = key_in_memory()
    assert split_view([kept("anchor", head(auditor, 20)), kept("topic", head(stranger, 20, FORKED))],
                      keys_of(auditor)) is None      # the walk reports it: "signed by unknown key"


def test_keys_given_are_pinned_and_declared_ones_then_ignored(auditor):
    declared, given = {"admin-made": b"x" * 32}, keys_of(auditor)
    assert pinned(declared, given) == given
    assert pinned(declared, {}) == declared


# -- co-signatures ---------------------------------------------------------------------------------------------

def test_a_witness_cosignature_on_the_newest_head_vouches_for_it(auditor, witness_key):
    newest = head(auditor, 30)
    cosignature = cosign(witness_key, "w", newest, 5)
    assert cosignature_problem(cosignature, keys_of(witness_key)) is None
    assert witness_problem(newest, [cosignature], keys_of(witness_key), keys_of(auditor)) is None
    assert witness_problem(None, [], {}, keys_of(auditor)) is None         # no head yet


def test_no_witness_key_or_no_cosignature_on_the_newest_head_fails(auditor, witness_key):
    newest = head(auditor, 30)
    assert "no witness key is trusted" in witness_problem(newest, [], {}, keys_of(auditor))
    stale = cosign(witness_key, "w", head(auditor, 20), 5)           # an older head's
    assert "no valid co-signature" in witness_problem(newest, [stale], keys_of(witness_key), keys_of(auditor))


def test_a_head_signed_just_now_is_given_time_for_its_cosignature_and_nothing_else_is(auditor, witness_key):
    """`audit verify` waits for a witness only while the newest head is younger than the wait and nothing covers it:
    the auditor signs heads every 30 s, and one signed a moment ago is not yet co-signed by a witness that is
    running. An invalid co-signature of it, no trusted witness key, or an old head: no wait, witness_problem
    judges as before."""
    from services.domain.witness import cosignature_due_ms
    wait, now = 30_000, 1_000_000
    fresh, old = head(auditor, 30, at=now - 2_000), head(auditor, 30, at=now - 31_000)
    witnesses, signers = keys_of(witness_key), keys_of(auditor)
    assert cosignature_due_ms(fresh, [], witnesses, signers, wait, now) == 28_000
    assert cosignature_due_ms(fresh, [cosign(witness_key, "w", head(auditor, 20), 5)], witnesses, signers, wait,
                              now) == 28_000                      # an older head's co-signature covers not this one
    assert cosignature_due_ms(head(auditor, 30, at=now + 10**9), [], witnesses, signers, wait, now) == wait
    assert cosignature_due_ms(old, [], witnesses, signers, wait, now) == 0
    assert cosignature_due_ms(fresh, [], {}, signers, wait, now) == 0                 # no trusted witness key
    assert cosignature_due_ms(fresh, [], signers, signers, wait, now) == 0            # the auditor's own is none
    by_stranger = cosign(key_in_memory(), "w", fresh, 5)              # an answer, if a wrong one: judged at once
    assert cosignature_due_ms(fresh, [by_stranger], witnesses, signers, wait, now) == 0
    assert cosignature_due_ms(fresh, [cosign(witness_key, "w", fresh, 5)], witnesses, signers, wait, now) == 0
    assert cosignature_due_ms(None, [], witnesses, signers, wait, now) == 0
    assert cosignature_due_ms(fresh, [], witnesses, signers, 0, now) == 0


def test_a_cosignature_by_an_untrusted_or_the_auditors_own_key_or_altered_fails(auditor, witness_key):
    newest = head(auditor, 30)
    by_stranger = cosign(key_in_memory(), "w", newest, 5)
    assert "no trusted witness key" in witness_problem(newest, [by_stranger], keys_of(witness_key), keys_of(auditor))
    by_auditor = cosign(auditor, "w", newest, 5)                    # the log's own key is no second key
    assert "no witness key is trusted" in witness_problem(newest, [by_auditor], keys_of(auditor), keys_of(auditor))
    cosignature = cosign(witness_key, "w", newest, 5)
    from dataclasses import replace
    moved = replace(cosignature, cosigned_at=6)
    assert "does not verify" in cosignature_problem(moved, keys_of(witness_key))


def test_an_auditor_signature_is_no_cosignature_and_back(auditor, witness_key):
    """Two version strings: the witness's signature over a head is not the auditor's, nor the reverse."""
    newest = head(witness_key, 30)                                   # the witness's key signing a *head*
    forged = cosign(witness_key, "w", newest, newest.timestamp)
    from dataclasses import replace
    assert cosignature_problem(replace(forged, signature=newest.signature), keys_of(witness_key)) is not None


def test_check_proof_requires_a_pinned_witness_cosignature_on_the_proofs_head(auditor, witness_key):
    signed = head(auditor, 30)
    document = {"format": "mlbus-inclusion-proof/1", "tree_head": {**signed.__dict__},
                "cosignatures": [cosign(witness_key, "w", signed, 5).as_json()]}
    assert proof_witness_problem(document, keys_of(auditor), keys_of(witness_key)) is None
    assert "no witness key" in proof_witness_problem(document, keys_of(auditor), {})
    assert "no valid co-signature" in proof_witness_problem({**document, "cosignatures": []}, keys_of(auditor),
                                                            keys_of(witness_key))


# -- the witness's decision ------------------------------------------------------------------------------------

def test_the_witness_cosigns_a_first_head_that_matches_the_log_and_refuses_one_that_does_not(auditor):
    first = head(auditor, 10)
    assert decide(None, first, keys_of(auditor), LOG, log_root=root(LEAVES[:10]).hex()).action == "cosign"
    refused = decide(None, first, keys_of(auditor), LOG, log_root=root([leaf_hash(b"x")] + LEAVES[1:10]).hex())
    assert refused.action == "refuse"
    assert decide(None, first, keys_of(auditor), LOG).action == "wait"     # it cannot check: it does not co-sign


def test_the_witness_cosigns_a_head_that_extends_the_last_it_cosigned(auditor):
    last, new = head(auditor, 10), head(auditor, 30)
    proof = consistency_proof(10, LEAVES[:30])
    decision = decide(last, new, keys_of(auditor), LOG, proof)
    assert decision.action == "cosign" and "extends" in decision.reason


def test_the_witness_refuses_a_rewrite_or_fork_behind_the_head_it_cosigned(auditor):
    last = head(auditor, 20)                                          # co-signed: records 1..20 as they were
    rewritten = head(auditor, 30, FORKED)                             # re-signed with the auditor's own key
    decision = decide(last, rewritten, keys_of(auditor), LOG, consistency_proof(20, FORKED[:30]))
    assert decision.action == "refuse" and decision.reason.startswith("SPLIT VIEW")
    same_size = decide(last, head(auditor, 20, FORKED), keys_of(auditor), LOG, [])
    assert same_size.action == "refuse"


def test_the_witness_refuses_a_forged_head_and_waits_without_a_proof(auditor):
    last = head(auditor, 10)
    stranger = head(key_in_memory(), 30)
    assert decide(last, stranger, keys_of(auditor), LOG, consistency_proof(10, LEAVES[:30])).action == "refuse"
    from dataclasses import replace
    altered = replace(head(auditor, 30), tree_size=31)
    assert "signature does not verify" in decide(last, altered, keys_of(auditor), LOG, []).reason
    assert decide(last, head(auditor, 30, log="other"), keys_of(auditor), LOG, []).action == "refuse"
    assert decide(last, head(auditor, 30), keys_of(auditor), LOG, None).action == "wait"


def test_an_older_consistent_head_is_skipped_and_the_same_head_cosigned_again(auditor):
    last = head(auditor, 30)
    older = decide(last, head(auditor, 10), keys_of(auditor), LOG, consistency_proof(10, LEAVES[:30]))
    assert older.action == "skip"
    assert decide(last, head(auditor, 10), keys_of(auditor), LOG).action == "skip"      # replayed at a restart
    assert decide(last, head(key_in_memory(), 10), keys_of(auditor), LOG).action == "refuse"   # but not forged
    assert decide(last, head(auditor, 30), keys_of(auditor), LOG, []).action == "cosign"   # a lost publication


def test_the_witness_handler_cosigns_publishes_and_remembers_and_never_builds_on_a_refusal(auditor, tmp_path):
    state = WitnessState(tmp_path / "witness")
    key = state.key()
    assert stat.S_IMODE((tmp_path / "witness" / "witness.ed25519").stat().st_mode) == 0o600
    published = []
    leaves = {"now": LEAVES}

    def evidence(kept, last, new, whole):
        if last is None:
            return None, root(leaves["now"][:new.tree_size]).hex()
        small, large = sorted((last.tree_size, new.tree_size))
        return consistency_proof(small, leaves["now"][:large]), None

    witness = Witness(state, key, LOG, lambda: keys_of(auditor), evidence, published.append, clock=lambda: 7,
                      chain_at=held)
    assert [d.action for d in witness([checkpoint(head(auditor, 10))])] == ["cosign"]
    assert [d.action for d in witness([checkpoint(head(auditor, 20)), checkpoint(head(auditor, 30))])][-1] == "cosign"
    assert [e.value["tree_size"] for e in published] == [10, 30] and state.last().tree_size == 30
    leaves["now"] = FORKED
    assert witness([checkpoint(head(auditor, 40, FORKED))])[-1].action == "refuse"
    assert state.last().tree_size == 30 and len(published) == 2 and witness.refused == 1
    again = Witness(state, key, LOG, lambda: keys_of(auditor), evidence, published.append, chain_at=held)
    assert again.last.tree_size == 30                                  # its state survives a restart
    asked = []
    again.evidence = lambda *args: asked.append(args) or (None, None)
    assert again([checkpoint(head(auditor, 10))])[-1].action == "skip" and not asked   # history read again


def checkpoint(signed: TreeHead) -> SimpleNamespace:
    """As the witness receives it (a decoded AuditCheckpoint)."""
    return SimpleNamespace(value=checkpoint_value(signed))


def checkpoint_value(signed: TreeHead) -> dict:
    """The auditor's checkpoint of a head: bound to the chain hash at its size by the key that signed it."""
    key = MADE.get(signed.key_id)
    return {"sequence": signed.tree_size, "hash": CHAIN, "checkpoint_at": 1, "log_id": signed.log_id,
            "root_hash": signed.root_hash, "signed_at": signed.timestamp, "key_id": signed.key_id,
            "signature": signed.signature, "frontier": [], "blocks_from": 0, "blocks": [],
            "chain_signature": key.bind(signed, CHAIN) if key is not None else None}


# -- the witness's principal -------------------------------------------------------------------------------------

def test_the_witness_principal_reads_the_log_and_its_heads_and_writes_only_its_cosignatures():
    from services.bus import Bus, Settings
    from services.bus.access import plan_acls
    bus = Bus.from_settings(Settings.from_env({"MLBUS_NAMESPACE": "t1."}))
    grants = plan_acls(bus.catalogue)

    def topics(principal: str, operation: str) -> set[str]:
        return {g.name.removeprefix("t1.") for g in grants if g.principal == principal and g.resource == "topic"
                and g.operation == operation}

    assert topics("witness", "write") == {"audit.witness"}
    assert topics("witness", "read") == {"audit.log", "audit.checkpoints", "audit.witness", "schemas", "identities"}
    assert {g.principal for g in grants if g.name == "t1.audit.witness" and g.operation == "write"} == {"witness"}
    assert not [g for g in grants if g.name == "t1.identities" and g.operation == "write"], "the admin's alone"
    assert "audit.witness" not in topics("auditor", "write")
    from services.adapters import audited_topics
    assert "audit.witness" not in audited_topics(bus)       # a co-signature audited would be a head to co-sign


def test_a_cosignature_beyond_every_head_kept_means_heads_were_removed(auditor, witness_key):
    from services.domain.witness import cosigned_beyond
    kept_newest = head(auditor, 20)                                  # topic and anchor both cut back to 20
    further = cosign(witness_key, "w", head(auditor, 30), 5)
    reason = cosigned_beyond(kept_newest, [further], keys_of(witness_key), LOG)
    assert "co-signed a head of size 30" in reason and "newest head kept is of size 20" in reason
    assert cosigned_beyond(head(auditor, 30), [further], keys_of(witness_key), LOG) is None
    assert cosigned_beyond(kept_newest, [further], {}, LOG) is None          # an untrusted key proves nothing


def test_an_object_store_anchor_with_its_newest_object_deleted_reads_as_rolled_back(auditor, tmp_path):
    """The anchor as fsspec objects (file:// here, s3:// in production): one object per head."""
    from services.domain import parse_line
    from services.adapters import Anchor
    url = f"file://{tmp_path}/bucket"
    heads = [head(auditor, n) for n in (10, 20, 30)]
    Anchor(url).append(heads)

    def anchored() -> list[Head]:
        return [kept(where, parse_line(line)) for where, line in Anchor(url).lines(LOG)]

    on_topic = [kept("audit.checkpoints", h) for h in heads]
    assert anchor_problem(on_topic, anchored(), url) is None
    sorted((tmp_path / "bucket" / LOG).iterdir())[-1].unlink()
    assert "rolled back" in anchor_problem(on_topic, anchored(), url)[0]
