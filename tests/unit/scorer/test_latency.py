"""Latency is measured by mlbus's own clocks: from the broker's LogAppendTime of the request (or, on a topic the
broker does not stamp, the scorer's receive time) to the prediction — never from the client's `sent_at`, so a
client that back- or future-dates it cannot move the canary gate or the SLO."""
from dataclasses import replace
from datetime import datetime, timedelta, timezone

from services.bus import Event
from services.adapters import ArtifactStore
from services.scorer.scorer import RoutingTable, Scorer
from services.scorer.scoring import arrival, prediction
from tests.support.handlers import received
from tests.unit.auditor.test_erasure import bus_without_broker

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)
BROKER_MS = int((NOW - timedelta(milliseconds=40)).timestamp() * 1000)       # on the broker 40 ms before now


def request(sent_at: datetime) -> dict:
    return {"request_id": "r1", "entity_id": "e1", "model": "m", "features": {"x": 1.0}, "categories": {},
            "sent_at": sent_at}


def test_arrival_is_the_brokers_append_time_else_the_scorers_receive_time():
    assert arrival(BROKER_MS, True, NOW) == NOW - timedelta(milliseconds=40)
    assert arrival(BROKER_MS - 3_600_000, False, NOW) == NOW        # a CreateTime is the client's: not trusted


def test_a_backdated_or_future_dated_sent_at_does_not_move_the_latency():
    arrived = NOW - timedelta(milliseconds=40)
    latencies = {prediction(request(sent_at), "c", None, None, True, None, None, {}, NOW, arrived=arrived)
                 .value["latency_ms"] for sent_at in (NOW - timedelta(hours=1), NOW + timedelta(hours=1), NOW)}
    assert latencies == {40.0}


def test_the_scorer_measures_from_the_brokers_time(tmp_path):
    scorer = Scorer(RoutingTable(bus_without_broker()), ArtifactStore(tmp_path, 1 << 20), clock=lambda: NOW)
    answers = []
    for sent_at in (NOW - timedelta(days=1), NOW + timedelta(days=1)):         # lies either way
        message = replace(received("mlbus.InferenceRequest", request(sent_at)), timestamp_ms=BROKER_MS,
                          stamped_by_broker=True)
        [[answer]] = scorer([message])
        answers.append(answer)
    assert all(isinstance(a, Event) and a.value["latency_ms"] == 40.0 for a in answers)
