"""The drift-watcher as a faust-streaming application: the Kafka and state edge around decide.py.

    inference.requests, inference.predictions, outcomes
        └─ router (router.py): decode (else DLQ), re-key by model ─► <app>-observations ◄─ tick (timer)
                                                                        └─ observe (faust) ─► monitoring.drift,
                                                                                     alerts, training.requests
Every input is decoded with the bus's Avro codec. All of a model's state — its open window's head, the
window's rows, the predictions awaiting outcomes, the retraining run — lives in one faust table and is
written only while handling the model's own partition of the observations topic, so the table's
changelog holds it in order (its keys, and what each observation changes under them: table.py). A restart
(kill -9 included) recovers a prefix of that changelog, which may end inside an observation's changes: each
observation's changes are written head first, inside the head, and applied again at the model's first
observation after a start (staged.py), so the table is always as after a whole number of observations.

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

from .decide import SOURCE, RetrainState, alerts, drift_report, on_champion_report, report_event
from .feature_watching import FeatureViewsWatched
from .router import TICK_HEADER, Router
from .staged import CHANGES, Staged, commit, recover
from .table import COLLECT, add_outcome, add_prediction, add_request, collect, head_key, next_window, retrain_key, \
    take_window, upgraded
from .windows import due, new_head


async def flush_until_empty(buffer: ProducerBuffer) -> None:
    """faust's ProducerBuffer.flush — where a table's changelog messages wait (send_soon) — returns as soon as one
    message takes more than 0.1 s to be handed to aiokafka (flush_atmost), leaving the rest queued. faust's commit
    flushes before it commits the input's offsets, and durable() before a window's outputs go: both need every
    change handed on, so this waits until none is left (a stopped producer still raises)."""
    while buffer.size:
        await buffer.flush_atmost(None)


def flush_waits_until_empty() -> None:
    """faust's ProducerBuffer flushed with flush_until_empty, in this process: called as a DriftWatcher is made."""
    ProducerBuffer.flush = flush_until_empty        # type: ignore[method-assign]

RAW = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
REFERENCE = ("mlbus.ModelTrained", "mlbus.DeploymentChanged", "mlbus.ModelSpecDefined",
             "mlbus.PromotionPolicyDefined")        # policies: the fairness limits, judged online too
OUTPUTS = ("mlbus.DriftReport", "mlbus.Alert", "mlbus.TrainingRequested")
PARTITIONS = 3
UNKNOWN = "unknown"        # the one metrics label of models the registry does not know


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
        flush_waits_until_empty()
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
        # One table for all of a model's state (see the module docstring), its keys in table.py; an observation
        # changes them as one (staged.py).
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
        head = upgraded(staged, model, head)
        headers = dict(header_pairs(event.message.headers))
        if TICK_HEADER in headers:
            head = await self.close_if_due(staged, model, head, int(headers[TICK_HEADER]))
        else:
            record, value = self.bus.schemas.decode(event.value)      # the router let only what decodes through
            at_ms = int(event.message.timestamp * 1000)
            if record == "mlbus.InferenceRequest":
                head = add_request(staged, model, head, value, at_ms, self.columns(model), self.sensitive(model))
                head = await self.close_if_due(staged, model, head, at_ms)
            elif record == "mlbus.Prediction":
                head = add_prediction(staged, model, head, value)
            elif record == "mlbus.Outcome":
                head = add_outcome(staged, model, head, value)
        commit(self.state, head_key(model), {**head, "offset": offset}, staged.changes)
        if head.get(COLLECT) is not None:
            collect(self.state, model, head[COLLECT])

    def reassigned(self, app, assigned, **kwargs) -> None:
        """The table's partitions came (back) from the changelog, perhaps as a copy killed mid-observation left
        them: every model's head is recovered again at its next observation."""
        self._recovered.clear()

    def head(self, model: str) -> dict:
        """The model's open window; at its first observation since the start, the changes of the last one it took
        in applied again and the last window it closed collected (staged.py: a kill may have come in between)."""
        key = head_key(model)
        if model not in self._recovered:
            recover(self.state, key)
            stored = self.state.get(key)
            if stored and stored.get(COLLECT) is not None:
                collect(self.state, model, stored[COLLECT])
            self._recovered.add(model)
        stored = self.state.get(key)
        if not stored:          # on the changelog before any output names its nonce (durable() flushes it)
            stored = self.state[key] = new_head(nonce=new_id())
        return {k: v for k, v in stored.items() if k not in (CHANGES, COLLECT)}

    def columns(self, model: str) -> set[str]:
        """The features (numeric and categorical) any version of the model was trained on."""
        return {f for entry in self.inventory.latest(model) for f in entry.trained.get("features") or ()}

    def sensitive(self, model: str) -> set[str]:
        """The sensitive attributes any version of the model was measured on at training."""
        return {a for entry in self.inventory.latest(model) for a in content(entry.trained.get("fairness_json"))}

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
        return next_window(staged, model, head, new_id())

    async def close(self, staged: Staged, model: str, head: dict, end_ms: int) -> None:
        """Report on every version serving the model. The table's changes so far are on the changelog before the
        outputs go (their ids hold the window's nonce, written with its head); the outputs are acknowledged
        before the head moves on, so a kill in between closes the same window again, to the same ids."""
        window = take_window(staged, model, head, end_ms)
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

    def judge_retraining(self, staged: Staged, model: str, report: dict, config: Monitoring, nonce: str) -> list[Event]:
        stored = staged.get(retrain_key(model))
        state = RetrainState(stored["champion"], tuple(stored["drifted_windows"]), stored["last_request_ms"]) \
            if stored else RetrainState()
        state, request, decision = on_champion_report(state, report, config, nonce)
        staged[retrain_key(model)] = {"champion": state.champion, "drifted_windows": list(state.drifted_windows),
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
            head = self.state.get(head_key(model))
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
