"""People's signing keys, folded from the identities topic (pure): each key with its name, roles and
validity, so a signed act is checked against the keys as they stood when it was made."""
from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

IDENTITY_RECORDS = ("mlbus.IdentityDeclared",)
LOG_SIGNER_ROLE = "log-signer"      # the auditor's key that signs audit.log's tree heads: a service's, no person's
WITNESS_ROLE = "witness"            # the witness's key that co-signs those heads: a service's, no person's
SERVICE_ROLES = (LOG_SIGNER_ROLE, WITNESS_ROLE)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class SigningKey:
    key_id: str
    name: str
    principal: str
    roles: tuple[str, ...]
    public_key: bytes
    created_at_ms: int
    revoked_at_ms: int | None


@dataclass
class Identities:
    keys: dict[str, SigningKey] = field(default_factory=dict)

    def apply(self, record: str, value: dict) -> None:
        if record != "mlbus.IdentityDeclared":
            return
        self.keys[value["key_id"]] = SigningKey(
            key_id=value["key_id"], name=value["name"], principal=value["principal"], roles=tuple(value["roles"]),
            public_key=base64.b64decode(value["public_key"]), created_at_ms=millis(value["created_at"]),
            revoked_at_ms=None if value["revoked_at"] is None else millis(value["revoked_at"]))

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


def millis(value: int | datetime) -> int:
    return value if isinstance(value, int) else (value - EPOCH) // timedelta(milliseconds=1)

