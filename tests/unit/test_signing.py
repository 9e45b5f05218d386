"""People's signed acts: canonical bytes, signing, and each way verification refuses an act (pure)."""
import base64
from datetime import datetime, timezone

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.bus.identity import IdentityBook
from services.bus.projections.identities import Identities
from services.bus.signing import canonical_act, key_id, sign_act, verify_act

APPROVAL = "mlbus.ApprovalSubmitted"
T0 = 1_800_000_000_000


def person(name: str, roles: list[str], identities: Identities, created: int = T0, revoked: int | None = None) -> bytes:
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes_raw()
    identities.apply("mlbus.IdentityDeclared", {
        "key_id": key_id(public), "name": name, "principal": name, "roles": roles,
        "public_key": base64.b64encode(public).decode(), "created_at": created, "revoked_at": revoked,
        "declared_by": "admin"})
    return key.private_bytes_raw()


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
    signed = sign_act(APPROVAL, approval("ana"), "ana", ana)
    verdict = verify_act(identities, APPROVAL, signed, T0 + 1, ("approver",))
    assert verdict.refusal is None and verdict.signer == "ana" and verdict.signer_key == signed["signer_key"]


def test_each_forgery_is_refused_with_its_reason():
    identities = Identities()
    ana = person("ana", ["approver"], identities)
    bo = person("bo", ["approver"], identities)
    gone = person("gil", ["approver"], identities, revoked=T0 + 10)
    viewer = person("vic", ["viewer"], identities)
    at = T0 + 100
    claims_ana_with_bos_key = {**sign_act(APPROVAL, approval("ana"), "bo", bo), "signer": "ana"}
    replayed = {**sign_act(APPROVAL, approval("ana", 1), "ana", ana), "version": 2}
    cases = {
        "unsigned": approval("ana"),
        "belongs to bo": claims_ana_with_bos_key,
        "does not verify": replayed,
        "revoked": sign_act(APPROVAL, approval("gil"), "gil", gone),
        "lacks the role approver": sign_act(APPROVAL, approval("vic"), "vic", viewer),
        "unknown signing key": {**sign_act(APPROVAL, approval("ana"), "ana", Ed25519PrivateKey.generate()
                                           .private_bytes_raw())},
    }
    for reason, act in cases.items():
        verdict = verify_act(identities, APPROVAL, act, at, ("approver",))
        assert verdict.signer is None and reason in verdict.refusal, (reason, verdict)


def test_a_key_counts_from_its_creation_until_its_revocation_and_admin_holds_every_role():
    identities = Identities()
    lead = person("lead", ["admin"], identities, created=T0, revoked=T0 + 50)
    act = sign_act(APPROVAL, approval("lead"), "lead", lead)
    assert verify_act(identities, APPROVAL, act, T0 - 1, ("approver",)).refusal.endswith("did not exist yet when "
                                                                                          "the act was made")
    assert verify_act(identities, APPROVAL, act, T0 + 49, ("approver",)).signer == "lead"
    assert "revoked" in verify_act(identities, APPROVAL, act, T0 + 50, ("approver",)).refusal


def test_the_identity_book_reads_again_only_for_acts_newer_than_its_last_read():
    reads, clock = [], iter([100, 200, 300])
    book = IdentityBook(lambda: reads.append(1) or Identities(), clock_ms=lambda: next(clock))
    book.at(50)          # first use: read (began at 100)
    book.at(90)          # older than the read: kept
    book.at(150)         # newer: read again (began at 200)
    assert len(reads) == 2
