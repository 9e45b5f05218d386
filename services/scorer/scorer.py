"""The scorer's core: a routing table kept current from deployments and trained versions, and the batch handler
that answers inference requests with one vectorised predict per version."""
from __future__ import annotations

import math
import time
from collections import defaultdict
from datetime import datetime, timezone

from services.bus import BadInput, Bus, Event, Received
from services.bus.edge import all_finite
from services.bus.runtime import settle_heap
from services.domain import (ArtifactRefused, Ensemble, compiled_forest, load_servable, number_frame, predict,
                             request_frame)
from services.adapters import ArtifactStore
from services.bus.logs import get_logger
from services.bus.projections.deployments import Deployments
from services.bus.projections.follow import Follower
from services.bus.projections.inventory import Inventory

from .scoring import arrival, assign, prediction

UNKNOWN = "unknown"          # the metrics label of every model the registry does not know


class RoutingTable:
    """Deployments and trained versions, kept current by a thread that tails their topics."""

    def __init__(self, bus: Bus, on_deployment=lambda deployment: None):
        self.on_deployment = on_deployment       # e.g. load the models a new deployment routes to
        self.deployments = Deployments()
        self.inventory = Inventory()
        self.log = get_logger(component="scorer-routing")
        self.follower = Follower(bus, "scorer-routing", ("mlbus.DeploymentChanged", "mlbus.ModelTrained"),
                                 [self.inventory.apply, self._deploy])

    def start(self, timeout_s: float = 60.0) -> None:
        self.follower.start(timeout_s)

    def _deploy(self, record: str, value: dict) -> None:
        """A model's new routes are applied once their models are loaded: until then its routes before serve
        (a canary's first answers would otherwise wait for its model to load, and look slow). A model's first
        deployment routes at once, loading on its first request: nothing else could answer meanwhile."""
        if record != "mlbus.DeploymentChanged" or value["phase"] == "refused":
            self.deployments.apply(record, value)
            return
        if value["model"] in self.deployments.current:
            self.on_deployment(value)
            self.deployments.apply(record, value)
        else:
            self.deployments.apply(record, value)
            self.on_deployment(value)
        # what serves from now on (a test waits for this line before it sends requests, not for a clock)
        self.log.info("routes changed", model=value["model"], deployment_id=value["deployment_id"],
                      phase=value["phase"], routes=[f"v{r['version']} {r['variant']}" for r in value["routes"]])


class Scorer:
    def __init__(self, table: RoutingTable, artifacts: ArtifactStore, clock=lambda: datetime.now(timezone.utc)):
        self.table = table
        self.artifacts = artifacts
        self.models: dict[str, object] = {}          # artifact sha256 → what serves that version
        self.loaded: dict[str, object] = {}          # artifact sha256 → loaded artifact (an ensemble's members once)
        self.refused: dict[str, str] = {}            # artifact sha256 → why it will not load
        self.clock = clock
        self.metrics: PredictionMetrics | None = None       # set by __main__: the runtime's registry
        self.log = get_logger(component="scorer")

    def observe(self, results: list) -> None:
        """Each prediction's latency and outcome into the process's metrics, per model, version and variant: a
        model the registry has no version of is counted as `unknown` (a label set per name sent would grow
        without bound)."""
        groups: dict[tuple, list[float]] = defaultdict(list)
        for result in results:
            if isinstance(result, BadInput):
                continue
            for event in result:
                p = event.value
                model = p["model"] if self.table.inventory.latest(p["model"]) else UNKNOWN
                key = (model, str(p["version"]), p["variant"], "error" if p["error"] else "served")
                groups[key].append(p["latency_ms"] / 1000)
        for (model, version, variant, outcome), latencies in groups.items():
            self.metrics.predictions.labels(model, version, variant, outcome).inc(len(latencies))
            histogram = self.metrics.latency.labels(model, version, variant)
            for seconds in latencies:
                histogram.observe(seconds)

    def __call__(self, batch: list[Received]) -> list[list[Event] | BadInput]:
        results: list[list[Event] | BadInput] = [[] for _ in batch]
        work: dict[tuple[str, int], list[tuple[int, dict, bool, str | None]]] = defaultdict(list)
        received_at = self.clock()
        arrived = [arrival(m.timestamp_ms, m.stamped_by_broker, received_at) for m in batch]
        for index, message in enumerate(batch):
            request = message.value
            current = self.table.deployments.current.get(request["model"])
            served, shadows = assign(current["routes"], request["entity_id"]) if current else (None, [])
            if served is None:
                results[index] = [prediction(request, message.envelope.id, None, None, True, None, None, {},
                                             self.clock(), error=f"no deployment serves model {request['model']!r}",
                                             arrived=arrived[index])]
                continue
            for route in [served, *shadows]:
                work[(request["model"], route["version"])].append((index, route, route is served,
                                                                    current["deployment_id"]))
        for (model, version), items in work.items():
            self._score(model, version, items, batch, results, arrived)
        if self.metrics is not None:
            self.observe(results)
        return results

    def _score(self, model: str, version: int, items: list, batch: list[Received], results: list,
               arrived: list[datetime]) -> None:
        entry = self.table.inventory.version(model, version)
        fitted = self._model(entry.trained) if entry else None
        categories = (entry.trained.get("categorical_features") or ()) if entry else ()
        numbers = [f for f in entry.trained["features"] if f not in categories] if entry else []
        needed, needed_categories = set(numbers), set(categories)
        rows, values, kept = [], [], []
        for index, route, served, deployment_id in items:
            if isinstance(results[index], BadInput):
                continue
            request = batch[index].value
            if fitted is None:
                reason = self.refused.get(entry.trained["artifact_sha256"], "") if entry else "version unknown"
                results[index].append(prediction(request, batch[index].envelope.id, route, deployment_id, served,
                                                 None, None, {}, self.clock(),
                                                 error=f"v{version} cannot serve: {reason}", arrived=arrived[index]))
                continue
            given = request["features"]
            if not (given.keys() >= needed and (request["categories"] or {}).keys() >= needed_categories):
                missing = [f for f in numbers if f not in given] + \
                    [f for f in categories if f not in (request["categories"] or {})]
                results[index] = BadInput(f"request {request['request_id']} lacks features {missing[:5]}")
                continue
            row = [given[f] for f in numbers]
            if not all_finite(row):
                impossible = [f for f, v in zip(numbers, row) if not math.isfinite(v)]
                results[index] = BadInput(f"request {request['request_id']} has non-finite features {impossible[:5]}")
                continue
            rows.append(request)
            values.append(row)
            kept.append((index, route, served, deployment_id))
        if not rows:
            return
        cpu_started = time.process_time()
        features = (request_frame(rows, entry.trained["features"], categories) if categories
                    else number_frame(values, numbers))          # the rows as checked above
        if isinstance(fitted, Ensemble):         # and what each member said, for explain
            labels, probabilities, classes, members = fitted.answer(features, entry.trained["task"])
        else:
            (labels, probabilities, classes), members = predict(fitted, features, entry.trained["task"]), None
        cpu_ms = (time.process_time() - cpu_started) * 1000 / len(rows)        # the version's cost, per prediction
        now = self.clock()
        probability_rows = probabilities.tolist() if probabilities is not None else None
        label_list = labels.tolist()
        classified = entry.trained["task"] == "classification"
        for row, (index, route, served, deployment_id) in enumerate(kept):
            request = batch[index].value
            probs = dict(zip(classes, probability_rows[row])) if probability_rows is not None else {}
            label = str(label_list[row]) if classified else None
            score = max(probs.values()) if probs else float(label_list[row])
            results[index].append(prediction(request, batch[index].envelope.id, route, deployment_id, served,
                                             label, score, probs, now, cpu_ms=cpu_ms,
                                             members=members[row] if members else (), arrived=arrived[index]))

    def preload(self, deployment: dict) -> None:
        """Load a deployment's models when it arrives, not on the first request (no cold-start latency)."""
        for route in deployment["routes"]:
            entry = self.table.inventory.version(deployment["model"], route["version"])
            if entry is not None:
                self._model(entry.trained)

    def _model(self, trained: dict) -> object | None:
        sha = trained["artifact_sha256"]
        if sha not in self.models and sha not in self.refused:
            try:
                # a random forest walked in compiled code where it answers as scikit-learn does (forest.py)
                self.models[sha] = compiled_forest(load_servable(trained, self._load))
                settle_heap()                       # the model's objects out of every later collection
            except ArtifactRefused as error:
                self.refused[sha] = str(error)
                self.log.error("artifact refused", model=trained["model"], version=trained["version"], error=str(error))
        return self.models.get(sha)

    def _load(self, uri: str, sha: str) -> object:
        if sha not in self.loaded:
            self.loaded[sha] = self.artifacts.load(uri, sha)
        return self.loaded[sha]


class PredictionMetrics:
    """The scorer's own Prometheus metrics: prediction latency (request on the broker → prediction made) and counts."""

    def __init__(self, registry):
        from prometheus_client import Counter, Histogram
        from services.bus.metrics import LATENCY_BUCKETS
        labels = ["model", "version", "variant"]
        self.latency = Histogram("mlbus_prediction_latency_seconds",
                                 "From the request's arrival on the broker (LogAppendTime) to prediction made", labels,
                                 buckets=LATENCY_BUCKETS, registry=registry)
        self.predictions = Counter("mlbus_predictions_total", "Predictions by outcome (served | error)",
                                   [*labels, "outcome"], registry=registry)


DELIVERY = {"exactly-once": True, "at-least-once": False}         # MLBUS_SCORER_DELIVERY → transactional
