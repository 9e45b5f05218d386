"""Live evidence for canary gates: per deployment and version, predictions, errors, latency and, once
outcomes arrive, online accuracy. Bounded memory; reset at every step."""
from __future__ import annotations

from collections import OrderedDict, defaultdict

import numpy as np

MAX_TRACKED = 50_000


class EvidenceBook:
    def __init__(self):
        self.latencies: dict[tuple[str, int], list[float]] = defaultdict(list)
        self.counts: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0, 0, 0])  # n, errors, outcomes, ok
        # request id → [(deployment, version, predicted label)], oldest first, for joining outcomes
        self.labels: OrderedDict[str, list[tuple[str, int, str | None]]] = OrderedDict()

    def prediction(self, value: dict) -> None:
        if value["deployment_id"] is None or value["version"] is None:
            return
        key = (value["deployment_id"], value["version"])
        counts = self.counts[key]
        counts[0] += 1
        counts[1] += value["error"] is not None
        if len(self.latencies[key]) < MAX_TRACKED:
            self.latencies[key].append(value["latency_ms"])
        self.labels.setdefault(value["request_id"], []).append((*key, value["label"]))
        while len(self.labels) > MAX_TRACKED:
            self.labels.popitem(last=False)

    def outcome(self, value: dict) -> None:
        for deployment_id, version, label in self.labels.pop(value["request_id"], []):
            counts = self.counts[(deployment_id, version)]
            counts[2] += 1
            counts[3] += label is not None and label == value["label"]

    def stats(self, deployment_id: str, version: int) -> dict:
        n, errors, outcomes, correct = self.counts[(deployment_id, version)]
        latencies = self.latencies[(deployment_id, version)]
        return {"count": n, "errors": errors, "outcomes": outcomes,
                "accuracy": correct / outcomes if outcomes else 0.0,
                "p99_ms": float(np.percentile(latencies, 99)) if latencies else 0.0}

    def reset(self, deployment_id: str) -> None:
        for store in (self.counts, self.latencies):
            for key in [k for k in store if k[0] == deployment_id]:
                del store[key]
