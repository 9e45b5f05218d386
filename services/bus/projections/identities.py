"""Signing keys, folded from the identities topic (pure): each key with its name, roles and validity, so a
signed act is checked against the keys as they stood when it was made.

What the admin who writes the topic cannot fake here:
- a key id is the hash of its key (a declaration under ana's key id with another key is refused);
- a key is declared only with a proof of possession: its owner's signature, made by `mlbus people keygen` on
  the owner's machine, over its enrolment (so the admin cannot declare a key whose private half they lack
  without it showing: a key pair the admin made is the only other way, see docs/security.md);
- a key's validity is the broker's LogAppendTime of its declaration and of its revocation (`at_ms`), never
  the times the admin wrote in the record: no backdating, and no record un-revokes a key;
- a key, once declared, cannot be declared again differently (other name, principal, roles or key): such a
  declaration is refused and kept in `refused`, for an alert.
"""
from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field, replace

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..signing import enrolment_bytes, grant_bytes, key_id

IDENTITY_RECORDS = ("mlbus.IdentityDeclared",)
LOG_SIGNER_ROLE = "log-signer"      # the auditor's key that signs audit.log's tree heads: a service's, no person's
WITNESS_ROLE = "witness"            # the witness's key that co-signs those heads: a service's, no person's
SERVICE_ROLE = "service"            # a service's key that signs the acts it makes (service_keys.py)
SERVICE_ROLES = (LOG_SIGNER_ROLE, WITNESS_ROLE, SERVICE_ROLE)     # keys of services, no person's
REFUSED_KEPT = 1000               # the latest refused declarations kept (for `people list` and alerts)
FOUR_EYES_ROLES = ("admin", "approver")  # granted only with two admins' endorsements (once two admins exist)
NAME = re.compile(r"[a-z][a-z0-9_-]{0,62}")   # a key's name: one spelling per person or service, no look-alikes
REVOKED_SUFFIX = ".revoked"         # the Kafka key of a revocation: compaction keeps both records of a key


@dataclass(frozen=True)
class SigningKey:
    key_id: str
    name: str
    principal: str
    roles: tuple[str, ...]
    public_key: bytes
    created_at_ms: int
    revoked_at_ms: int | None

    def valid_at(self, at_ms: int) -> bool:
        return self.created_at_ms <= at_ms and (self.revoked_at_ms is None or at_ms < self.revoked_at_ms)


@dataclass(frozen=True)
class RefusedDeclaration:
    key_id: str
    name: str
    at_ms: int
    reason: str


@dataclass
class Identities:
    keys: dict[str, SigningKey] = field(default_factory=dict)
    refused: list[RefusedDeclaration] = field(default_factory=list)

    def apply(self, record: str, value: dict, at_ms: int) -> str | None:
        """Fold one declaration the broker took at `at_ms` (its LogAppendTime); why it was refused, or None."""
        if record != "mlbus.IdentityDeclared":
            return None
        known = self.keys.get(value["key_id"])
        reason = declaration_refusal(known, value) or (None if known else self.grant_refusal(value, at_ms))
        if reason:
            self.refused = [*self.refused[-(REFUSED_KEPT - 1):], RefusedDeclaration(value["key_id"], value["name"],
                                                                                     at_ms, reason)]
            return reason
        if value["revoked_at"] is not None:
            if known is not None and known.revoked_at_ms is None:
                self.keys[known.key_id] = replace(known, revoked_at_ms=at_ms)
        elif known is None:
            self.keys[value["key_id"]] = SigningKey(
                key_id=value["key_id"], name=value["name"], principal=value["principal"], roles=tuple(value["roles"]),
                public_key=base64.b64decode(value["public_key"]), created_at_ms=at_ms, revoked_at_ms=None)
        return None

    apply.timed = True          # type: ignore[attr-defined]  # folds (replay, follow) hand it the broker's time

    def grant_refusal(self, value: dict, at_ms: int) -> str | None:
        """What a new key needs beyond its proof of possession, or None.
        - A name that has a key already (a person's, a service's) gets another only with the endorsement of one
          of that name's keys, or of two admins: nobody, the broker's admin included, adds a key to ana's name
          and signs as ana.
        - Four-eyes on people: once two admins exist, a key granted approver or admin needs the endorsements of
          two admins other than its owner. The first two admins are the bootstrap (the broker's admin declares
          them alone; `mlbus people list` shows when).
        Endorsers' keys must be valid at `at_ms`, the broker's time of the declaration."""
        if value["revoked_at"] is not None:
            return None
        name = value["name"]
        endorsers = self._endorsers(value, at_ms)
        admins = {n for n, key in endorsers.items() if n != name and "admin" in key.roles
                  and set(SERVICE_ROLES).isdisjoint(key.roles)}
        if any(k.name == name for k in self.keys.values()) and name not in endorsers and len(admins) < 2:
            return (f"{name} has a key already: another one needs the endorsement of one of {name}'s keys or of "
                    f"two admins (`mlbus people endorse`)")
        granted = set(value["roles"]) & set(FOUR_EYES_ROLES)
        every_admin = {k.name for k in self.keys.values()              # people, not keys: one admin with two keys
                       if "admin" in k.roles and set(SERVICE_ROLES).isdisjoint(k.roles)}   # is not two admins
        if granted and len(every_admin) >= 2 and len(admins) < 2:
            return (f"granting {', '.join(sorted(granted))} needs two admins' endorsements (`mlbus people endorse`); "
                    f"it has {len(admins)}{': ' + ', '.join(sorted(admins)) if admins else ''}")
        return None

    def _endorsers(self, value: dict, at_ms: int) -> dict[str, SigningKey]:
        """The endorsements of this grant that hold: endorser's name → the key that signed (valid at `at_ms`)."""
        found = {}
        for endorsement in value.get("endorsements") or []:
            key = self.keys.get(endorsement["signer_key"])
            if key is not None and key.name == endorsement["signer"] and key.valid_at(at_ms) and \
                    verifies(key.public_key, endorsement["signature"], grant_bytes(value)):
                found[key.name] = key
        return found

    def people(self) -> dict[str, list[str]]:
        """Each person with an unrevoked key, and the union of those keys' roles (the log signer and the witness
        are no person)."""
        found: dict[str, set[str]] = {}
        for key in self.keys.values():
            if key.revoked_at_ms is None and not set(SERVICE_ROLES) & set(key.roles):
                found.setdefault(key.principal, set()).update(key.roles)
        return {principal: sorted(roles) for principal, roles in found.items()}

    def log_signers(self) -> dict[str, bytes]:
        """The auditor's keys that ever signed tree heads (key id → raw public key); revoked ones too, because
        the heads they signed before stay valid."""
        return {k.key_id: k.public_key for k in self.keys.values() if LOG_SIGNER_ROLE in k.roles}

    def witnesses(self) -> dict[str, bytes]:
        """The witnesses' keys that ever co-signed tree heads (key id → raw public key), revoked ones too."""
        return {k.key_id: k.public_key for k in self.keys.values() if WITNESS_ROLE in k.roles}


def declaration_refusal(known: SigningKey | None, value: dict) -> str | None:
    """Why this declaration (or revocation) of a key is not taken, given what is known of the key; or None."""
    try:
        public = base64.b64decode(value["public_key"], validate=True)
    except (binascii.Error, ValueError):
        return "the public key is not base64"
    if len(public) != 32 or key_id(public) != value["key_id"]:
        return "the key id is not the hash of the public key"
    if not NAME.fullmatch(value["name"]):
        return (f"{value['name']!r} is no name a key may carry: lowercase letters, digits, - and _, from a letter "
                f"(no look-alike of another's name)")
    if known is not None:
        same = (known.name, known.principal, known.public_key, set(known.roles)) == (
            value["name"], value["principal"], public, set(value["roles"]))
        return None if same else (f"key {known.key_id} is declared already (to {known.name}, roles "
                                  f"{', '.join(known.roles)}): a key cannot be declared again differently")
    if value["revoked_at"] is not None:
        return f"key {value['key_id']} cannot be revoked before it is declared"
    proof = value.get("proof")
    if not proof:
        return "no proof of possession: the key's owner did not sign its enrolment"
    if not verifies(public, proof, enrolment_bytes(value["name"], value["key_id"])):
        return "the proof of possession does not verify: the declared key did not sign its enrolment"
    return None


def verifies(public_key: bytes, signature: str, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(base64.b64decode(signature, validate=True), message)
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True
