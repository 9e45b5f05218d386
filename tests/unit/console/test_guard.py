"""Who is at the console: a login is a one-time challenge signed with a key the identities topic declares
(issued per login form, expiring, taken once), sessions expire and end when their key is revoked, CSRF tokens
are compared in constant time, and failed logins are limited per client."""
from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.bus.projections.identities import Identities
from services.bus.signing import prove_possession
from services.console.guard import (Challenges, LoginLimit, LoginRefused, Sessions, check_login, csrf_ok,
                                        login_message)

NOW_MS = int(datetime(2026, 11, 27, tzinfo=timezone.utc).timestamp() * 1000)
DECLARED_MS = int(datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp() * 1000)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Person:
    """What a person's browser holds (the private key) and what the identities topic says of them."""

    name: str
    private: Ed25519PrivateKey
    key_id: str
    book: Identities

    def sign(self, message: bytes) -> str:
        return base64.b64encode(self.private.sign(message)).decode()


def declare(book: Identities, name: str, private: Ed25519PrivateKey, roles=("approver",),
            revoked_at_ms: int | None = None) -> str:
    """ana's key declared (as `mlbus people add` does, with her proof of possession) on 2026-01-01, or revoked
    at `revoked_at_ms` (the broker's time of the revocation)."""
    kid, public, proof = prove_possession(name, private.private_bytes_raw())
    declared = {"key_id": kid, "name": name, "principal": name, "roles": list(roles), "public_key": public,
                "proof": proof, "created_at": datetime(2026, 1, 1, tzinfo=timezone.utc), "revoked_at": None}
    if revoked_at_ms is None:
        book.apply("mlbus.IdentityDeclared", declared, DECLARED_MS)
    else:
        book.apply("mlbus.IdentityDeclared", {**declared, "revoked_at": datetime.now(timezone.utc)}, revoked_at_ms)
    return kid


def person(name: str = "ana", roles=("approver",), book: Identities | None = None) -> Person:
    private, book = Ed25519PrivateKey.generate(), Identities() if book is None else book
    return Person(name, private, declare(book, name, private, roles), book)


def revoke(who: Person, at_ms: int) -> None:
    declare(who.book, who.name, who.private, who.book.keys[who.key_id].roles, revoked_at_ms=at_ms)


def test_a_signed_challenge_logs_in_with_the_name_and_roles_the_topic_gives():
    ana = person(roles=("approver",))
    key = check_login(ana.key_id, ana.sign(login_message("c1")), "c1", ana.book, NOW_MS)
    assert (key.name, key.roles) == ("ana", ("approver",))


@pytest.mark.parametrize("key, signed, challenge, reason", [
    ("key-other", "c1", "c1", "not on the identities topic"),
    (None, "c2", "c1", "does not verify"),                  # a signature of another challenge
    (None, "raw", "c1", "does not verify"),                 # the challenge without the login prefix
    (None, "garbage", "c1", "does not verify"),
])
def test_unknown_keys_other_challenges_and_broken_signatures_are_refused(key, signed, challenge, reason):
    ana = person()
    signature = {"raw": ana.sign(b"c1"), "garbage": "not base64!"}.get(signed) or ana.sign(login_message(signed))
    with pytest.raises(LoginRefused, match=reason):
        check_login(key or ana.key_id, signature, challenge, ana.book, NOW_MS)


def test_the_log_signers_key_is_no_persons_and_logs_in_nowhere():
    auditor = person("auditor", roles=("log-signer",))
    with pytest.raises(LoginRefused, match="a service's"):
        check_login(auditor.key_id, auditor.sign(login_message("c1")), "c1", auditor.book, NOW_MS)


def test_another_persons_key_cannot_sign_for_a_key_id():
    ana, eve = person(), person("eve")
    with pytest.raises(LoginRefused, match="does not verify"):
        check_login(ana.key_id, eve.sign(login_message("c1")), "c1", ana.book, NOW_MS)


def test_a_revoked_key_is_refused_from_its_revocation_on():
    ana = person()
    before = int(datetime(2026, 5, 1, tzinfo=timezone.utc).timestamp() * 1000)
    revoke(ana, before + 1)
    assert check_login(ana.key_id, ana.sign(login_message("c")), "c", ana.book, before)
    with pytest.raises(LoginRefused, match="revoked"):
        check_login(ana.key_id, ana.sign(login_message("c")), "c", ana.book, NOW_MS)


def test_a_challenge_is_taken_once_by_its_own_login_form_before_it_expires():
    clock = Clock()
    challenges = Challenges(ttl_s=120, clock=clock)
    first = challenges.issue("form-a")
    challenges.take(first, "form-a")
    with pytest.raises(LoginRefused, match="used already"):
        challenges.take(first, "form-a")
    other = challenges.issue("form-a")
    with pytest.raises(LoginRefused, match="unknown"):
        challenges.take(other, "form-b")                # bound to another form's cookie
    with pytest.raises(LoginRefused, match="used already"):
        challenges.take(other, "form-a")                # and a wrong try uses it up
    late = challenges.issue("form-a")
    clock.now += 121
    with pytest.raises(LoginRefused, match="expired"):
        challenges.take(late, "form-a")
    assert challenges.issue("x") != challenges.issue("x")


def test_sessions_expire_and_close():
    clock = Clock()
    ana = person()
    sessions = Sessions(ttl_s=60, clock=clock)
    session = sessions.open(ana.book.keys[ana.key_id])
    assert sessions.get(session.token) is session and sessions.get("forged") is None and sessions.get(None) is None
    clock.now += 61
    assert sessions.get(session.token) is None
    again = sessions.open(ana.book.keys[ana.key_id])
    sessions.close(again.token)
    assert sessions.get(again.token) is None


def test_a_session_ends_when_its_key_is_revoked_and_says_why():
    ana = person(roles=("approver",))
    sessions = Sessions()
    session = sessions.open(ana.book.keys[ana.key_id])
    assert sessions.current(session.token, ana.book, NOW_MS) is session
    revoke(ana, NOW_MS)
    assert sessions.current(session.token, ana.book, NOW_MS - 1) is session       # not yet
    assert sessions.current(session.token, ana.book, NOW_MS) is None
    assert sessions.get(session.token) is None and "revoked" in sessions.ended[session.token]
    gone = sessions.open(ana.book.keys[ana.key_id])
    assert sessions.current(gone.token, Identities(), NOW_MS) is None             # a key no longer declared


def test_a_form_needs_its_own_sessions_csrf_token():
    sessions = Sessions()
    ana, bo = person(), person("bo")
    ana_session, bo_session = sessions.open(ana.book.keys[ana.key_id]), sessions.open(bo.book.keys[bo.key_id])
    assert csrf_ok(ana_session, ana_session.csrf)
    assert not csrf_ok(ana_session, bo_session.csrf) and not csrf_ok(ana_session, "")
    assert not csrf_ok(ana_session, None) and not csrf_ok(None, ana_session.csrf)


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
