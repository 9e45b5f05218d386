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
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .projections.identities import Identities

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# The records a person signs: the acts services verify before acting on them.
SIGNED_RECORDS = ("mlbus.ApprovalSubmitted", "mlbus.PromotionPolicyDefined", "mlbus.ModelSpecDefined",
                  "mlbus.TrainingRequested", "mlbus.DeploymentRequested", "mlbus.DataBatch", "mlbus.KpiObserved",
                  "mlbus.ErasureRequested", "mlbus.BatchScored")
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


def sign_act(record: str, value: dict, signer: str, private_key: bytes) -> dict:
    """The record's value with signer, signer_key and signature set (private_key: the raw 32-byte seed)."""
    key = Ed25519PrivateKey.from_private_bytes(private_key)
    public = key.public_key().public_bytes_raw()
    signed = {**value, "signer": signer, "signer_key": key_id(public), "signature": None}
    signature = key.sign(canonical_act(record, signed))
    return {**signed, "signature": base64.b64encode(signature).decode()}


@dataclass(frozen=True)
class Verdict:
    """A verified signer (name and key), or why the act is refused."""

    signer: str | None = None
    signer_key: str | None = None
    refusal: str | None = None


def verify_act(identities: Identities, record: str, value: dict, at_ms: int, roles: tuple[str, ...]) -> Verdict:
    """Is this act signed by a person who, at `at_ms` (when the broker took it), held a valid key and one of
    `roles`? `admin` holds every role."""
    signer, kid, signature = value.get("signer"), value.get("signer_key"), value.get("signature")
    if not (signer and kid and signature):
        return Verdict(refusal="unsigned: a person's act must carry signer, signer_key and signature")
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
    if not set(roles) & (set(key.roles) | ({*roles} if "admin" in key.roles else set())):
        return Verdict(refusal=f"{signer} lacks the role {' or '.join(roles)} (holds {', '.join(key.roles) or 'none'})")
    return Verdict(signer=signer, signer_key=kid)


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
