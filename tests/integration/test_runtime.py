"""The service runtime on the real broker: DLQ, lag, crash recovery, transactions."""
from __future__ import annotations

import collections
import signal
import subprocess

import pytest

from services.bus import Event, Publisher
from services.bus.topics import consumer_lag
from tests.support.lag import behind
from tests.support.polling import read_topic, wait_until
from tests.support.processes import free_port, start, stop
from tests.support.traffic import publish_mixed, request

GROUP = "mlbus.scorer.relay"           # the relay runs as the scorer's principal, in its groups


def start_relay(env: dict, transactional: bool = False, handle_ms: float = 0,
                metrics_port: int = 0) -> subprocess.Popen:
    return start("tests.support.relay_service", env, MLBUS_RELAY_TRANSACTIONAL="1" if transactional else "0",
                 MLBUS_RELAY_HANDLE_MS=str(handle_ms), MLBUS_METRICS_PORT=str(metrics_port))


def lag(bus) -> int:
    """The relay group's committed lag: for the kill -9 test, where what a restart resumes from is the point."""
    return sum(consumer_lag(bus, bus.settings.connection.namespace + GROUP, ["inference.requests"]).values())


def drained(bus, port: int) -> bool:
    """The relay on `port` has handled every request on the broker (its own positions, tests/support/lag.py)."""
    return behind(bus, [port], ["inference.requests"]) == 0


def request_ids(messages, bus) -> list[str]:
    return [bus.schemas.decode(m.value())[1]["request_id"] for m in messages]


def test_good_messages_are_handled_and_malformed_ones_dead_lettered(bus, bus_env):
    sent_ids, poison = publish_mixed(bus, good=1000, bad=20)
    port = free_port()
    relay = start_relay(bus_env, metrics_port=port)
    try:
        wait_until(lambda: drained(bus, port), timeout=120, message="the relay to have handled every request")
        outputs = read_topic(bus, "inference.predictions", expected=1000)
        dead = read_topic(bus, "inference.requests.dlq", expected=20)
        assert relay.poll() is None, "the service must keep running after bad input"
    finally:
        exit_code = stop(relay)
    assert sorted(request_ids(outputs, bus)) == sorted(sent_ids)
    assert len(dead) == 20
    assert sorted(m.value() for m in dead) == sorted(poison)            # original bytes, untouched
    for message in dead:
        headers = dict(message.headers())
        assert message.key() == b"poison" and headers["origin"] == b"test"   # original key and headers kept
        assert headers["dlq.original.topic"] == b"inference.requests"
        assert headers["dlq.service"] == b"relay" and headers["dlq.stage"] in (b"decode", b"validate", b"handle")
        assert int(headers["dlq.original.offset"]) >= 0 and headers["dlq.error.class"]
        assert headers["dlq.error.message"]
    assert exit_code == 0, "SIGTERM is a graceful stop"


@pytest.mark.parametrize("transactional", [False, True], ids=["at-least-once", "exactly-once"])
def test_kill_9_mid_stream_then_restart_loses_nothing(bus, bus_env, transactional):
    sent_ids, _ = publish_mixed(bus, good=5000, bad=0)
    relay = start_relay(bus_env, transactional, handle_ms=1)      # ~5 s of work: time to find it mid-stream
    # committed offsets, not the relay's page: the kill must come once some offsets are committed, so that the
    # restart resumes from them mid-stream (at-least-once: the page's position runs ahead of its async commits)
    wait_until(lambda: 0 < lag(bus) < 4500, timeout=120, message="the relay to be mid-stream")
    relay.send_signal(signal.SIGKILL)
    relay.wait(timeout=30)
    relay = start_relay(bus_env, transactional)
    try:
        wait_until(lambda: lag(bus) == 0, timeout=180, message="lag 0 after restart")
    finally:
        stop(relay)
    outputs = request_ids(read_topic(bus, "inference.predictions", expected=5000, settle_s=2), bus)
    counts = collections.Counter(outputs)
    assert set(counts) == set(sent_ids), "every input handled at least once"
    if transactional:
        assert len(outputs) == 5000 and max(counts.values()) == 1, "exactly once in the output topic"


def test_a_message_that_keeps_crashing_the_service_is_dead_lettered_after_the_poison_budget(bus, bus_env):
    """One request raises in the handler: it is dead-lettered at once (HandlerFailed, the error), no crash.
    Another kills the process outright: after MLBUS_POISON_BUDGET deaths it goes to the DLQ (PoisonMessage).
    Every other request is answered exactly once."""
    publisher = Publisher(bus, "test-traffic")
    sent = []
    for i in range(300):
        event = request(i)
        if i in (100, 200):
            entity = "poison-raise" if i == 100 else "poison-exit"
            event = Event(event.record, key=entity, id=event.id, value={**event.value, "entity_id": entity})
        else:
            sent.append(event.value["request_id"])
        publisher.publish(event)
    publisher.flush()
    env, port = {**bus_env, "MLBUS_POISON_BUDGET": "2"}, free_port()
    relays = [start_relay(env, transactional=True, metrics_port=port)]

    def restarted_until_caught_up() -> bool:       # what a supervisor does: start it again when it died
        if relays[-1].poll() is not None:
            assert len(relays) <= 8, "restarts past what the budget allows: the message was not isolated"
            relays.append(start_relay(env, transactional=True, metrics_port=port))
        return drained(bus, port)
    try:
        wait_until(restarted_until_caught_up, timeout=240, message="the relay to get past both poison messages")
        relay = relays[-1]
        dead = read_topic(bus, "inference.requests.dlq", expected=2)
        outputs = read_topic(bus, "inference.predictions", expected=298)
        assert relay.poll() is None, "the relay still serving afterwards"
    finally:
        stop(relays[-1])
    crashes = len(relays) - 1
    assert 2 <= crashes <= 3, f"{crashes} crashes: a budget of 2 for the message that kills, plus one batch crash"
    assert sorted(request_ids(outputs, bus)) == sorted(sent)           # exactly once, nothing lost
    reasons = {m.key(): dict(m.headers()) for m in dead}
    assert set(reasons) == {b"poison-raise", b"poison-exit"}
    for headers in reasons.values():
        assert headers["dlq.stage"] == b"handler"
    assert reasons[b"poison-raise"]["dlq.error.class"] == b"HandlerFailed"
    assert reasons[b"poison-exit"]["dlq.error.class"] == b"PoisonMessage"
    assert b"RuntimeError: a meaning the handler does not survive" in reasons[b"poison-raise"]["dlq.error.message"]
    assert b"the process died while handling it" in reasons[b"poison-exit"]["dlq.error.message"]
