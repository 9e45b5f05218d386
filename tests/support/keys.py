"""Signing keys for pure tests: a key made by its owner and declared as the identities topic would hold it."""
from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.bus.projections.identities import Identities
from services.bus.signing import prove_possession


def declaration(name: str, roles, private_key: bytes, revoked: bool = False, principal: str | None = None) -> dict:
    """The IdentityDeclared value of an owner's key (with its proof of possession)."""
    kid, public, proof = prove_possession(name, private_key)
    return {"key_id": kid, "name": name, "principal": principal or name, "roles": list(roles), "public_key": public,
            "proof": proof, "created_at": 0, "revoked_at": 1 if revoked else None, "declared_by": "admin"}


def declare(identities: Identities, name: str, roles, created_ms: int, revoked_ms: int | None = None) -> bytes:
    """A new key of `name`, declared at broker time `created_ms` (and revoked at `revoked_ms`): its private key."""
    private = Ed25519PrivateKey.generate().private_bytes_raw()
    identities.apply("mlbus.IdentityDeclared", declaration(name, roles, private), created_ms)
    if revoked_ms is not None:
        identities.apply("mlbus.IdentityDeclared", declaration(name, roles, private, revoked=True), revoked_ms)
    return private
