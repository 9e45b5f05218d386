"""Who is at the console (pure): logging in with an identity file, sessions, CSRF tokens, a login rate limit.

A person logs in with the identity file `mlbus people add` gave them. The console checks its private key
against the public key the identities topic holds for that key id (unrevoked), then keeps the identity in
memory for the session only, and signs that person's acts with it — the same signature the CLI would make —
and sends them over the person's own broker credentials. The browser holds only an opaque session cookie."""
from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from services.bus.identity import Identity
from services.bus.projections.identities import Identities

SESSION_TTL_S = 8 * 3600
LOGIN_ATTEMPTS = 5            # failed logins allowed per client and window
LOGIN_WINDOW_S = 60.0


class LoginRefused(Exception):
    """Why a login failed, in words the person can act on."""


def check_login(identity: Identity, identities: Identities, now_ms: int) -> tuple[str, ...]:
    """The identity's current roles if its key is declared, unrevoked and matches; else LoginRefused."""
    declared = identities.keys.get(identity.key_id)
    if declared is None:
        raise LoginRefused(f"key {identity.key_id} is not on the identities topic (ask an admin: mlbus people add)")
    if declared.revoked_at_ms is not None and declared.revoked_at_ms <= now_ms:
        raise LoginRefused(f"key {identity.key_id} of {declared.name} was revoked")
    try:
        public = Ed25519PrivateKey.from_private_bytes(identity.private_key).public_key().public_bytes(
            Encoding.Raw, PublicFormat.Raw)
    except ValueError:
        raise LoginRefused("the identity file's private key is not an Ed25519 key") from None
    if not hmac.compare_digest(public, declared.public_key) or declared.name != identity.name:
        raise LoginRefused("the identity file's key does not match the one declared for it")
    return declared.roles


@dataclass
class Session:
    token: str
    identity: Identity
    roles: tuple[str, ...]
    csrf: str
    expires_at: float


@dataclass
class Sessions:
    ttl_s: float = SESSION_TTL_S
    clock: callable = time.monotonic
    by_token: dict[str, Session] = field(default_factory=dict)

    def open(self, identity: Identity, roles: tuple[str, ...]) -> Session:
        session = Session(new_token(), identity, roles, new_token(),
                          self.clock() + self.ttl_s)
        self.by_token[session.token] = session
        return session

    def get(self, token: str | None) -> Session | None:
        session = self.by_token.get(token or "")
        if session is not None and session.expires_at < self.clock():
            del self.by_token[session.token]
            return None
        return session

    def close(self, token: str | None) -> None:
        self.by_token.pop(token or "", None)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_ok(session: Session | None, submitted: str | None) -> bool:
    """A form is accepted only with its session's token (compared in constant time)."""
    return session is not None and bool(submitted) and hmac.compare_digest(session.csrf, submitted)


@dataclass
class LoginLimit:
    """At most `attempts` failed logins per client within `window_s`; then refused until the window passes."""

    attempts: int = LOGIN_ATTEMPTS
    window_s: float = LOGIN_WINDOW_S
    clock: callable = time.monotonic
    failures: dict[str, list[float]] = field(default_factory=dict)

    def retry_after(self, client: str) -> float:
        """Seconds until `client` may try again; 0 when it may now."""
        now = self.clock()
        recent = [t for t in self.failures.get(client, []) if t > now - self.window_s]
        self.failures[client] = recent
        return 0.0 if len(recent) < self.attempts else recent[0] + self.window_s - now

    def failed(self, client: str) -> None:
        self.failures.setdefault(client, []).append(self.clock())
