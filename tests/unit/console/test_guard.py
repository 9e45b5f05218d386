"""Who is at the console: logins checked against the identities topic, sessions that expire, CSRF tokens
compared in constant time, and a login rate limit per client."""
from __future__ import annotations

import base64
from datetime import datetime, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from services.bus.identity import Identity
from services.bus.projections.identities import Identities
from services.cli.console.guard import LoginLimit, LoginRefused, Sessions, check_login, csrf_ok


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def person(name: str = "ana", roles=("approver",), revoked_at: datetime | None = None) -> tuple[Identity, Identities]:
    seed = Ed25519PrivateKey.generate()
    public = seed.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    identity = Identity(name, name, f"key-{name}", seed.private_bytes_raw(), tuple(roles), {})
    book = Identities()
    book.apply("mlbus.IdentityDeclared", {"key_id": identity.key_id, "name": name, "principal": name,
                                          "roles": list(roles), "public_key": base64.b64encode(public).decode(),
                                          "created_at": datetime(2026, 1, 1, tzinfo=timezone.utc),
                                          "revoked_at": revoked_at})
    return identity, book


def test_a_declared_key_logs_in_with_the_roles_the_topic_gives_not_the_file():
    identity, book = person(roles=("approver",))
    claimed = Identity(identity.name, identity.principal, identity.key_id, identity.private_key, ("admin",), {})
    assert check_login(claimed, book, now_ms=1) == ("approver",)


@pytest.mark.parametrize("change, reason", [
    (lambda i, b: (Identity(i.name, i.principal, "key-other", i.private_key, i.roles, {}), b), "not on the identities"),
    (lambda i, b: (Identity(i.name, i.principal, i.key_id, person("eve")[0].private_key, i.roles, {}), b),
     "does not match"),
    (lambda i, b: (Identity("bo", i.principal, i.key_id, i.private_key, i.roles, {}), b), "does not match"),
    (lambda i, b: (Identity(i.name, i.principal, i.key_id, b"short", i.roles, {}), b), "not an Ed25519 key"),
])
def test_unknown_foreign_renamed_or_broken_keys_are_refused(change, reason):
    identity, book = change(*person())
    with pytest.raises(LoginRefused, match=reason):
        check_login(identity, book, now_ms=1)


def test_a_revoked_key_is_refused_from_its_revocation_on():
    identity, book = person(revoked_at=datetime(2026, 6, 1, tzinfo=timezone.utc))
    before = int(datetime(2026, 5, 1, tzinfo=timezone.utc).timestamp() * 1000)
    assert check_login(identity, book, now_ms=before)
    with pytest.raises(LoginRefused, match="revoked"):
        check_login(identity, book, now_ms=before + 90 * 86_400_000)


def test_sessions_expire_and_close():
    clock = Clock()
    sessions = Sessions(ttl_s=60, clock=clock)
    session = sessions.open(person()[0], ("approver",))
    assert sessions.get(session.token) is session and sessions.get("forged") is None and sessions.get(None) is None
    clock.now += 61
    assert sessions.get(session.token) is None
    again = sessions.open(person()[0], ())
    sessions.close(again.token)
    assert sessions.get(again.token) is None


def test_a_form_needs_its_own_sessions_csrf_token():
    sessions = Sessions()
    ana, bo = sessions.open(person()[0], ()), sessions.open(person("bo")[0], ())
    assert csrf_ok(ana, ana.csrf)
    assert not csrf_ok(ana, bo.csrf) and not csrf_ok(ana, "") and not csrf_ok(ana, None) and not csrf_ok(None, ana.csrf)


def test_failed_logins_are_limited_per_client_until_the_window_passes():
    clock = Clock()
    limit = LoginLimit(attempts=3, window_s=60, clock=clock)
    for _ in range(3):
        assert limit.retry_after("10.0.0.1") == 0
        limit.failed("10.0.0.1")
    assert limit.retry_after("10.0.0.1") == pytest.approx(60)
    assert limit.retry_after("10.0.0.2") == 0          # another client is not held back
    clock.now += 30
    assert limit.retry_after("10.0.0.1") == pytest.approx(30)
    clock.now += 31
    assert limit.retry_after("10.0.0.1") == 0
