"""Signed human acts (pure apart from the Ed25519 primitives): how a person's record is signed, and how a
service verifies it against the identities topic as it stood when the act reached the broker.

Canonical bytes of an act: the JSON of {"record": <Avro full name>, "value": <the record's fields>} with
sorted keys, no spaces, ASCII with \\u escapes, times as epoch milliseconds, bytes as lowercase hex, fields
whose value is null left out, and the `signature` field itself left out (`signer` and `signer_key` are
covered). The signature is Ed25519 over those bytes, base64 in `signature`. A key id is the first 32 hex
digits of SHA-256 of the raw 32-byte public key. docs/security.md shows an openssl check of one act.
"""
from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .projections.identities import Identities

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# The records a person or a service signs (a service signs those it writes when it has a key: service_keys.py):
# the acts whoever acts on them verifies first.
SIGNED_RECORDS = ("mlbus.ApprovalSubmitted", "mlbus.PromotionPolicyDefined", "mlbus.ModelSpecDefined",
                  "mlbus.TrainingRequested", "mlbus.DeploymentRequested", "mlbus.DataBatch", "mlbus.KpiObserved",
                  "mlbus.ErasureRequested", "mlbus.BatchScored", "mlbus.Alert", "mlbus.ModelTrained",
                  "mlbus.FeatureViewDefined")
# An act is fresh when the broker takes it (LogAppendTime) at most this long after its signer made it, and not
# more than the clock skew before: a copy of an old act published again is refused, whatever it says.
ACT_FRESHNESS_MS = 15 * 60 * 1000
CLOCK_SKEW_MS = 5 * 60 * 1000
_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), allow_nan=False)


def canonical_act(record: str, value: dict) -> bytes:
    """The bytes a person signs (see the module docstring)."""
    fields = {k: v for k, v in value.items() if k != "signature" and v is not None}
    return _JSON.encode({"record": record, "value": _plain(fields)}).encode()


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return (value - EPOCH) // timedelta(milliseconds=1)
    if isinstance(value, bytes):
        return value.hex()
    return value


def key_id(public_key: bytes) -> str:
    return hashlib.sha256(public_key).hexdigest()[:32]


def enrolment_bytes(name: str, kid: str) -> bytes:
    """What a key's owner signs to enrol it (the proof of possession in its IdentityDeclared)."""
    return canonical_act("mlbus.KeyEnrolment", {"name": name, "key_id": kid})


def grant_bytes(value: dict) -> bytes:
    """What an admin endorses when a key is granted roles (four-eyes on people): the key, its owner and roles."""
    return canonical_act("mlbus.KeyGrant", {"key_id": value["key_id"], "name": value["name"],
                                            "principal": value["principal"], "roles": sorted(set(value["roles"]))})


def endorse(grant: dict, signer: str, private_key: bytes) -> dict:
    """An admin's endorsement of a grant (an IdentityDeclared's key_id, name, principal, roles)."""
    key = Ed25519PrivateKey.from_private_bytes(private_key)
    return {"signer": signer, "signer_key": key_id(key.public_key().public_bytes_raw()),
            "signature": base64.b64encode(key.sign(grant_bytes(grant))).decode()}


def prove_possession(name: str, private_key: bytes) -> tuple[str, str, str]:
    """(key id, base64 public key, base64 proof) of a key its owner enrols under `name`."""
    key = Ed25519PrivateKey.from_private_bytes(private_key)
    public = key.public_key().public_bytes_raw()
    kid = key_id(public)
    return kid, base64.b64encode(public).decode(), base64.b64encode(key.sign(enrolment_bytes(name, kid))).decode()


def prepare_act(value: dict, signer: str, signer_key: str, now_ms: int | None = None) -> dict:
    """The record's value ready to be signed: signer, signer_key, a fresh act_id and made_at set, no signature.
    Its canonical_act bytes are what the signer signs (here, or in a browser), then `signature` is set."""
    made_at = int(time.time() * 1000) if now_ms is None else now_ms
    return {**value, "signer": signer, "signer_key": signer_key, "act_id": uuid.uuid4().hex, "made_at": made_at,
            "signature": None}


def sign_act(record: str, value: dict, signer: str, private_key: bytes, now_ms: int | None = None) -> dict:
    """The record's value prepared (prepare_act) and signed (private_key: the raw 32-byte seed)."""
    key = Ed25519PrivateKey.from_private_bytes(private_key)
    prepared = prepare_act(value, signer, key_id(key.public_key().public_bytes_raw()), now_ms)
    signature = key.sign(canonical_act(record, prepared))
    return {**prepared, "signature": base64.b64encode(signature).decode()}


@dataclass(frozen=True)
class Verdict:
    """A verified signer (name and key), or why the act is refused."""

    signer: str | None = None
    signer_key: str | None = None
    refusal: str | None = None


# What the admin role does not hold with every other: approving (an admin writes the policies: approving too
# would let one person pass four-eyes), the services' signing, and reading erasure keys.
NOT_BY_ADMIN = ("approver", "service", "dpo", "witness", "log-signer")


def verify_act(identities: Identities, record: str, value: dict, at_ms: int, roles: tuple[str, ...]) -> Verdict:
    """Is this act signed by a person who, at `at_ms` (when the broker took it), held a valid key and one of
    `roles`? `admin` holds every role but NOT_BY_ADMIN."""
    signer, kid, signature = value.get("signer"), value.get("signer_key"), value.get("signature")
    if not (signer and kid and signature):
        return Verdict(refusal="unsigned: a person's act must carry signer, signer_key and signature")
    stale = freshness_refusal(value.get("act_id"), value.get("made_at"), at_ms)
    if stale:
        return Verdict(refusal=stale)
    key = identities.keys.get(kid)
    if key is None:
        return Verdict(refusal=f"unknown signing key {kid}")
    if key.name != signer:
        return Verdict(refusal=f"key {kid} belongs to {key.name}, not to the claimed signer {signer}")
    if at_ms < key.created_at_ms:
        return Verdict(refusal=f"key {kid} of {signer} did not exist yet when the act was made")
    if key.revoked_at_ms is not None and at_ms >= key.revoked_at_ms:
        return Verdict(refusal=f"key {kid} of {signer} was revoked before the act was made")
    if not _valid_signature(key.public_key, signature, canonical_act(record, value)):
        return Verdict(refusal=f"the signature does not verify with {signer}'s key {kid} (forged, altered, or "
                               f"copied from another act)")
    held = set(key.roles) | (set(roles) - set(NOT_BY_ADMIN) if "admin" in key.roles else set())
    if not set(roles) & held:
        return Verdict(refusal=f"{signer} lacks the role {' or '.join(roles)} (holds {', '.join(key.roles) or 'none'})")
    return Verdict(signer=signer, signer_key=kid)


def freshness_refusal(act_id: str | None, made_at: int | datetime | None, at_ms: int) -> str | None:
    """Why an act is not fresh when the broker took it at `at_ms`, or None."""
    if not act_id or made_at is None:
        return "the act carries no act_id and made_at (signed by an older client, or stripped): it cannot be " \
               "told from a replay"
    made_ms = made_at if isinstance(made_at, int) else (made_at - EPOCH) // timedelta(milliseconds=1)
    if made_ms < at_ms - ACT_FRESHNESS_MS:
        return (f"replayed or stale: made {(at_ms - made_ms) // 1000} s before the broker took it (an act is taken "
                f"within {ACT_FRESHNESS_MS // 60000} min of being made)")
    if made_ms > at_ms + CLOCK_SKEW_MS:
        return f"made {(made_ms - at_ms) // 1000} s after the broker took it: the signer's clock is wrong"
    return None


class ActLedger:
    """The act ids a service has taken (each under its signer's key: another signer cannot spend someone's act
    id first), each with where it was (topic, partition, offset): an act id is taken once, so the same signed
    act published again is refused as a replay (the same message read again, as a rebuild does, is no replay).
    Ids older than the freshness window are forgotten: those copies are stale."""

    def __init__(self) -> None:
        self.taken: dict[str, tuple[tuple, int]] = {}
        self.newest_ms = 0

    def replay_refusal(self, act_id: str, where: tuple, at_ms: int) -> str | None:
        first = self.taken.setdefault(act_id, (where, at_ms))
        if at_ms > self.newest_ms + 60_000:
            self.newest_ms = at_ms
            horizon = at_ms - ACT_FRESHNESS_MS - CLOCK_SKEW_MS
            self.taken = {k: v for k, v in self.taken.items() if v[1] >= horizon}
        if first[0] != where:
            return f"replayed: act {act_id} was taken already at {'/'.join(map(str, first[0]))}"
        return None


def signature_refusal(verdict: Verdict, claimed: str) -> str | None:
    """Why a person's act is not taken: its signature failed, or it names someone (`ana` or `cli:ana`) other
    than its verified signer; None when it is theirs."""
    if verdict.refusal:
        return f"signature: {verdict.refusal}"
    if claimed.removeprefix("cli:") != verdict.signer:
        return f"signature: the act names {claimed} but is signed by {verdict.signer}"
    return None


def _valid_signature(public_key: bytes, signature: str, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(base64.b64decode(signature, validate=True), message)
    except (InvalidSignature, ValueError):
        return False
    return True
