"""Who is at the console (pure): logging in by signing a one-time challenge, sessions that end when their key
is revoked, CSRF tokens, a login rate limit.

A person's private key never reaches the console. The login page reads their identity file in the browser,
imports the key into WebCrypto and signs a challenge the console issued for that page (random, bound to the
login cookie, expiring, taken once); the console verifies the signature with the public key the identities
topic holds for that key id, and takes the person's name and roles from the topic. Every request checks the
session's key against the identities again: a revoked key ends its sessions."""
from __future__ import annotations

import base64
import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Callable, TypeGuard

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from services.bus.projections.identities import SERVICE_ROLES, Identities, SigningKey

SESSION_TTL_S = 8 * 3600
LOGIN_ATTEMPTS = 5            # failed logins allowed per client and window
LOGIN_WINDOW_S = 60.0
CHALLENGE_TTL_S = 120.0       # time to sign a challenge once the browser asked for it (it asks when sending)
CHALLENGES_KEPT = 10_000      # outstanding challenges; the oldest are dropped beyond it
# What a login signs: a text no act's canonical bytes can be (they begin with `{"record":`), so a login
# signature is never a signed act, and a signed act never a login.
LOGIN_PREFIX = "mlbus console login "


class LoginRefused(Exception):
    """Why a login failed, in words the person can act on."""


def login_message(challenge: str) -> bytes:
    return (LOGIN_PREFIX + challenge).encode()


@dataclass
class Challenges:
    """One-time login challenges, each bound to the login form's cookie and valid for `ttl_s`."""

    ttl_s: float = CHALLENGE_TTL_S
    clock: Callable[[], float] = time.monotonic
    issued: dict[str, tuple[str, float]] = field(default_factory=dict)     # challenge → (login cookie, expiry)

    def issue(self, login_token: str) -> str:
        challenge = new_token()
        self.issued[challenge] = (login_token, self.clock() + self.ttl_s)
        while len(self.issued) > CHALLENGES_KEPT:
            del self.issued[next(iter(self.issued))]
        return challenge

    def take(self, challenge: str, login_token: str) -> None:
        """The challenge used up, or LoginRefused: unknown, taken already, another form's, or expired."""
        bound, expires_at = self.issued.pop(challenge, ("", 0.0))
        if not bound or not hmac.compare_digest(bound.encode(), login_token.encode()):
            raise LoginRefused("the login challenge is unknown or was used already: try again")
        if expires_at < self.clock():
            raise LoginRefused("the login challenge expired: try again")


def key_refusal(key: SigningKey | None, key_id: str, now_ms: int) -> str | None:
    """Why `key` may not act now (unknown, not valid yet, revoked), or None."""
    if key is None:
        return f"key {key_id} is not on the identities topic (ask an admin to declare it)"
    if key.created_at_ms > now_ms:
        return f"key {key_id} of {key.name} is not valid yet"
    if key.revoked_at_ms is not None and key.revoked_at_ms <= now_ms:
        return f"key {key_id} of {key.name} was revoked"
    if set(key.roles) & set(SERVICE_ROLES):
        return f"key {key_id} is a service's ({', '.join(key.roles)}), no person's"
    return None


def check_login(key_id: str, signature: str, challenge: str, identities: Identities, now_ms: int) -> SigningKey:
    """The declared key that signed the challenge, valid now; else LoginRefused."""
    key = identities.keys.get(key_id)
    refusal = key_refusal(key, key_id, now_ms)
    if refusal or key is None:
        raise LoginRefused(refusal)
    try:
        Ed25519PublicKey.from_public_bytes(key.public_key).verify(base64.b64decode(signature, validate=True),
                                                                  login_message(challenge))
    except (InvalidSignature, ValueError):
        raise LoginRefused(f"the challenge's signature does not verify with key {key_id} of {key.name}") from None
    return key


@dataclass
class Session:
    token: str
    name: str
    key_id: str
    roles: tuple[str, ...]
    csrf: str
    expires_at: float


@dataclass
class Sessions:
    ttl_s: float = SESSION_TTL_S
    clock: Callable[[], float] = time.monotonic
    by_token: dict[str, Session] = field(default_factory=dict)
    ended: dict[str, str] = field(default_factory=dict)        # token → why the console ended it (shown once)

    def open(self, key: SigningKey) -> Session:
        session = Session(new_token(), key.name, key.key_id, key.roles, new_token(), self.clock() + self.ttl_s)
        self.by_token[session.token] = session
        return session

    def get(self, token: str | None) -> Session | None:
        session = self.by_token.get(token or "")
        if session is not None and session.expires_at < self.clock():
            del self.by_token[session.token]
            return None
        return session

    def current(self, token: str | None, identities: Identities, now_ms: int) -> Session | None:
        """The session if its key is still valid now (its roles as the topic holds them); a session whose key
        was revoked is ended, and why is kept for the login page."""
        session = self.get(token)
        if session is None:
            return None
        key = identities.keys.get(session.key_id)
        ended = key_refusal(key, session.key_id, now_ms)
        if ended or key is None:
            self.close(session.token)
            self.ended[session.token] = f"your session ended: {ended}"
            while len(self.ended) > CHALLENGES_KEPT:
                del self.ended[next(iter(self.ended))]
            return None
        session.roles = key.roles
        return session

    def close(self, token: str | None) -> None:
        self.by_token.pop(token or "", None)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_ok(session: Session | None, submitted: object) -> TypeGuard[Session]:
    """A form is accepted only with its session's token (compared in constant time); True says there is a session."""
    return session is not None and isinstance(submitted, str) and bool(submitted) and \
        hmac.compare_digest(session.csrf, submitted)


@dataclass
class LoginLimit:
    """At most `attempts` failed logins per client within `window_s`; then refused until the window passes."""

    attempts: int = LOGIN_ATTEMPTS
    window_s: float = LOGIN_WINDOW_S
    clock: Callable[[], float] = time.monotonic
    failures: dict[str, list[float]] = field(default_factory=dict)

    def retry_after(self, client: str) -> float:
        """Seconds until `client` may try again; 0 when it may now."""
        now = self.clock()
        recent = [t for t in self.failures.get(client, []) if t > now - self.window_s]
        self.failures[client] = recent
        return 0.0 if len(recent) < self.attempts else recent[0] + self.window_s - now

    def failed(self, client: str) -> None:
        self.failures.setdefault(client, []).append(self.clock())
