"""What the scorer's path costs per request in process, without Kafka: decode (with the edge checks and the
envelope), the scorer's batch handler, and publishing each prediction (envelope, encode, the produce call into a
producer that drops it), over in-memory messages in batches of 1,000. Best of 30 rounds, µs per request.

    .venv/bin/python -m tests.bench.rowcost [lr|rf] [--profile]
"""
from __future__ import annotations

import cProfile
import pstats
import sys
import time
from types import SimpleNamespace

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from services.bus import Bus, Event, derive_id
from services.bus.envelope import envelope_for
from services.bus.publish import Publisher, wire_form
from services.bus.received import decode_message
from services.bus.runtime import settle_heap
from services.domain import compiled_forest
from services.scorer.scorer import Scorer

from .scoring import FEATURES, NOW, training_data

BATCH = 1000


class Message:
    """confluent_kafka.Message's accessors, for one encoded request."""

    def __init__(self, topic: str, value: bytes, headers: list, offset: int):
        self._topic, self._value, self._headers, self._offset = topic, value, headers, offset

    def topic(self): return self._topic
    def partition(self): return 0
    def offset(self): return self._offset
    def timestamp(self): return (1, 1_800_000_000_000)
    def key(self): return b"entity"
    def value(self): return self._value
    def headers(self): return self._headers
    def error(self): return None


class DroppingProducer:
    def produce(self, *args, **kwargs) -> None:
        pass


def requests(bus: Bus, rows: np.ndarray) -> list[Message]:
    topic = bus.catalogue.physical("inference.requests")
    messages = []
    for i in range(BATCH):
        request_id = f"r-{i:07d}"
        event = Event("mlbus.InferenceRequest", key=f"c{i}", id=derive_id(request_id), subject=request_id, value={
            "request_id": request_id, "entity_id": f"c{i}", "model": "m",
            "features": dict(zip(FEATURES, rows[i % len(rows)].tolist())), "categories": {}, "sent_at": NOW})
        _, _, value, headers = wire_form(bus, event, envelope_for(event, "load"))
        messages.append(Message(topic, value, headers, i))
    return messages


def scorer_for(model) -> Scorer:
    """A scorer whose routing table serves `model` as version 1 of "m" (no broker, no artifact store)."""
    trained = {"artifact_sha256": "in-memory", "features": FEATURES, "categorical_features": [],
               "task": "classification", "model": "m", "version": 1}
    table = SimpleNamespace(
        deployments=SimpleNamespace(current={"m": {"deployment_id": "d", "routes": [
            {"version": 1, "variant": "champion", "share": 1.0, "served": True}]}}),
        inventory=SimpleNamespace(version=lambda model, version: SimpleNamespace(trained=trained)))
    scorer = Scorer(table, artifacts=None)
    scorer.models["in-memory"] = compiled_forest(model)        # as Scorer._model serves what it loads
    return scorer


def main() -> None:
    kind = "rf" if "rf" in sys.argv[1:] else "lr"
    bus = Bus.from_env({"MLBUS_NAMESPACE": "rowcost."})
    bus.schemas.resolver = lambda fingerprint: None          # local schemas only
    features, labels = training_data()
    model = (RandomForestClassifier(n_estimators=100, max_depth=10, random_state=0) if kind == "rf"
             else LogisticRegression(max_iter=1000)).fit(pd.DataFrame(features, columns=FEATURES), labels)
    messages, scorer = requests(bus, features), scorer_for(model)
    publisher = Publisher(bus, "scorer", producer=DroppingProducer())
    settle_heap()

    def one_round() -> tuple[float, float, float]:
        started = time.perf_counter()
        received = [decode_message(bus, m) for m in messages]
        decoded = time.perf_counter()
        results = scorer(received)
        handled = time.perf_counter()
        for message, events in zip(received, results):
            for event in events:
                publisher.publish(event, cause=message.envelope)
        return decoded - started, handled - decoded, time.perf_counter() - handled

    for _ in range(3):
        one_round()
    if "--profile" in sys.argv:
        profile = cProfile.Profile()
        profile.runcall(lambda: [one_round() for _ in range(20)])
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)
        return
    best = [min(column) * 1e6 / BATCH for column in zip(*(one_round() for _ in range(30)))]
    print(f"{kind}: µs per request: decode {best[0]:.1f}, handler {best[1]:.1f}, publish {best[2]:.1f}, "
          f"total {sum(best):.1f}")


if __name__ == "__main__":
    main()
