"""The scorer's core: a routing table kept current from deployments and trained versions, and the batch handler
that answers inference requests with one vectorised predict per version."""
from __future__ import annotations

import math
import time
from collections import defaultdict
from datetime import datetime, timedelta, timezone

from services.bus import BadInput, Bus, Event, Received
from services.bus.edge import all_finite
from services.bus.runtime import settle_heap
from services.domain import (ArtifactRefused, Ensemble, EPOCH, LookupRefused, PlanRefused, completed, compiled_forest,
                             entity_problem, load_servable, look_up, lookup_plan, number_frame, predict, request_frame,
                             wanted)
from services.adapters import ArtifactStore
from services.bus.logs import get_logger
from services.bus.projections.deployments import Deployments
from services.bus.projections.follow import Follower
from services.bus.projections.inventory import Inventory

from .features import NoFeatures
from .scoring import arrival, assign, prediction

UNKNOWN = "unknown"          # the metrics label of every model the registry does not know
MILLISECOND = timedelta(milliseconds=1)


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
    def __init__(self, table: RoutingTable, artifacts: ArtifactStore, clock=lambda: datetime.now(timezone.utc),
                 features=None):
        self.table = table
        self.artifacts = artifacts
        self.features = features or NoFeatures()     # ScorerFeatures: views and the online store, for lookups
        self.plans: dict[tuple[str, int], object] = {}    # (model, version) → its LookupPlan, or None: no views
        self.plans_refused: dict[tuple[str, int], str] = {}   # (model, version) → why its feature views are unusable
        self.reads: dict[tuple[str, str, str], object] = {}   # this batch's store reads (an entity asked twice)
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
        self.reads = {}
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
        plan = self._plan(entry.trained) if entry else None
        fitted = self._model(entry.trained) if entry and (model, version) not in self.plans_refused else None
        categories = (entry.trained.get("categorical_features") or ()) if entry else ()
        numbers = [f for f in entry.trained["features"] if f not in categories] if entry else []
        needed, needed_categories = set(numbers), set(categories)
        if plan and fitted is not None:
            self._read_ahead(plan, {batch[index].value["entity_id"] for index, *_ in items})
        rows, values, kept = [], [], []
        for index, route, served, deployment_id in items:
            if isinstance(results[index], BadInput):
                continue
            request = batch[index].value
            if fitted is None:
                reason = self._unservable(entry)
                results[index].append(prediction(request, batch[index].envelope.id, route, deployment_id, served,
                                                 None, None, {}, self.clock(),
                                                 error=f"v{version} cannot serve: {reason}", arrived=arrived[index]))
                continue
            own, lookups = request["features"], ()
            if plan:
                try:
                    lookups = self._look_up(request, plan, categories, arrived[index])
                except LookupRefused as refusal:
                    results[index] = refusal
                    continue
                request = completed(request, lookups, categories)
            given = request["features"]
            if not (given.keys() >= needed and (request["categories"] or {}).keys() >= needed_categories):
                missing = [f for f in numbers if f not in given] + \
                    [f for f in categories if f not in (request["categories"] or {})]
                results[index] = BadInput(f"request {request['request_id']} lacks features {missing[:5]}")
                continue
            row = [given[f] for f in numbers]
            # a looked-up value that is missing is NaN, as in training; a request's own values must be finite
            if not all_finite(row) and (impossible := [f for f, v in zip(numbers, row)
                                                       if not math.isfinite(v) and f in own]):
                results[index] = BadInput(f"request {request['request_id']} has non-finite features {impossible[:5]}")
                continue
            rows.append(request)
            values.append(row)
            kept.append((index, route, served, deployment_id, lookups))
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
        for row, (index, route, served, deployment_id, lookups) in enumerate(kept):
            request = batch[index].value
            probs = dict(zip(classes, probability_rows[row])) if probability_rows is not None else {}
            label = str(label_list[row]) if classified else None
            score = max(probs.values()) if probs else float(label_list[row])
            results[index].append(prediction(request, batch[index].envelope.id, route, deployment_id, served,
                                             label, score, probs, now, cpu_ms=cpu_ms,
                                             members=members[row] if members else (), arrived=arrived[index],
                                             lookups=lookups))

    def _plan(self, trained: dict):
        """The version's LookupPlan, None when it has no feature views (or they are refused: logged once, the
        version cannot serve)."""
        key = (trained["model"], trained["version"])
        if key not in self.plans:
            try:
                self.plans[key] = lookup_plan(trained)
            except PlanRefused as error:
                self.plans[key], self.plans_refused[key] = None, str(error)
                self.log.error("feature views refused", model=key[0], version=key[1], error=str(error))
        return self.plans[key]

    def _unservable(self, entry) -> str:
        """Why a version has no model to answer with."""
        if entry is None:
            return "version unknown"
        key = (entry.model, entry.version)
        return self.plans_refused.get(key) or self.refused.get(entry.trained["artifact_sha256"], "")

    def _look_up(self, request: dict, plan, categories, arrived: datetime) -> tuple[dict, ...]:
        """The request's lacking features, looked up for its entity at its arrival (LookupRefused: no entity)."""
        lacking = wanted(request, plan, categories)
        if not lacking:
            return ()
        entity = request["entity_id"]
        held = {} if entity_problem(entity) else {view: self._held(view, plan.views[view], entity) for view in lacking}
        return look_up(request, plan, categories, self.features.views, held, (arrived - EPOCH) // MILLISECOND)

    def _read_ahead(self, plan, entities: set[str]) -> None:
        """The batch's entities' values of each view the version looks up in, read at once (into self.reads)."""
        entities = {e for e in entities if not entity_problem(e)}
        for view, version in plan.views.items():
            missed = [e for e in entities if (view, version, e) not in self.reads]
            for entity, values in self.features.held_many(view, version, missed).items():
                self.reads[(view, version, entity)] = values

    def _held(self, view: str, version: str, entity: str):
        key = (view, version, entity)
        if key not in self.reads:
            self.reads[key] = self.features.held(view, version, entity)
        return self.reads[key]

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
