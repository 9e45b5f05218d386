"""The drift-watcher as a faust-streaming application: the Kafka and state edge around decide.py.

    inference.requests, inference.predictions, outcomes
        └─ router (router.py): decode (else DLQ), re-key by model ─► <app>-observations ◄─ tick (timer)
                                                                        └─ observe (faust) ─► monitoring.drift,
                                                                                     alerts, training.requests
Every input is decoded with the bus's Avro codec. All of a model's state — its open window's head, the
window's rows, the predictions awaiting outcomes, the retraining run — lives in one faust table and is
written only while handling the model's own partition of the observations topic, so the table's
changelog holds it in order. A restart (kill -9 included) recovers a prefix of that changelog, which may end
inside an observation's changes: each observation's changes are written head first, inside the head, and
applied again at the model's first observation after a start (staged.py), so the table is always as after a
whole number of observations.

Effectively once, without faust's exactly-once mode (which commits outputs to external topics outside
the input's transaction, and can hang on shutdown): the window head records the offset of the last
observation it took in, so a replayed observation is skipped; an observation seen twice (faust re-reads
uncommitted input after a rebalance) is known by its event id for ten windows and counted once; before a
window's outputs are sent, the table's changes so far are flushed to the changelog, and the outputs are
acknowledged before its head moves on, so a crash in between closes the same window again with the same
content and nonce, hence the same ids; and ids already on the output topics — read back by the Follower
before processing starts — are not sent twice. Reference data (trained versions with their profiles,
deployments, specs) is followed from the start of its topics, not kept in the table.

Feature views (issue 36): feature_watching.py follows features.views and features.online in the background; this
app's timer closes their windows into DriftReports and alerts and checks skew, sent through `send` like a model's.
"""
from __future__ import annotations

import os
import threading
import time

import faust
from confluent_kafka import Producer
from faust.transport.producer import ProducerBuffer

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

from .decide import SOURCE, ClosedWindow, RetrainState, alerts, as_frame, drift_report, on_champion_report, \
    report_event
from .feature_watching import FeatureViewsWatched
from .router import TICK_HEADER, Router
from .staged import CHANGES, Staged, commit, recover
from .windows import (MAX_JUDGED, due, groups_of, judged_entry, new_head, outcome_amount, row_key, with_outcome,
                      with_prediction, with_request)

async def flush_until_empty(buffer: ProducerBuffer) -> None:
    """faust's ProducerBuffer.flush — where a table's changelog messages wait (send_soon) — returns as soon as one
    message takes more than 0.1 s to be handed to aiokafka (flush_atmost), leaving the rest queued. faust's commit
    flushes before it commits the input's offsets, and durable() before a window's outputs go: both need every
    change handed on, so this waits until none is left (a stopped producer still raises)."""
    while buffer.size:
        await buffer.flush_atmost(None)


ProducerBuffer.flush = flush_until_empty            # type: ignore[method-assign]  # see its docstring

RAW = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
REFERENCE = ("mlbus.ModelTrained", "mlbus.DeploymentChanged", "mlbus.ModelSpecDefined",
             "mlbus.PromotionPolicyDefined")        # policies: the fairness limits, judged online too
OUTPUTS = ("mlbus.DriftReport", "mlbus.Alert", "mlbus.TrainingRequested")
PARTITIONS = 3
UNKNOWN = "unknown"        # the one metrics label of models the registry does not know
SEEN_WINDOWS = 10          # a duplicate more than this many windows after its original is counted again
MAX_SERVED = 16            # predictions of one request awaiting its outcome (champion, challengers, shadows)
COLLECT = "collect"        # a head's field: the window just closed, whose rows collect() shrinks


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
        # head|MODEL, row|MODEL|SEQ|r3 (request), p3 (prediction) or j3 (judged outcome), seen|MODEL|ID (an
        # observation's id → its window), window|MODEL|SEQ (a closed window's counts), served|MODEL|REQUEST,
        # groups|MODEL|REQUEST, retrain|MODEL: each written only from the model's partition, so its changelog
        # is one. An observation changes them as one (staged.py).
        self.state = self.app.Table("state", default=None)
        self._recovered: set[str] = set()              # models whose head was recovered since the start
        self._topics: dict[str, faust.TopicT] = {}
        self._models: set[str] | None = None           # models with a head; found in the table at the first tick
        self._ticks = Producer(producer_config(settings, f"{SOURCE}-ticks"))   # the router's partitioner
        self.router = Router(bus, self.observations.get_topic_name())
        self.metrics = WindowMetrics(self.router.runtime.metrics.registry)     # served with the router's
        self.app.agent(self.observations, name="observe")(self.observe)
        self.app.on_partitions_assigned.connect(self.reassigned)
        self.app.timer(tick_interval_s)(self.tick)
        # feature views (see the module docstring): their windows, drift and skew, sent through this app
        self.feature_views = FeatureViewsWatched(bus, self.log, self.router.runtime.metrics.registry, verify,
                                                 self.inventory, self.send)
        self.app.timer(tick_interval_s)(self.feature_views.tick)

    def start_reference_data(self) -> None:
        """Before faust starts: the reference data read to its end, then the router running."""
        self.bus.schemas.resolver = SchemasTopicResolver(self.bus)
        Publisher(self.bus, SOURCE).announce(OUTPUTS)
        self.follower.start()
        threading.Thread(target=self.feature_views.follow, name="features-start", daemon=True).start()
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
        head = self.head(model)
        if offset <= head["offset"]:
            return                                    # taken in before a restart: its effects are in the table
        staged = Staged(self.state)
        head = self.upgraded(staged, model, head)
        headers = dict(header_pairs(event.message.headers))
        if TICK_HEADER in headers:
            head = await self.close_if_due(staged, model, head, int(headers[TICK_HEADER]))
        else:
            record, value = self.bus.schemas.decode(event.value)      # the router let only what decodes through
            at_ms = int(event.message.timestamp * 1000)
            if record == "mlbus.InferenceRequest":
                head = self.add_request(staged, model, head, value, at_ms)
                head = await self.close_if_due(staged, model, head, at_ms)
            elif record == "mlbus.Prediction":
                head = self.add_prediction(staged, model, head, value)
            elif record == "mlbus.Outcome":
                head = self.add_outcome(staged, model, head, value)
        commit(self.state, f"head|{model}", {**head, "offset": offset}, staged.changes)
        if head.get(COLLECT) is not None:
            self.collect(model, head[COLLECT])

    def reassigned(self, app, assigned, **kwargs) -> None:
        """The table's partitions came (back) from the changelog, perhaps as a copy killed mid-observation left
        them: every model's head is recovered again at its next observation."""
        self._recovered.clear()

    def head(self, model: str) -> dict:
        """The model's open window; at its first observation since the start, the changes of the last one it took
        in applied again and the last window it closed collected (staged.py: a kill may have come in between)."""
        key = f"head|{model}"
        if model not in self._recovered:
            recover(self.state, key)
            stored = self.state.get(key)
            if stored and stored.get(COLLECT) is not None:
                self.collect(model, stored[COLLECT])
            self._recovered.add(model)
        stored = self.state.get(key)
        if not stored:          # on the changelog before any output names its nonce (durable() flushes it)
            stored = self.state[key] = new_head(nonce=new_id())
        return {k: v for k, v in stored.items() if k not in (CHANGES, COLLECT)}

    @staticmethod
    def upgraded(staged: Staged, model: str, head: dict) -> dict:
        """A head the previous version wrote (its judged outcomes a list inside it, its window's ids keyed without
        the model), as this one writes it. Its closed windows' ids (ids|MODEL|SEQ) are forgotten by collect()."""
        if not isinstance(head["judged"], list):
            return head
        for i, entry in enumerate(head["judged"]):
            staged[f"row|{row_key(model, head['seq'], 'j', i)}"] = entry
        for key in [f"row|{row_key(model, head['seq'], kind, i)}" for kind, count in
                    (("r", head["rows"]), ("p", head["predictions"])) for i in range(count)]:
            row = staged.get(key)
            for kind in ("seen", "groups", "served") if row else ():
                if (value := staged.pop(f"{kind}|{row['id']}")) is not None:
                    staged[f"{kind}|{model}|{row['id']}"] = value
        return {**head, "judged": len(head["judged"])}

    def add_request(self, staged: Staged, model: str, head: dict, request: dict, at_ms: int) -> dict:
        if staged.get(f"seen|{model}|{request['request_id']}") is not None:
            return head                                   # delivered twice (a retry, a rebalance): counted once
        known = self.columns(model)           # only what a version was trained on: a request may carry any number
        staged[f"row|{row_key(model, head['seq'], 'r', head['rows'])}"] = {
            "id": request["request_id"], "features": {f: v for f, v in request["features"].items() if f in known},
            "categories": {f: v for f, v in (request["categories"] or {}).items() if f in known}}
        staged[f"seen|{model}|{request['request_id']}"] = head["seq"]
        attributes = self.sensitive(model)
        if attributes:                                   # its groups, for the fairness of its outcome's window
            staged[f"groups|{model}|{request['request_id']}"] = groups_of(request, attributes)
        return with_request(head, at_ms)

    def columns(self, model: str) -> set[str]:
        """The features (numeric and categorical) any version of the model was trained on."""
        return {f for entry in self.inventory.latest(model) for f in entry.trained.get("features") or ()}

    def sensitive(self, model: str) -> set[str]:
        """The sensitive attributes any version of the model was measured on at training."""
        return {a for entry in self.inventory.latest(model) for a in content(entry.trained.get("fairness_json"))}

    @staticmethod
    def add_prediction(staged: Staged, model: str, head: dict, prediction: dict) -> dict:
        if prediction["version"] is None or prediction["error"] or \
                staged.get(f"seen|{model}|{prediction['prediction_id']}") is not None:
            return head
        entry = {"id": prediction["prediction_id"], "version": prediction["version"],
                 "variant": prediction["variant"], "label": prediction["label"], "score": prediction["score"]}
        staged[f"seen|{model}|{prediction['prediction_id']}"] = head["seq"]
        staged[f"row|{row_key(model, head['seq'], 'p', head['predictions'])}"] = {
            **entry, "request": prediction["request_id"]}
        served = f"served|{model}|{prediction['request_id']}"
        awaiting = staged.get(served) or []
        if len(awaiting) < MAX_SERVED:                    # a request id a client sends again and again: bounded
            staged[served] = awaiting + [entry]
        return with_prediction(head)

    @staticmethod
    def add_outcome(staged: Staged, model: str, head: dict, outcome: dict) -> dict:
        served = f"served|{model}|{outcome['request_id']}"
        groups = staged.pop(f"groups|{model}|{outcome['request_id']}", None)
        for p in staged.get(served) or []:       # none: no prediction known, or its outcome already counted
            amount = outcome_amount(p["label"], p["score"], outcome)
            if amount is None:
                continue
            head = with_outcome(head, p["version"], p["variant"], amount)
            if groups is not None and head["judged"] < MAX_JUDGED:
                staged[f"row|{row_key(model, head['seq'], 'j', head['judged'])}"] = judged_entry(
                    p["version"], p["variant"], groups, outcome["label"] if p["label"] is not None
                    else outcome["value"], p["label"] if p["label"] is not None else p["score"])
                head = {**head, "judged": head["judged"] + 1}
        staged.pop(served, None)
        return head

    async def close_if_due(self, staged: Staged, model: str, head: dict, now_ms: int) -> dict:
        """The head after now_ms: a new window's, naming the closed one to collect, when this one was due. A window
        the code raises on is skipped, said and counted, and the next one opens: else it would be closed again, and
        raise again, at every observation of its model."""
        if not due(head, now_ms, self.specs.of(model)):
            return head
        try:
            await self.close(staged, model, head, max(now_ms, head["end_ms"] or now_ms))
        except Exception as error:             # noqa: BLE001 - told apart just below
            if is_infrastructure(error):
                raise
            poison_record(SOURCE, "window", f"{model}/w{head['seq']:06d}", head["offset"], error)
        staged[f"window|{model}|{head['seq']}"] = {kind: head[kind] for kind in ("rows", "predictions", "judged")}
        return {**new_head(head["seq"] + 1, new_id()), COLLECT: head["seq"]}

    async def close(self, staged: Staged, model: str, head: dict, end_ms: int) -> None:
        """Report on every version serving the model. The table's changes so far are on the changelog before the
        outputs go (their ids hold the window's nonce, written with its head); the outputs are acknowledged
        before the head moves on, so a kill in between closes the same window again, to the same ids."""
        window = self.take_window(staged, model, head, end_ms)
        config = self.specs.of(model)
        champion = self.deployments.champion(model)
        champion_version = champion["version"] if champion else None
        versions = {r["version"] for r in self.deployments.routes(model)} | set(window.predictions.get("version", []))
        await self.durable()
        for version in sorted(int(v) for v in versions):
            entry = self.inventory.version(model, version)
            if entry is None:
                continue
            report = drift_report(window, entry.trained, version == champion_version, config)
            outputs = [report_event(report), *alerts(report, config, self.inventory.policy(model)["fairness"],
                                                     window.nonce)]
            if report["champion"]:
                outputs += self.judge_retraining(staged, model, report, config, window.nonce)
            for output in outputs:
                await self.send(output)
            self.metrics.closed(model, version, report, outputs)
            self.log.info("window closed", model=model, version=version, window=window.id, rows=report["rows"],
                          drift_share=round(report["drift_share"], 3), dataset_drift=report["dataset_drift"],
                          outputs=len(outputs))

    async def durable(self) -> None:
        """Every table change made so far acknowledged on the changelog (faust buffers them)."""
        await self.app.producer.flush()

    @staticmethod
    def take_window(staged: Staged, model: str, head: dict, end_ms: int) -> ClosedWindow:
        """The window's rows, as frames (left in the table: collect() shrinks them once the head has moved on)."""
        def entries(kind: str, count: int) -> list[dict]:
            return [staged.get(f"row|{row_key(model, head['seq'], kind, i)}") for i in range(count)]
        requests, predictions = entries("r", head["rows"]), entries("p", head["predictions"])
        return ClosedWindow(model=model, seq=head["seq"], start_ms=head["start_ms"] or end_ms, end_ms=end_ms,
                            numeric=as_frame([r["features"] for r in requests]),
                            categorical=as_frame([r["categories"] for r in requests]),
                            predictions=as_frame(predictions), performance=head["performance"],
                            judged=entries("j", head["judged"]), nonce=head.get("nonce", ""))

    def collect(self, model: str, seq: int) -> None:
        """After window seq closed and its head moved on: its rows shrunk to their ids and its judged outcomes
        dropped; the window SEEN_WINDOWS before it forgotten (redeliveries arrive within seconds), with the
        predictions still awaiting an outcome (one later than that is not counted), so the table stays bounded.
        Each step is a value or a deletion made in an order that leaves nothing unreachable, so after a kill it
        runs again (head()) to the same end."""
        kept = self.state.get(f"window|{model}|{seq}")
        if kept:
            for key in self.window_keys(model, seq, kept):
                row = self.state.get(key)
                if row is not None and set(row) - {"id", "request"}:
                    self.state[key] = {k: row[k] for k in ("id", "request") if k in row}
            for i in range(kept["judged"]):
                self.state.pop(f"row|{row_key(model, seq, 'j', i)}", None)
        old = seq - SEEN_WINDOWS
        if forgotten := self.state.get(f"window|{model}|{old}"):
            for key in self.window_keys(model, old, forgotten):
                row = self.state.get(key)
                if row is not None:
                    for kind in ("seen", "groups", "served"):
                        self.state.pop(f"{kind}|{model}|{row['id']}", None)
                    if "request" in row:            # a prediction: its request's may be gone, or never came
                        self.state.pop(f"served|{model}|{row['request']}", None)
                    self.state.pop(key, None)
            self.state.pop(f"window|{model}|{old}", None)
        for id_ in self.state.get(f"ids|{model}|{old}") or []:      # a window the previous version closed
            for kind in ("seen", "groups", "served"):
                self.state.pop(f"{kind}|{id_}", None)
        self.state.pop(f"ids|{model}|{old}", None)

    @staticmethod
    def window_keys(model: str, seq: int, kept: dict) -> list[str]:
        return [f"row|{row_key(model, seq, kind, i)}" for kind, count in (("r", kept["rows"]),
                                                                            ("p", kept["predictions"]))
                for i in range(count)]

    def judge_retraining(self, staged: Staged, model: str, report: dict, config: Monitoring, nonce: str) -> list[Event]:
        stored = staged.get(f"retrain|{model}")
        state = RetrainState(stored["champion"], tuple(stored["drifted_windows"]), stored["last_request_ms"]) \
            if stored else RetrainState()
        state, request, decision = on_champion_report(state, report, config, nonce)
        staged[f"retrain|{model}"] = {"champion": state.champion, "drifted_windows": list(state.drifted_windows),
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

    # -- output ----------------------------------------------------------------------------------------------
    async def send(self, event: Event) -> None:
        """Send and wait for the broker's acknowledgement; skip what an earlier run already sent."""
        if (event.record, event.id) in self.emitted.ids:
            self.log.info("already sent", record=event.record, id=event.id)
            return
        await self.deliver(event)
        self.emitted.ids.add((event.record, event.id))

    async def deliver(self, event: Event) -> None:
        topic, key, value, headers = wire_form(self.bus, event, envelope_for(event, SOURCE))
        await (await self.topic(topic).send(key=key, value=value, headers=headers, force=True))

    def topic(self, logical: str) -> faust.TopicT:
        if logical not in self._topics:
            self._topics[logical] = self.app.topic(self.bus.catalogue.physical(logical), **RAW)
        return self._topics[logical]
