"""People's signed acts: canonical bytes, signing, and each way verification refuses an act (pure)."""
from functools import partial
from datetime import datetime, timezone

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.bus.identity import IdentityBook
from services.bus.projections.identities import Identities
from tests.support.keys import declaration, declare
from services.bus.signing import (ACT_FRESHNESS_MS, CLOCK_SKEW_MS, ActLedger, canonical_act, endorse, key_id,
                                  sign_act, verify_act)

APPROVAL = "mlbus.ApprovalSubmitted"
T0 = 1_800_000_000_000
sign = partial(sign_act, now_ms=T0)      # made at T0: the tests' broker times are T0 + a little


def person(name: str, roles: list[str], identities: Identities, created: int = T0, revoked: int | None = None) -> bytes:
    return declare(identities, name, roles, created, revoked)


def approval(actor: str, version: int = 1) -> dict:
    return {"approval_id": f"a{version}", "model": "m", "version": version, "decision": "approve", "actor": actor,
            "reason": "ok", "submitted_at": datetime(2027, 1, 15, 8, 0, 0, 123000, tzinfo=timezone.utc)}


def test_canonical_bytes_are_sorted_compact_json_without_nulls_or_the_signature():
    value = {"b": 1, "a": "é", "t": datetime(1970, 1, 1, 0, 0, 1, tzinfo=timezone.utc), "n": None,
             "signature": "x", "m": {"z": [1.5, b"\x01"], "y": None}}
    assert canonical_act("mlbus.X", value) == (
        b'{"record":"mlbus.X","value":{"a":"\\u00e9","b":1,"m":{"z":[1.5,"01"]},"t":1000}}')


def test_a_signed_act_verifies_and_names_its_signer():
    identities = Identities()
    ana = person("ana", ["approver"], identities)
    signed = sign(APPROVAL, approval("ana"), "ana", ana)
    verdict = verify_act(identities, APPROVAL, signed, T0 + 1, ("approver",))
    assert verdict.refusal is None and verdict.signer == "ana" and verdict.signer_key == signed["signer_key"]


def test_each_forgery_is_refused_with_its_reason():
    identities = Identities()
    ana = person("ana", ["approver"], identities)
    bo = person("bo", ["approver"], identities)
    gone = person("gil", ["approver"], identities, revoked=T0 + 10)
    viewer = person("vic", ["viewer"], identities)
    at = T0 + 100
    claims_ana_with_bos_key = {**sign(APPROVAL, approval("ana"), "bo", bo), "signer": "ana"}
    replayed = {**sign(APPROVAL, approval("ana", 1), "ana", ana), "version": 2}
    cases = {
        "unsigned": approval("ana"),
        "belongs to bo": claims_ana_with_bos_key,
        "does not verify": replayed,
        "revoked": sign(APPROVAL, approval("gil"), "gil", gone),
        "lacks the role approver": sign(APPROVAL, approval("vic"), "vic", viewer),
        "unknown signing key": {**sign(APPROVAL, approval("ana"), "ana", Ed25519PrivateKey.generate()
                                           .private_bytes_raw())},
    }
    for reason, act in cases.items():
        verdict = verify_act(identities, APPROVAL, act, at, ("approver",))
        assert verdict.signer is None and reason in verdict.refusal, (reason, verdict)


def test_a_key_counts_from_its_creation_until_its_revocation_and_admin_holds_every_role_but_approving():
    identities = Identities()
    lead = person("lead", ["admin"], identities, created=T0, revoked=T0 + 50)
    act = sign(APPROVAL, approval("lead"), "lead", lead)
    assert verify_act(identities, APPROVAL, act, T0 - 1, ("operator",)).refusal.endswith("did not exist yet when "
                                                                                          "the act was made")
    assert verify_act(identities, APPROVAL, act, T0 + 49, ("operator",)).signer == "lead"
    assert "revoked" in verify_act(identities, APPROVAL, act, T0 + 50, ("operator",)).refusal
    for role in ("approver", "service", "dpo"):       # an admin writes policies: approving too would pass four-eyes
        assert "lacks the role" in verify_act(identities, APPROVAL, act, T0 + 49, (role,)).refusal


def test_the_identity_book_reads_again_only_for_acts_newer_than_its_last_read():
    reads, clock = [], iter([100, 200, 300])
    book = IdentityBook(lambda: reads.append(1) or Identities(), clock_ms=lambda: next(clock))
    book.at(50)          # first use: read (began at 100)
    book.at(90)          # older than the read: kept
    book.at(150)         # newer: read again (began at 200)
    assert len(reads) == 2


def test_an_act_is_taken_only_fresh_made_no_earlier_than_the_window_and_no_later_than_the_skew():
    identities = Identities()
    ana = person("ana", ["approver"], identities, created=T0 - 10 * ACT_FRESHNESS_MS)
    for made, at, fresh in [(T0, T0, True), (T0, T0 + ACT_FRESHNESS_MS, True), (T0, T0 + ACT_FRESHNESS_MS + 1, False),
                            (T0 + CLOCK_SKEW_MS, T0, True), (T0 + CLOCK_SKEW_MS + 1, T0, False)]:
        act = sign_act(APPROVAL, approval("ana"), "ana", ana, now_ms=made)
        refusal = verify_act(identities, APPROVAL, act, at, ("approver",)).refusal
        assert (refusal is None) == fresh, (made, at, refusal)
    stripped = {k: v for k, v in sign(APPROVAL, approval("ana"), "ana", ana).items() if k != "act_id"}
    assert "no act_id" in verify_act(identities, APPROVAL, stripped, T0, ("approver",)).refusal


def test_the_ledger_takes_an_act_id_once_wherever_else_it_comes_again_and_forgets_stale_ids():
    ledger = ActLedger()
    assert ledger.replay_refusal("a1", ("approvals", 0, 5), T0) is None
    assert ledger.replay_refusal("a1", ("approvals", 0, 5), T0 + 1) is None          # the same message read again
    assert "replayed" in ledger.replay_refusal("a1", ("approvals", 1, 9), T0 + 2)
    later = T0 + ACT_FRESHNESS_MS + CLOCK_SKEW_MS + 120_000
    assert ledger.replay_refusal("a2", ("approvals", 0, 6), later) is None
    assert "a1" not in ledger.taken                # a copy of a1 now is stale: the freshness check refuses it


def test_what_the_admin_writes_cannot_swap_backdate_or_unrevoke_a_key():
    identities = Identities()
    ana = declare(identities, "ana", ["approver"], T0)
    ana_id = key_id(Ed25519PrivateKey.from_private_bytes(ana).public_key().public_bytes_raw())
    mallet = Ed25519PrivateKey.generate().private_bytes_raw()
    swapped = {**declaration("ana", ["approver"], mallet), "key_id": ana_id}
    roles_added = {**declaration("ana", ["approver"], ana), "roles": ["approver", "admin"]}
    no_proof = {**declaration("eve", ["approver"], mallet), "proof": None}
    others_proof = {**declaration("eve", ["approver"], mallet), "proof": declaration("ana", ["approver"], ana)["proof"]}
    backdated = {**declaration("bob", ["approver"], Ed25519PrivateKey.generate().private_bytes_raw()),
                 "created_at": T0 - 10 ** 9}
    for value, reason in [(swapped, "not the hash"), (roles_added, "declared again differently"),
                          (no_proof, "no proof of possession"), (others_proof, "does not verify")]:
        identities.apply("mlbus.IdentityDeclared", value, T0 + 5)
        assert reason in identities.refused[-1].reason
    assert identities.keys[ana_id].roles == ("approver",) and len(identities.keys) == 1
    identities.apply("mlbus.IdentityDeclared", backdated, T0 + 7)
    assert identities.keys[backdated["key_id"]].created_at_ms == T0 + 7        # the broker's time, not the record's
    identities.apply("mlbus.IdentityDeclared", declaration("ana", ["approver"], ana, revoked=True), T0 + 9)
    identities.apply("mlbus.IdentityDeclared", declaration("ana", ["approver"], ana), T0 + 11)    # "un-revoke"
    identities.apply("mlbus.IdentityDeclared", declaration("ana", ["approver"], ana, revoked=True), T0 + 99)
    assert identities.keys[ana_id].revoked_at_ms == T0 + 9
    act = sign(APPROVAL, approval("ana"), "ana", ana)
    assert "revoked" in verify_act(identities, APPROVAL, act, T0 + 12, ("approver",)).refusal


def test_granting_approver_or_admin_past_the_first_two_admins_needs_two_other_admins_endorsements():
    identities = Identities()
    lead = declare(identities, "lead", ["admin"], T0)
    lena = declare(identities, "lena", ["admin"], T0 + 1)                   # the bootstrap: two admins, alone
    bo = declare(identities, "bo", ["data-scientist"], T0 + 2)             # no endorsement needed for this role
    assert len(identities.keys) == 3 and not identities.refused
    ana = Ed25519PrivateKey.generate().private_bytes_raw()
    grant = declaration("ana", ["approver"], ana)
    for endorsements, reason in [([], "has 0"), ([endorse(grant, "lead", lead)], "has 1: lead"),
                                 ([endorse(grant, "lead", lead)] * 2, "has 1: lead"),
                                 ([endorse(grant, "lead", lead), endorse(grant, "bo", bo)], "has 1: lead"),
                                 ([endorse(grant, "lead", lead), endorse({**grant, "roles": ["viewer"]}, "lena", lena)],
                                  "has 1: lead")]:
        identities.apply("mlbus.IdentityDeclared", {**grant, "endorsements": endorsements}, T0 + 10)
        assert "needs two admins' endorsements" in identities.refused[-1].reason and \
            reason in identities.refused[-1].reason, (reason, identities.refused[-1])
    assert grant["key_id"] not in identities.keys
    identities.apply("mlbus.IdentityDeclared", {**grant, "endorsements": [endorse(grant, "lead", lead),
                                                                          endorse(grant, "lena", lena)]}, T0 + 11)
    assert identities.keys[grant["key_id"]].roles == ("approver",)
    self_made = declaration("lena", ["admin"], Ed25519PrivateKey.generate().private_bytes_raw())
    both = [endorse(self_made, "lena", lena), endorse(self_made, "lead", lead)]
    identities.apply("mlbus.IdentityDeclared", {**self_made, "endorsements": both}, T0 + 12)
    assert "has 1: lead" in identities.refused[-1].reason                  # nobody endorses their own grant


def test_another_key_for_a_name_needs_that_names_own_endorsement_or_two_admins():
    identities = Identities()
    lead = declare(identities, "lead", ["admin"], T0)
    lena = declare(identities, "lena", ["admin"], T0 + 1)
    dana = declare(identities, "dana", ["data-scientist"], T0 + 2)
    trainer = declare(identities, "trainer", ["service"], T0 + 3)
    for name, roles, own in [("dana", ["data-scientist"], dana), ("trainer", ["service"], trainer)]:
        grant = declaration(name, roles, Ed25519PrivateKey.generate().private_bytes_raw())
        identities.apply("mlbus.IdentityDeclared", grant, T0 + 10)             # the broker admin's own key pair
        assert f"{name} has a key already" in identities.refused[-1].reason and grant["key_id"] not in identities.keys
        identities.apply("mlbus.IdentityDeclared", {**grant, "endorsements": [endorse(grant, "lead", lead)]}, T0 + 11)
        assert grant["key_id"] not in identities.keys                          # one admin is not enough
        identities.apply("mlbus.IdentityDeclared", {**grant, "endorsements": [endorse(grant, name, own)]}, T0 + 12)
        assert grant["key_id"] in identities.keys                              # the name's own key vouches
    second = declaration("dana", ["data-scientist"], Ed25519PrivateKey.generate().private_bytes_raw())
    both = [endorse(second, "lead", lead), endorse(second, "lena", lena)]
    identities.apply("mlbus.IdentityDeclared", {**second, "endorsements": both}, T0 + 13)    # a lost key: two admins
    assert second["key_id"] in identities.keys


def test_a_key_carries_one_spelling_of_a_name_and_one_admin_with_two_keys_is_not_two_admins():
    identities = Identities()
    declare(identities, "ana", ["approver"], T0)
    for look_alike in ("Ana", "ana ", "ana\u200b", "\u0430na", "ana\u2060", "9ana", ""):
        identities.apply("mlbus.IdentityDeclared", declaration(look_alike, ["data-scientist"],
                                                               Ed25519PrivateKey.generate().private_bytes_raw()), T0 + 1)
        assert "no name a key may carry" in identities.refused[-1].reason, look_alike
    lead = declare(identities, "lead", ["admin"], T0 + 2)
    second = declaration("lead", ["admin"], Ed25519PrivateKey.generate().private_bytes_raw())
    identities.apply("mlbus.IdentityDeclared", {**second, "endorsements": [endorse(second, "lead", lead)]}, T0 + 3)
    assert second["key_id"] in identities.keys                       # lead's second key, vouched by the first
    bo = declaration("bo", ["approver"], Ed25519PrivateKey.generate().private_bytes_raw())
    identities.apply("mlbus.IdentityDeclared", bo, T0 + 4)
    assert bo["key_id"] in identities.keys                          # still the bootstrap: one admin, with two keys
