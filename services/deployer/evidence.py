"""Live evidence for canary gates: per deployment and version, predictions, errors, latency and, once
outcomes arrive, online accuracy (classification: the outcome's label) or mean absolute error (regression:
the outcome's value against the predicted score). Bounded memory; reset at every step."""
from __future__ import annotations

from collections import OrderedDict, defaultdict
from dataclasses import dataclass

import numpy as np

MAX_TRACKED = 50_000


@dataclass
class Tally:
    predictions: int = 0
    errors: int = 0
    outcomes: int = 0
    labelled: int = 0           # outcomes with a label (classification)
    correct: int = 0
    valued: int = 0             # outcomes with a value and a predicted score (regression)
    absolute_error: float = 0.0


class EvidenceBook:
    def __init__(self):
        self.latencies: dict[tuple[str, int], list[float]] = defaultdict(list)
        self.tallies: dict[tuple[str, int], Tally] = defaultdict(Tally)
        # request id → [(deployment, version, predicted label, predicted score)], oldest first, for joining outcomes
        self.served: OrderedDict[str, list[tuple[str, int, str | None, float | None]]] = OrderedDict()
        # request id → an outcome that came before its predictions (topics are not ordered with each other)
        self.early: OrderedDict[str, dict] = OrderedDict()

    def prediction(self, value: dict) -> None:
        if value["deployment_id"] is None or value["version"] is None:
            return
        key = (value["deployment_id"], value["version"])
        tally = self.tallies[key]
        tally.predictions += 1
        tally.errors += value["error"] is not None
        if len(self.latencies[key]) < MAX_TRACKED:
            self.latencies[key].append(value["latency_ms"])
        early = self.early.get(value["request_id"])
        if early is not None:                   # its outcome is already here: counted at once
            self._count(key, value["label"], value["score"], early)
            return
        self.served.setdefault(value["request_id"], []).append((*key, value["label"], value["score"]))
        while len(self.served) > MAX_TRACKED:
            self.served.popitem(last=False)

    def outcome(self, value: dict) -> None:
        """Join the outcome to its request's predictions; one that comes first waits for them (bounded)."""
        served = self.served.pop(value["request_id"], None)
        if served is None:
            self.early[value["request_id"]] = value
            while len(self.early) > MAX_TRACKED:
                self.early.popitem(last=False)
            return
        for deployment_id, version, label, score in served:
            self._count((deployment_id, version), label, score, value)

    def _count(self, key: tuple[str, int], label: str | None, score: float | None, outcome: dict) -> None:
        tally = self.tallies[key]
        tally.outcomes += 1
        if outcome["label"] is not None:
            tally.labelled += 1
            tally.correct += label is not None and label == outcome["label"]
        if outcome["value"] is not None and score is not None:
            tally.valued += 1
            tally.absolute_error += abs(outcome["value"] - score)

    def stats(self, deployment_id: str, version: int) -> dict:
        tally = self.tallies[(deployment_id, version)]
        latencies = self.latencies[(deployment_id, version)]
        return {"count": tally.predictions, "errors": tally.errors, "outcomes": tally.outcomes,
                "accuracy": tally.correct / tally.labelled if tally.labelled else None,
                "mae": tally.absolute_error / tally.valued if tally.valued else None,
                "p99_ms": float(np.percentile(latencies, 99)) if latencies else 0.0}

    def reset(self, deployment_id: str) -> None:
        for store in (self.tallies, self.latencies):
            for key in [k for k in store if k[0] == deployment_id]:
                del store[key]


class ServingWindow:
    """Per model, the champion's latest served predictions (latency, failed?), for its SLOs: a tumbling window
    of the spec's slo_window predictions, emptied when judged or when the champion changes."""

    def __init__(self):
        self.rows: dict[str, list[tuple[float, bool]]] = defaultdict(list)
        self.version: dict[str, int] = {}

    def add(self, model: str, version: int, latency_ms: float, failed: bool) -> list[tuple[float, bool]]:
        if self.version.get(model) != version:
            self.version[model], self.rows[model] = version, []
        self.rows[model].append((latency_ms, failed))
        return self.rows[model]

    def clear(self, model: str) -> None:
        self.rows[model] = []
