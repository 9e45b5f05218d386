"""Acts the console prepares for a browser to sign: prepared once per one-time id, for one session, expiring;
what is signed is the prepared value's canonical bytes and the browser adds only the signature."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from services.bus.signing import canonical_act
from services.console.acts import PendingActs, decision, deployment, deployment_fields
from tests.unit.console.test_guard import Clock

NOW = datetime(2026, 11, 27, 12, tzinfo=timezone.utc)


def approval():
    return decision("a1", "m", 2, "approve", "ana", "checked", "f" * 64, NOW)


def test_an_act_is_prepared_for_its_signer_and_kept_unsigned():
    _, pending = PendingActs().prepare("session-a", approval(), "ana", "key-a", "sent", now_ms=1_000)
    value = pending.event.value
    assert (value["signer"], value["signer_key"], value["made_at"], value["signature"]) == ("ana", "key-a", 1_000, None)
    assert value["act_id"] and value["artifact_sha256"] == "f" * 64 and pending.event.subject == "m@2"
    assert pending.canonical() == canonical_act("mlbus.ApprovalSubmitted", value)
    signed = pending.signed("c2ln")
    assert signed.value == {**value, "signature": "c2ln"} and (signed.key, signed.id) == ("m", "a1")


def test_a_prepared_act_is_taken_once_by_its_own_session_before_it_expires():
    clock = Clock()
    pending = PendingActs(ttl_s=120, clock=clock)
    first, _ = pending.prepare("session-a", approval(), "ana", "key-a", "sent", now_ms=1)
    assert pending.take(first, "session-a") is not None
    assert pending.take(first, "session-a") is None                          # once
    other, _ = pending.prepare("session-a", approval(), "ana", "key-a", "sent", now_ms=1)
    assert pending.take(other, "session-b") is None                          # another session's
    assert pending.take(other, "session-a") is None                          # and that try used it up
    late, _ = pending.prepare("session-a", approval(), "ana", "key-a", "sent", now_ms=1)
    clock.now += 121
    assert pending.take(late, "session-a") is None
    assert pending.take("made-up", "session-a") is None


def test_two_preparations_of_the_same_act_are_two_acts():
    acts = PendingActs()
    _, one = acts.prepare("s", approval(), "ana", "k", "", now_ms=1)
    _, two = acts.prepare("s", approval(), "ana", "k", "", now_ms=1)
    assert one.event.value["act_id"] != two.event.value["act_id"]


def test_a_deployment_request_carries_what_the_form_chose():
    canary = deployment_fields("deploy", "m", "go", {"version": "3", "strategy": "canary", "interval_s": "30"})
    assert (canary["version"], canary["steps"], canary["step_interval_s"]) == (3, [10, 25, 50, 100], 30.0)
    with pytest.raises(ValueError):
        deployment_fields("delete", "m", "no", {})
    fields = deployment_fields("rollback", "m", "p99", {})
    event = deployment("r1", fields, "olga", None, NOW)
    assert event.record == "mlbus.DeploymentRequested" and (event.key, event.id) == ("m", "r1")
    assert event.value == {**fields, "request_id": "r1", "actor": "olga", "requested_at": NOW, "artifact_sha256": None}
