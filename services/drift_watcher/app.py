"""The drift-watcher as a faust-streaming application: the Kafka and state edge around decide.py.

    inference.requests, inference.predictions, outcomes
        └─ router (router.py): decode (else DLQ), re-key by model ─► <app>-observations ◄─ tick (timer)
                                                                        └─ observe (faust) ─► monitoring.drift,
                                                                                     alerts, training.requests
Every input is decoded with the bus's Avro codec. All of a model's state — its open window's head, the
window's rows, the predictions awaiting outcomes, the retraining run — lives in one faust table and is
written only while handling the model's own partition of the observations topic, so the table's
changelog holds it in order and a restart (kill -9 included) recovers a consistent prefix of it.

Effectively once, without faust's exactly-once mode (which commits outputs to external topics outside
the input's transaction, and can hang on shutdown): the window head records the offset of the last
observation it took in, so a replayed observation is skipped; an observation seen twice (faust re-reads
uncommitted input after a rebalance) is known by its event id for ten windows and counted once; a window's outputs
are sent and
acknowledged before its head moves on, so a crash in between closes the same window again with the
same content, hence the same deterministic ids; and ids already on the output topics — read back by
the Follower before processing starts — are not sent twice. Reference data (trained versions with
their profiles, deployments, specs) is followed from the start of its topics, not kept in the table.

Feature views (issue 36, feature_views.py): in the background, a Follower reads features.views (signed
definitions) from its start, then another features.online; the tick closes each view version's windows of event time
into DriftReports and alerts, sent like a model's (their ids hold a nonce made from the drift-watcher's key, the
same at every start, so a window closed again after a restart is not sent twice). Once features.online is read to
its end, and then every SKEW_EVERY_S, it compares the online values that came since with the offline store's
(services/domain/features_monitoring.py): the skew metric and alert.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import threading
import time
from collections import Counter as Tally

import faust
from confluent_kafka import Producer

from services.bus import Bus, Event
from services.bus.edge import content
from services.bus.errors import is_infrastructure
from services.bus.poison import poison_record
from services.bus.credentials import aiokafka_credentials
from services.bus.envelope import envelope_for, new_id
from services.bus.kafka import group_id, producer_config
from services.bus.identity import ACT_SIGNERS, act_verifier, signed_only
from services.bus.logs import get_logger
from services.domain import Monitoring, SpecMonitoring
from services.bus.projections.deployments import Deployments
from services.bus.projections.follow import Follower
from services.bus.projections.inventory import Inventory
from services.bus.publish import Publisher, wire_form
from services.bus.schema_topic import SchemasTopicResolver
from services.bus.topics import TopicAdmin
from services.adapters import OfflineStore, value_from_record, view_from_record
from services.domain import ViewsRefused, skew

from .decide import SOURCE, ClosedWindow, RetrainState, alerts, as_frame, drift_report, on_champion_report, \
    report_event
from .feature_views import FeatureWatch, skew_alert, subject, view_alerts
from .router import TICK_HEADER, Router
from .windows import (due, groups_of, new_head, outcome_amount, row_key, with_judged, with_outcome, with_prediction,
                      with_request)

RAW = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
REFERENCE = ("mlbus.ModelTrained", "mlbus.DeploymentChanged", "mlbus.ModelSpecDefined",
             "mlbus.PromotionPolicyDefined")        # policies: the fairness limits, judged online too
OUTPUTS = ("mlbus.DriftReport", "mlbus.Alert", "mlbus.TrainingRequested")
FEATURE_RECORDS = ("mlbus.FeatureViewDefined", "mlbus.FeatureValue")
PARTITIONS = 3
SKEW_EVERY_S = 300.0       # how often online values are compared with the offline store's
MAX_SKEW_QUEUE = 20_000    # online values awaiting that check (the newest per key; beyond: the oldest go)
UNKNOWN = "unknown"        # the one metrics label of models the registry does not know
SEEN_WINDOWS = 10          # a duplicate more than this many windows after its original is counted again


def header_pairs(headers) -> list[tuple[str, bytes]]:
    """Faust hands headers over as a mapping or as pairs, depending on where the message came from."""
    if not headers:
        return []
    return list(headers.items()) if isinstance(headers, dict) else [tuple(h) for h in headers]


class WindowMetrics:
    """The drift-watcher's own Prometheus series: windows judged, and the alerts they raised, per model."""

    def __init__(self, registry):
        from prometheus_client import Counter, Gauge
        self.windows = Counter("mlbus_drift_windows_total", "Windows judged, per model and version (drifted: yes|no)",
                               ["model", "version", "drifted"], registry=registry)
        self.alerts = Counter("mlbus_drift_alerts_total", "Alerts raised from windows, per model and kind",
                              ["model", "kind"], registry=registry)
        self.drift_share = Gauge("mlbus_drift_share", "Share of features drifted in the latest window",
                                 ["model", "version"], registry=registry)
        self.observations = Counter("mlbus_drift_observations_total", "Observations and ticks taken in, per model "
                                    f"('{UNKNOWN}': a model the registry does not know, not windowed)", ["model"],
                                    registry=registry)

    def closed(self, model: str, version: int, report: dict, outputs: list[Event]) -> None:
        self.windows.labels(model, str(version), "yes" if report["dataset_drift"] else "no").inc()
        self.drift_share.labels(model, str(version)).set(report["drift_share"])
        for output in outputs:
            if output.record == "mlbus.Alert":
                self.alerts.labels(model, output.value["kind"]).inc()


class FeatureMetrics:
    """The feature views' series: values taken in or skipped, windows judged, and skew against the offline store."""

    def __init__(self, registry):
        from prometheus_client import Counter, Gauge
        self.values = Counter("mlbus_feature_values_watched_total", "Feature values taken into drift windows, per "
                              "view", ["view"], registry=registry)
        self.skipped = Counter("mlbus_feature_values_skipped_total", "Feature values and view definitions the "
                               "drift-watcher skipped, per reason", ["reason"], registry=registry)
        self.windows = Counter("mlbus_feature_drift_windows_total", "Feature view windows judged (drifted: yes|no)",
                               ["view", "version", "drifted"], registry=registry)
        self.drift_share = Gauge("mlbus_feature_drift_share", "Share of a view's features drifted in its latest "
                                 "window", ["view", "version"], registry=registry)
        self.compared = Counter("mlbus_feature_skew_compared_total", "Online feature values compared with the "
                                "offline store's", ["view", "version"], registry=registry)
        self.mismatches = Gauge("mlbus_feature_skew_mismatches", "Online feature values that differ from the "
                                "offline store's in the latest skew check (0: no skew)", ["view", "version"],
                                registry=registry)
        self.mismatched = Counter("mlbus_feature_skew_found_total", "Online feature values found differing "
                                  "from the offline store's, per reason (value-differs | missing-offline)",
                                  ["view", "version", "reason"], registry=registry)
        self.pending = Gauge("mlbus_feature_skew_pending", "Online feature values the offline store has not "
                             "reached yet, awaiting the next skew check", registry=registry)
        self.unchecked = Counter("mlbus_feature_skew_unread_total", "Skew checks of a view version whose offline "
                                 "store could not be read", ["view", "version"], registry=registry)


def feature_nonce(signer) -> str:
    """The nonce of feature windows' output ids: from the drift-watcher's private key (HMAC), so the same at every
    start and unknown to anyone else; '' without a signer (tests)."""
    key = getattr(signer, "private_key", None)
    return hmac.new(key, b"mlbus drift-watcher feature windows", hashlib.sha256).hexdigest()[:32] if key else ""


class Emitted:
    """Ids of what is already on the output topics (read back from them), by record type: never sent twice.
    By type, because others write alerts and training requests too (`app` among them): an alert can never
    stand for a drift report of the same id. Output ids hold the window's nonce, so none can be sent first."""

    ID_FIELDS = {"mlbus.DriftReport": "report_id", "mlbus.Alert": "alert_id", "mlbus.TrainingRequested": "request_id"}

    def __init__(self):
        self.ids: set[tuple[str, str]] = set()

    def apply(self, record: str, value: dict) -> None:
        if record in self.ID_FIELDS:
            self.ids.add((record, value[self.ID_FIELDS[record]]))


def faust_credentials(settings) -> faust.SASLCredentials | None:
    """The drift-watcher's broker credentials for faust's aiokafka connections (None: an unsecured broker)."""
    found = aiokafka_credentials(settings)
    return faust.SASLCredentials(**found) if found else None


class DriftWatcher:
    def __init__(self, bus: Bus, tick_interval_s: float = 1.0):
        self.bus = bus
        self.log = get_logger(component=SOURCE)
        settings = bus.settings
        datadir = settings.storage.var_dir / "drift-watcher"
        datadir.mkdir(parents=True, exist_ok=True)
        self.app_id = group_id(settings, "windows")        # the router has mlbus.drift-watcher
        self.app = faust.App(
            self.app_id, broker=f"kafka://{settings.bootstrap}", store="memory://",
            processing_guarantee="at_least_once", topic_partitions=PARTITIONS,
            topic_replication_factor=settings.connection.replication or 1, broker_session_timeout=10,
            broker_heartbeat_interval=2,
            consumer_auto_offset_reset="earliest", web_enabled=False, datadir=str(datadir),
            broker_credentials=faust_credentials(settings))
        verify = act_verifier(bus)           # specs and policies are folded only when signed by whom may make them
        self.inventory, self.deployments, self.specs, self.emitted = (Inventory(), Deployments(), SpecMonitoring(),
                                                                      Emitted())
        self.follower = Follower(bus, SOURCE, REFERENCE + OUTPUTS,
                                 [signed_only(self.inventory.apply, verify, ACT_SIGNERS), self.deployments.apply,
                                  signed_only(self.specs.apply, verify, ACT_SIGNERS), self.emitted.apply])
        self.observations = self.app.topic(f"{self.app_id}-observations", partitions=PARTITIONS, internal=True, **RAW)
        # One table for all of a model's state (see the module docstring); keys say what they hold:
        # head|MODEL, row|MODEL|SEQ|r3 (request) or p3 (prediction), seen|ID (an observation's id → its window),
        # ids|MODEL|SEQ (the ids a closed window saw), served|REQUEST, retrain|MODEL
        self.state = self.app.Table("state", default=None)
        self._topics: dict[str, faust.TopicT] = {}
        self._models: set[str] | None = None           # models with a head; found in the table at the first tick
        self._ticks = Producer(producer_config(settings, f"{SOURCE}-ticks"))   # the router's partitioner
        self.router = Router(bus, self.observations.get_topic_name())
        self.metrics = WindowMetrics(self.router.runtime.metrics.registry)     # served with the router's
        self.app.agent(self.observations, name="observe")(self.observe)
        self.app.timer(tick_interval_s)(self.tick)
        # feature views (see the module docstring), folded by their own follower's thread under features_lock
        self.features, self.features_lock = FeatureWatch(), threading.Lock()
        self.skew_queue: dict[tuple, object] = {}
        self.skew_every_s, self._skew_at = SKEW_EVERY_S, None     # first: once features.online is read to its end
        self.offline = OfflineStore(settings.storage.features_offline)
        self.nonce = feature_nonce(bus.signer)
        self.feature_metrics = FeatureMetrics(self.router.runtime.metrics.registry)
        self.skipped: Tally[str] = Tally()
        # definitions read to their end before the values (values of a view version not defined are skipped)
        self.views_follower = Follower(bus, f"{SOURCE}-views", FEATURE_RECORDS[:1],
                                       [signed_only(self.fold_feature, verify, ACT_SIGNERS)])
        self.feature_follower = Follower(bus, f"{SOURCE}-features", FEATURE_RECORDS[1:], [self.fold_feature])
        self.app.timer(tick_interval_s)(self.tick_features)

    def start_reference_data(self) -> None:
        """Before faust starts: the reference data read to its end, then the router running."""
        self.bus.schemas.resolver = SchemasTopicResolver(self.bus)
        Publisher(self.bus, SOURCE).announce(OUTPUTS)
        self.follower.start()
        threading.Thread(target=self.follow_features, name="features-start", daemon=True).start()
        TopicAdmin(self.bus).ensure_internal(self.observations.get_topic_name(), PARTITIONS)
        self.router.start()

    # -- observe: windows, joins, closing ------------------------------------------------------------------
    async def observe(self, stream) -> None:
        """Every observation into its model's window. One the code raises on is skipped, said and counted
        (poison_record: the agent is inside the poison budget too); a failure of the infrastructure ends the
        process loudly, so it is restarted (faust would otherwise leave a crashed agent behind, silent)."""
        async for event in stream.events():
            try:
                await self.observe_one(event)
            except Exception as error:             # noqa: BLE001 - told apart just below
                if is_infrastructure(error):
                    self.log.critical("observe failed; the drift-watcher stops", error=repr(error))
                    os._exit(1)
                poison_record(SOURCE, "agent", self.observations.get_topic_name(), event.message.offset, error)

    async def observe_one(self, event) -> None:
        model, offset = event.key.decode(), event.message.offset
        known = bool(self.inventory.latest(model))
        self.metrics.observations.labels(model if known else UNKNOWN).inc()
        if not known:                                 # no window (state, metrics) for a model the registry lacks
            return
        if self._models is not None:
            self._models.add(model)
        head = self.state.get(f"head|{model}") or new_head(nonce=new_id())
        if offset <= head["offset"]:
            return                                    # taken in before a restart: its effects are in the table
        headers = dict(header_pairs(event.message.headers))
        if TICK_HEADER in headers:
            await self.close_if_due(model, head, int(headers[TICK_HEADER]), offset)
            return
        record, value = self.bus.schemas.decode(event.value)      # the router let only what decodes through
        at_ms = int(event.message.timestamp * 1000)
        if record == "mlbus.InferenceRequest":
            head = self.add_request(model, head, value, at_ms)
            await self.close_if_due(model, head, at_ms, offset)
        elif record == "mlbus.Prediction":
            self.add_prediction(model, head, value, offset)
        elif record == "mlbus.Outcome":
            self.add_outcome(model, head, value, offset)

    def add_request(self, model: str, head: dict, request: dict, at_ms: int) -> dict:
        if self.state.get(f"seen|{request['request_id']}") is not None:
            return head                                   # delivered twice (a retry, a rebalance): counted once
        known = self.columns(model)           # only what a version was trained on: a request may carry any number
        self.state[f"row|{row_key(model, head['seq'], 'r', head['rows'])}"] = {
            "id": request["request_id"], "features": {f: v for f, v in request["features"].items() if f in known},
            "categories": {f: v for f, v in (request["categories"] or {}).items() if f in known}}
        self.state[f"seen|{request['request_id']}"] = head["seq"]
        attributes = self.sensitive(model)
        if attributes:                                   # its groups, for the fairness of its outcome's window
            self.state[f"groups|{request['request_id']}"] = groups_of(request, attributes)
        return with_request(head, at_ms)

    def columns(self, model: str) -> set[str]:
        """The features (numeric and categorical) any version of the model was trained on."""
        return {f for entry in self.inventory.latest(model) for f in entry.trained.get("features") or ()}

    def sensitive(self, model: str) -> set[str]:
        """The sensitive attributes any version of the model was measured on at training."""
        return {a for entry in self.inventory.latest(model) for a in content(entry.trained.get("fairness_json"))}

    def add_prediction(self, model: str, head: dict, prediction: dict, offset: int) -> None:
        if prediction["version"] is None or prediction["error"] or \
                self.state.get(f"seen|{prediction['prediction_id']}") is not None:
            return
        entry = {"id": prediction["prediction_id"], "version": prediction["version"],
                 "variant": prediction["variant"], "label": prediction["label"], "score": prediction["score"]}
        self.state[f"seen|{prediction['prediction_id']}"] = head["seq"]
        self.state[f"row|{row_key(model, head['seq'], 'p', head['predictions'])}"] = entry
        served = f"served|{prediction['request_id']}"
        self.state[served] = (self.state.get(served) or []) + [entry]
        self.put_head(model, with_prediction(head), offset)

    def add_outcome(self, model: str, head: dict, outcome: dict, offset: int) -> None:
        served = f"served|{outcome['request_id']}"
        groups = self.state.pop(f"groups|{outcome['request_id']}", None)
        for p in self.state.get(served) or []:       # none: no prediction known, or its outcome already counted
            amount = outcome_amount(p["label"], p["score"], outcome)
            if amount is not None:
                head = with_outcome(head, p["version"], p["variant"], amount)
                if groups is not None:
                    head = with_judged(head, p["version"], p["variant"], groups, outcome["label"] if p["label"]
                                       is not None else outcome["value"], p["label"] if p["label"] is not None
                                       else p["score"])
        self.state.pop(served, None)
        self.put_head(model, head, offset)

    def put_head(self, model: str, head: dict, offset: int) -> None:
        self.state[f"head|{model}"] = {**head, "offset": offset}

    async def close_if_due(self, model: str, head: dict, now_ms: int, offset: int) -> None:
        if due(head, now_ms, self.specs.of(model)):
            await self.close(model, head, max(now_ms, head["end_ms"] or now_ms))
            head = new_head(head["seq"] + 1, new_id())
        self.put_head(model, head, offset)

    async def close(self, model: str, head: dict, end_ms: int) -> None:
        """Report on every version serving the model; outputs are acknowledged before the head moves on."""
        window = self.take_window(model, head, end_ms)
        config = self.specs.of(model)
        champion = self.deployments.champion(model)
        champion_version = champion["version"] if champion else None
        versions = {r["version"] for r in self.deployments.routes(model)} | set(window.predictions.get("version", []))
        for version in sorted(int(v) for v in versions):
            entry = self.inventory.version(model, version)
            if entry is None:
                continue
            report = drift_report(window, entry.trained, version == champion_version, config)
            outputs = [report_event(report), *alerts(report, config, self.inventory.policy(model)["fairness"],
                                                     window.nonce)]
            if report["champion"]:
                outputs += self.judge_retraining(model, report, config, window.nonce)
            for output in outputs:
                await self.send(output)
            self.metrics.closed(model, version, report, outputs)
            self.log.info("window closed", model=model, version=version, window=window.id, rows=report["rows"],
                          drift_share=round(report["drift_share"], 3), dataset_drift=report["dataset_drift"],
                          outputs=len(outputs))

    def take_window(self, model: str, head: dict, end_ms: int) -> ClosedWindow:
        """The window's rows out of the table (deleting them), as frames."""
        keys = [f"row|{row_key(model, head['seq'], 'r', i)}" for i in range(head["rows"])]
        requests = [r for r in (self.state.pop(k, None) for k in keys) if r is not None]
        keys = [f"row|{row_key(model, head['seq'], 'p', i)}" for i in range(head["predictions"])]
        predictions = [p for p in (self.state.pop(k, None) for k in keys) if p is not None]
        self.forget_seen(model, head["seq"], [r["id"] for r in requests] + [p["id"] for p in predictions])
        return ClosedWindow(model=model, seq=head["seq"], start_ms=head["start_ms"] or end_ms, end_ms=end_ms,
                            numeric=as_frame([r["features"] for r in requests]),
                            categorical=as_frame([r["categories"] for r in requests]),
                            predictions=as_frame(predictions), performance=head["performance"],
                            judged=head.get("judged", []), nonce=head.get("nonce", ""))

    def forget_seen(self, model: str, seq: int, ids: list[str]) -> None:
        """Remember a closed window's ids for SEEN_WINDOWS more windows (redeliveries arrive within seconds),
        then forget them and the predictions still awaiting their outcome, so the table stays bounded (an
        outcome later than that is not counted)."""
        self.state[f"ids|{model}|{seq}"] = ids
        for old in self.state.pop(f"ids|{model}|{seq - SEEN_WINDOWS}", None) or []:
            self.state.pop(f"seen|{old}", None)
            self.state.pop(f"groups|{old}", None)       # a request whose outcome never came
            self.state.pop(f"served|{old}", None)       # its predictions, awaiting that outcome

    def judge_retraining(self, model: str, report: dict, config: Monitoring, nonce: str) -> list[Event]:
        stored = self.state.get(f"retrain|{model}")
        state = RetrainState(stored["champion"], tuple(stored["drifted_windows"]), stored["last_request_ms"]) \
            if stored else RetrainState()
        state, request, decision = on_champion_report(state, report, config, nonce)
        self.state[f"retrain|{model}"] = {"champion": state.champion, "drifted_windows": list(state.drifted_windows),
                                          "last_request_ms": state.last_request_ms}
        if decision in ("retrain", "cooling-down"):
            self.log.info("sustained drift", model=model, version=report["version"], decision=decision,
                          windows=len(state.drifted_windows))
        return [request] if request else []

    # -- tick: close windows that are due by time even when no request arrives -----------------------------
    async def tick(self) -> None:
        now_ms = int(time.time() * 1000)
        if self._models is None:
            self._models = {key.removeprefix("head|") for key in list(self.state.keys()) if key.startswith("head|")}
        for model in list(self._models):
            head = self.state.get(f"head|{model}")
            if head and due(head, now_ms, self.specs.of(model)):
                self._ticks.produce(self.observations.get_topic_name(), key=model.encode(), value=b"",
                                    headers=[(TICK_HEADER, str(now_ms).encode())])
        self._ticks.poll(0)

    # -- feature views: windows of features.online, drift and skew ----------------------------------------------
    def follow_features(self) -> None:
        """Read features.views, then features.online, to their end, then follow them (a large online store takes
        a while: the windows of models go on meanwhile). A follower that cannot start ends the process, loudly."""
        try:
            self.views_follower.start(timeout_s=600)
            self.feature_follower.start(timeout_s=3600)
        except Exception as error:          # noqa: BLE001 - restarted by the supervisor, as any failure to start
            self.log.critical("features not followed; the drift-watcher stops", error=repr(error))
            os._exit(1)

    def fold_feature(self, record: str, value: dict) -> None:
        """A view definition (signed: only those are handed here) or an online value; one that cannot be used is
        skipped, said and counted by reason, never raised."""
        if record == "mlbus.FeatureViewDefined":
            try:
                view = view_from_record(value)
            except ViewsRefused as refused:
                self.skip("a view definition that does not parse", view=str(value.get("view"))[:80],
                          why=str(refused)[:300])
                return
            with self.features_lock:
                self.features.define(view)
            return
        found = value_from_record(value)
        with self.features_lock:
            why = self.features.add(found, int(time.time() * 1000))
            if why is None:
                key = (found.view, found.view_version, found.feature, found.entity)
                self.skew_queue.pop(key, None)
                self.skew_queue[key] = found
                while len(self.skew_queue) > MAX_SKEW_QUEUE:
                    self.skew_queue.pop(next(iter(self.skew_queue)))
        if why is None:
            self.feature_metrics.values.labels(found.view).inc()
        else:
            self.skip(why)

    def skip(self, reason: str, **said) -> None:
        self.feature_metrics.skipped.labels(reason).inc()
        self.skipped[reason] += 1
        if self.skipped[reason] in (1, 10, 100) or self.skipped[reason] % 1000 == 0:   # said, not a flood
            self.log.warning("feature record skipped", reason=reason, times=self.skipped[reason], **said)

    async def tick_features(self) -> None:
        """Close the feature windows that are due and send their reports and alerts; the skew check when due."""
        try:
            await self.close_features(int(time.time() * 1000))
            ready = self.feature_follower.ready.is_set() and self.feature_follower.error is None
            if ready and (self._skew_at is None or time.monotonic() - self._skew_at >= self.skew_every_s):
                self._skew_at = time.monotonic()
                for event in await asyncio.to_thread(self.check_skew, int(time.time() * 1000)):
                    await self.send(event)
        except Exception as error:             # noqa: BLE001 - told apart just below
            if is_infrastructure(error):
                self.log.critical("feature windows failed; the drift-watcher stops", error=repr(error))
                os._exit(1)
            poison_record(SOURCE, "tick", "features.online", -1, error)

    async def close_features(self, now_ms: int) -> None:
        trained = [entry.trained for entry in list(self.inventory.versions.values())]
        with self.features_lock:
            closed = self.features.close(now_ms)
            reports = [(window, self.features.report(window, trained, self.nonce)) for window in closed]
        for window, report in reports:
            if report is None:
                continue
            for output in [report_event(report), *view_alerts(report, self.nonce)]:
                await self.send(output)
            version = window.view.version[:16]
            self.feature_metrics.windows.labels(window.view.name, version,
                                                "yes" if report["dataset_drift"] else "no").inc()
            self.feature_metrics.drift_share.labels(window.view.name, version).set(report["drift_share"])
            self.log.info("feature window closed", view=subject(window.view.name, window.view.version),
                          window=window.id, drift_share=round(report["drift_share"], 3),
                          dataset_drift=report["dataset_drift"])

    def check_skew(self, now_ms: int) -> list[Event]:
        """The online values that came since the last check against the offline store (in a thread: it reads
        Parquet files); those it has not reached yet wait for the next check. Returns the alerts to send."""
        with self.features_lock:
            queued, self.skew_queue = self.skew_queue, {}
        by_view: dict[tuple[str, str], list] = {}
        for value in queued.values():
            by_view.setdefault((value.view, value.view_version), []).append(value)
        alerts_, pending = [], []
        for (view, version), values in sorted(by_view.items()):
            try:
                offline = self.offline.read(view, version)
            except Exception as error:       # noqa: BLE001 - a missing or unreadable store: said, checked again
                self.feature_metrics.unchecked.labels(view, version[:16]).inc()
                self.log.warning("offline store not read for the skew check", view=view, version=version[:16],
                                 error=repr(error)[:300])
                pending += values
                continue
            found = skew(values, offline)
            pending += found.pending
            self.feature_metrics.compared.labels(view, version[:16]).inc(found.compared)
            self.feature_metrics.mismatches.labels(view, version[:16]).set(len(found.mismatches))
            for mismatch in found.mismatches:
                self.feature_metrics.mismatched.labels(view, version[:16], mismatch.reason).inc()
            raised = skew_alert(view, version, found, now_ms, self.nonce)
            if raised is not None:
                self.log.warning("feature skew", view=view, version=version[:16], compared=found.compared,
                                 mismatches=len(found.mismatches))
                alerts_.append(raised)
        with self.features_lock:
            for value in pending:            # newer values that came meanwhile win
                self.skew_queue.setdefault((value.view, value.view_version, value.feature, value.entity), value)
            while len(self.skew_queue) > MAX_SKEW_QUEUE:
                self.skew_queue.pop(next(iter(self.skew_queue)))
            self.feature_metrics.pending.set(len(self.skew_queue))
        return alerts_

    # -- output ----------------------------------------------------------------------------------------------
    async def send(self, event: Event) -> None:
        """Send and wait for the broker's acknowledgement; skip what an earlier run already sent."""
        if (event.record, event.id) in self.emitted.ids:
            self.log.info("already sent", record=event.record, id=event.id)
            return
        topic, key, value, headers = wire_form(self.bus, event, envelope_for(event, SOURCE))
        await (await self.topic(topic).send(key=key, value=value, headers=headers, force=True))
        self.emitted.ids.add((event.record, event.id))

    def topic(self, logical: str) -> faust.TopicT:
        if logical not in self._topics:
            self._topics[logical] = self.app.topic(self.bus.catalogue.physical(logical), **RAW)
        return self._topics[logical]
