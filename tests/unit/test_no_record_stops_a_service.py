"""No record can stop a service: every (topic × consuming service × path) fed schema-valid hostile records.

Hypothesis draws records of each topic's type (and of other types, as a confused producer sends them) with
hostile content in every field (tests/support/hostile.py: nested and huge JSON in every `…_json` field, NaN,
±inf and 1e308 in every double, the extremes of every long and time, 1 MiB strings, NUL, control and
right-to-left characters, malformed keys and signatures, empty and huge map keys), sends them with hostile
Kafka keys and headers, and also as damaged bytes. Each goes through the path a service really takes, with
in-memory fakes for what is not Kafka:

- live: the edge (decode_message) and the service's handler, as the runtime calls it;
- rebuild: the edge and the folds the service's start-up hands to fold_history;
- follow: a Follower's own decode-and-fold step, with the folds of the service's view.

Nothing may come out but events or a refusal (BadInput): no other exception escapes a handler, a fold or the
edge. The runtime would dead-letter a handler's exception rather than stop (tested in test_runtime); here the
handlers themselves are held to refusing in words."""
from __future__ import annotations

import base64
import functools
import hashlib
import re
from dataclasses import replace
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest

from services.auditor.handlers import Auditor
from services.bus import Bus, Event
from services.bus.edge import FORMATS, MAX_RECORD_BYTES, NAME_FIELDS
from services.bus.errors import BadInput
from services.bus.identity import IDENTITY_RECORDS
from services.bus.projections.deployments import Deployments
from services.bus.projections.follow import Follower
from services.bus.projections.identities import Identities
from services.bus.projections.inventory import INVENTORY_RECORDS, Inventory
from services.bus.received import Received, decode_message
from services.bus.publish import OutputRefused, Publisher
from services.bus.replay import apply_fold
from services.bus.runtime import Forward
from services.bus.signing import Verdict
from services.console.view import RECORDS as CONSOLE_RECORDS, ConsoleView
from services.deployer.adapters import HISTORY as DEPLOYER_HISTORY
from services.deployer.decide import Gates
from services.deployer.handlers import Deployer
from services.lineage.decide import Places, Scoring
from services.lineage.handlers import Lineage
from services.domain import SpecMonitoring
from services.adapters import ArtifactStore
from services.drift_watcher.app import Emitted, REFERENCE, OUTPUTS as DRIFT_OUTPUTS
from services.notifier.decide import Config, Outbox
from services.notifier.handlers import Notifier
from services.adapters import OfflineStore, OnlineStore
from services.domain import views_from_yaml
from services.featurizer.core import FeaturizerState
from services.featurizer.handlers import Featurizer
from services.registry.handlers import Registry
from services.scorer.scorer import RoutingTable, Scorer
from services.trainer.adapters import HISTORY as TRAINER_HISTORY
from services.trainer.decide import Provenance
from services.trainer.handlers import Trainer
from services.trainer.view import TrainerView
from services.validator.handlers import Validator
from tests.support.handlers import FakeMessage, audited
from tests.support.hostile import HOSTILE_TIMES, records_for

NOW = datetime(2026, 12, 6, tzinfo=timezone.utc)
EXAMPLES = 24                   # drawn records per topic (and its wrong-type mixes), the same ones every run
HOSTILE_KEYS = [None, b"", b"k" * 100_000, b"\xff\xfe\x00", b"model"]
HOSTILE_HEADERS = [[], [("ce_id", b"x" * 100_000)], [("ce_source", b"\xff\xfe")], [("ce_id", b"a\x00b")],
                   [("traceparent", None)], [("correlationid", b"\x1b[31m")], [("ce_id", b"1"), ("ce_id", b"2")]]


def bus_without_broker() -> Bus:
    bus = Bus.from_env({"MLBUS_NAMESPACE": "t."})
    bus.schemas.resolver = lambda fingerprint: None          # local schemas only: no broker here
    return bus


BUS = bus_without_broker()


class NoProducer:
    def produce(self, *args, **kwargs):
        raise AssertionError("nothing is sent here")


PUBLISHER = Publisher(BUS, "test", NoProducer())




def damaged(payload: bytes, index: int) -> bytes | None:
    """The bytes of a record damaged as a broken or hostile producer damages them."""
    return [None, b"", payload[:10], payload[:-1], payload + b"\x00", payload[:10] + b"\xff" * 40,
            payload[:2] + b"\x00" * 8 + payload[10:]][index % 7]


FIELD = re.compile(r"field '?\"?mlbus\.\w+\.(\w+)")
BENIGN = {"string": "x", "double": 0.5, "float": 0.5, "int": 1, "long": 1, "boolean": False}


def tamed(record: str, value: dict) -> dict:
    """The record with each field the edge refuses replaced by a plain value of its type (the rest as drawn):
    hostile content that gets past the edge, so that handlers and folds meet it."""
    types = {f["name"]: f["type"] for f in BUS.schemas.schema(record).parsed["fields"]}
    value = {name: NOW if "timestamp-millis" in str(types.get(name)) and isinstance(item, int) else item
             for name, item in value.items()}       # a time past a datetime's range does not decode at all
    while len(BUS.schemas.encode(record, value)) > MAX_RECORD_BYTES:   # refused whole, not by a field: the largest
        largest = max(value, key=lambda name: len(str(value[name])))   # field goes
        value[largest] = plain(largest, types[largest])
    physical = BUS.catalogue.physical(BUS.catalogue.for_schema(record).name)
    for _ in range(len(types)):
        try:
            decode_message(BUS, FakeMessage(physical, b"k", BUS.schemas.encode(record, value), 0, []))
            return value
        except BadInput as refusal:
            found = FIELD.search(str(refusal))
            if not found or found.group(1) not in types:
                return value
            value[found.group(1)] = plain(found.group(1), types[found.group(1)])
    return value


def plain(name: str, avro_type) -> object:
    if name.endswith("_json"):
        return '{"C": 1}'
    if name in FORMATS:
        kind, size = FORMATS[name]
        return "a" * size if kind == "hex" else base64.b64encode(b"k" * size).decode()
    if name in NAME_FIELDS:
        return "m"
    kind = avro_type if isinstance(avro_type, str) else (
        next((t for t in avro_type if t != "null"), "null") if isinstance(avro_type, list) else avro_type["type"])
    if isinstance(kind, dict):
        kind = kind.get("type")
    return {"map": {}, "array": []}.get(kind, BENIGN.get(kind))


def hostile_messages(topic: str) -> list[FakeMessage]:
    """The topic's hostile records, each as sent and tamed enough to pass the edge, with hostile keys and
    headers, and every third damaged too (drawn once per run: every path meets the same ones)."""
    return [replace(m) for m in _drawn(topic)]


@functools.cache
def _drawn(topic: str, seed_value: int = 0) -> tuple[FakeMessage, ...]:
    physical = BUS.catalogue.physical(topic)
    messages = []
    for i, (record, value) in enumerate(records_for(BUS, topic, EXAMPLES, seed_value, times=HOSTILE_TIMES)):
        try:
            payloads = [BUS.schemas.encode(record, value), BUS.schemas.encode(record, tamed(record, value))]
        except BadInput:
            continue                    # what Avro itself refuses never reaches the bus
        key, headers = HOSTILE_KEYS[i % len(HOSTILE_KEYS)], HOSTILE_HEADERS[i % len(HOSTILE_HEADERS)]
        messages.append(FakeMessage(physical, key, payloads[0], len(messages), headers))
        messages.append(FakeMessage(physical, b"k", payloads[1], len(messages), []))
        if i % 3 == 0:
            messages.append(FakeMessage(physical, key, damaged(payloads[0], i), len(messages), []))
    assert len(messages) >= EXAMPLES, topic
    return tuple(messages)


def accept(message: Received, roles: tuple[str, ...]) -> Verdict:
    """An insider's rights: every act counts as signed by someone who holds every role."""
    return Verdict(signer="mallory", signer_key="0" * 32)


class Database:
    def write(self, rows: list) -> None:
        pass


def small_frame(batches) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"a": rng.normal(size=40), "b": rng.normal(size=40), "y": ["p", "q"] * 20})


def artifacts(tmp_path) -> ArtifactStore:
    return ArtifactStore(tmp_path, 1 << 20)


# ---------------------------------------------------------------- live: the handler each service runs
def featurizer(tmp_path):
    """The featurizer with a view of every kind of feature over business.events (any kind), its stores on disk."""
    [view] = views_from_yaml("""
views:
  - {name: v, entity: entity, source: {topic: business.events}, event_time: occurred_at, ttl: 1d, owner: ana,
     features: [{name: last_x, aggregate: last, field: x}, {name: n, aggregate: count, window: 1h},
                {name: mean_x, aggregate: mean, field: x, window: 1h, slide: 30m}]}
""")
    state = FeaturizerState()
    state.define(view)
    featurizer = Featurizer(state, OnlineStore(f"sqlite:///{tmp_path / 'features.db'}"), OfflineStore(tmp_path),
                            accept, {"business.events"}, lambda topic, read_to: [], clock=lambda: NOW)
    return lambda received: [event for result in featurizer([received]) for event in
                             (result if isinstance(result, list) else _raise(result))]


def _raise(error: Exception):
    raise error


def live_handlers(tmp_path) -> dict:
    """service → a function of one decoded record returning its events (as the runtime calls the handler)."""
    scorer = Scorer(RoutingTable(BUS), artifacts(tmp_path))
    handlers = {
        "validator": Validator(lambda dataset: None, lambda *a, **k: small_frame([]), set(), accept, clock=lambda: NOW),
        "trainer": Trainer(TrainerView(), tmp_path, Provenance("0", None, {}), accept, small_frame,
                           clock=lambda: NOW),
        "registry": Registry(Inventory(), Database(), accept, clock=lambda: NOW),
        "deployer": Deployer(Inventory(), Deployments(), Gates(), 30.0, accept, artifacts(tmp_path),
                             clock=lambda: NOW),
        "notifier": Notifier(Config(), Outbox(), lambda *a: None, clock=lambda: NOW),
        "featurizer": featurizer(tmp_path),
        "lineage": Lineage(Places("mlbus", "kafka://broker:9093", "urn:mlbus:lineage:0"), Scoring(3600),
                           lambda event: None, 60.0, clock=lambda: NOW),
    }
    calls = {service: (lambda handler: lambda received: list(handler(received)))(handler)
             for service, handler in handlers.items()}

    def score(received: Received) -> list[Event]:
        [result] = scorer([received])
        if isinstance(result, BadInput):
            raise result
        return result
    calls["scorer"] = score
    return calls


# (topic, service) the service's runtime handles live; the scorer follows models.trained and deployments (below),
# the auditor and the drift-watcher's router take raw messages (their own tests below).
CONSUMED = sorted((topic.name, service) for topic in BUS.catalogue if topic.schema
                  for service in topic.consumers if service not in ("app", "auditor", "drift-watcher")
                  and (service != "scorer" or topic.name == "inference.requests"))


@pytest.mark.parametrize("topic, service", CONSUMED)
def test_live_a_hostile_record_is_handled_or_refused(topic, service, tmp_path):
    handle = live_handlers(tmp_path)[service]
    outcomes = {"refused at the edge": 0, "refused by the handler": 0, "handled": 0}
    for message in hostile_messages(topic):
        try:
            received = decode_message(BUS, message)
        except BadInput:
            outcomes["refused at the edge"] += 1
            continue
        try:
            events = handle(received)
        except BadInput:
            outcomes["refused by the handler"] += 1
            continue
        assert all(isinstance(e, Event) for e in events)
        outcomes["handled"] += 1
        for event in events:                # what the runtime sends: it fits its topic, or the input is refused
            try:
                PUBLISHER.prepared(event)
            except OutputRefused:
                outcomes["output refused (input dead-lettered)"] = outcomes.get("output refused (input dead-lettered)",
                                                                                0) + 1
    assert outcomes["handled"] + outcomes["refused by the handler"] + outcomes["refused at the edge"] >= EXAMPLES
    assert outcomes["refused at the edge"], outcomes
    assert outcomes["handled"] + outcomes["refused by the handler"] >= EXAMPLES // 2, outcomes  # handlers were met


def test_live_the_auditor_records_every_hostile_message_and_raises_nothing(tmp_path):
    """The auditor takes raw messages of every topic it consumes in one batch: each is audited as bytes."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from services.auditor.decide import Log
    from services.adapters import Anchor
    from services.domain.tree_head import LogKey
    key = LogKey(Ed25519PrivateKey.generate())
    auditor = Auditor(BUS, Log, lambda size, root, at: key.sign("t.audit.log", size, root, at), Anchor(tmp_path),
                      accept, read_keys=dict)
    topics = sorted(t.name for t in BUS.catalogue if "auditor" in t.consumers)
    messages = [m for topic in topics for m in hostile_messages(topic)]
    for i, message in enumerate(messages):
        message._offset = i
    huge = FakeMessage(BUS.catalogue.physical("inference.requests"), b"k" * 100_000,
                       b"\xc3\x01" + b"a" * (2 << 20), len(messages), [("ce_id", b"x" * 100_000)])
    events = auditor([*messages, huge])
    records = audited(BUS.schemas, events)
    assert len(records) == len(messages) + 1
    cap = int(BUS.catalogue["audit.log"].config["max.message.bytes"])
    pages = [e.encoded for e in events if getattr(e, "record", None) == "mlbus.AuditPage"]
    assert max(map(len, pages)) <= cap                                             # even uncompressed
    last = records[-1]
    assert last["value"] is None and last["key"] is None and last["sealed"] is None
    [(name, size_and_digest)] = [(h["key"], h["value"]) for h in last["headers"]]
    size = 100_000 + 2 + (2 << 20) + len("ce_id") + 100_000               # key, value, header
    assert name == "mlbus.audit.oversize" and size_and_digest.startswith(f"{size} sha256:".encode())


def test_live_the_drift_watchers_router_forwards_or_dead_letters_every_hostile_message():
    from services.drift_watcher.router import INPUTS, Router
    router = Router.__new__(Router)                 # its forward step, without the runtime around it
    router.bus, router.observations_topic = BUS, "t.drift-observations"
    from services.bus.logs import get_logger
    router.log = get_logger(component="test-router")
    for topic in INPUTS:
        for message in hostile_messages(topic):
            forwarded = router.forward(message)
            assert isinstance(forwarded, Forward)
            assert forwarded.physical_topic in ("t.drift-observations", BUS.catalogue.physical(f"{topic}.dlq"))


# ---------------------------------------------------------------- rebuild and follow: the folds of each view
def views() -> dict:
    """view name → (records it folds, its folds): what start-ups hand fold_history and what followers fold."""
    inventory, deployments, specs = Inventory(), Deployments(), SpecMonitoring()
    table = RoutingTable(BUS)
    return {
        "trainer (rebuild)": (TRAINER_HISTORY, [TrainerView().apply]),
        "deployer (rebuild)": (DEPLOYER_HISTORY, [inventory.apply, deployments.apply, specs.apply]),
        "registry (rebuild)": (INVENTORY_RECORDS, [Inventory().apply]),
        "identities (rebuild)": (IDENTITY_RECORDS, [Identities().apply]),
        "scorer (follow)": (("mlbus.DeploymentChanged", "mlbus.ModelTrained"), [table.inventory.apply, table._deploy]),
        "drift-watcher (follow)": (REFERENCE + DRIFT_OUTPUTS, [Inventory().apply, Deployments().apply,
                                                               SpecMonitoring().apply, Emitted().apply]),
        "console (follow)": (CONSOLE_RECORDS, [ConsoleView().apply]),
    }


VIEWS = sorted(views())


@pytest.mark.parametrize("view", VIEWS)
def test_rebuild_and_follow_a_hostile_record_is_folded_or_refused(view):
    records, folds = views()[view]
    topics = sorted({BUS.catalogue.for_schema(record).name for record in records})
    folded = 0
    for topic in topics:
        for message in hostile_messages(topic):
            try:
                received = decode_message(BUS, message)
            except BadInput:
                continue
            if received.record not in records:
                continue
            for fold in folds:
                apply_fold(fold, received)          # as fold_history and the followers do
            folded += 1
    assert folded >= EXAMPLES // 2, f"{view}: {folded} hostile records passed the edge: the folds were hardly tried"


def test_follow_a_followers_step_never_raises_and_counts_what_it_skips():
    from services.bus.metrics import POISON
    raising = []

    def fold(record: str, value: dict) -> None:
        raising.append(record)
        raise KeyError("a meaning the view does not survive")
    follower = Follower(BUS, "test-follower", ("mlbus.DeploymentChanged",), [fold])
    before = POISON.labels("test-follower", "follow", "deployments")._value.get()
    for message in hostile_messages("deployments"):
        follower._apply(message)                      # raises nothing
    assert raising
    assert POISON.labels("test-follower", "follow", "deployments")._value.get() - before == len(raising)


def test_the_edge_refuses_each_hostile_class_by_name():
    """One record per class the edge itself refuses, and the words it says (docs/hostile-input.md)."""
    base = tamed("mlbus.ModelSpecDefined", records_for(BUS, "models.specs", 1, 5)[0][1])
    cases = {
        "spec_json": ("[" * 100_000 + "]" * 100_000, "nests JSON"),
        "hyperparameters_json": ("[1e400]", "past a double's range"),
        "grid_json": ("[NaN]", "not a number JSON allows"),
        "monitoring_json": ("[" + "1," * 120_000 + "1]", "more than 100,000 JSON values"),
        "defined_by": ("ana\x00", "NUL"),
    }
    physical = BUS.catalogue.physical("models.specs")
    for field, (text, says) in cases.items():
        if field not in base:
            continue
        value = {**base, field: text}
        message = FakeMessage(physical, b"m", BUS.schemas.encode("mlbus.ModelSpecDefined", value), 0, [])
        with pytest.raises(BadInput, match=says):
            decode_message(BUS, message)
    key = tamed("mlbus.IdentityDeclared", records_for(BUS, "identities", 1, 6)[0][1])
    message = FakeMessage(BUS.catalogue.physical("identities"), b"k", BUS.schemas.encode(
        "mlbus.IdentityDeclared", {**key, "key_id": "0" * 32, "public_key": "not base64!"}), 0, [])
    with pytest.raises(BadInput, match="public_key.*base64"):
        decode_message(BUS, message)


def test_a_key_of_the_right_length_passes_the_edge():
    key = tamed("mlbus.IdentityDeclared", records_for(BUS, "identities", 1, 6)[0][1])
    public = hashlib.sha256(b"x").digest()
    value = {**key, "key_id": "0" * 32, "public_key": base64.b64encode(public).decode(), "name": "Ana",
             "principal": "ana", "declared_by": "admin", "roles": ["viewer"]}
    received = decode_message(BUS, FakeMessage(BUS.catalogue.physical("identities"), b"k",
                                               BUS.schemas.encode("mlbus.IdentityDeclared", value), 0, []))
    assert received.value["public_key"] == value["public_key"]


@pytest.mark.parametrize("millis", [-(2 ** 63), 2 ** 63 - 1])
def test_an_audited_time_past_what_a_datetime_holds_reads_as_the_nearest(millis):
    from services.domain.audited import entry_time
    assert entry_time({"source_timestamp": millis}).year in (1, 9999)


# ---------------------------------------------------------------- the drift-watcher's faust agent and the CLI's reader
class FakeEvent:
    """What faust hands the agent: a key, the value's bytes, and the message's offset, headers and time."""

    def __init__(self, key: bytes, value: bytes, offset: int):
        self.key, self.value = key, value
        self.message = type("Message", (), {"offset": offset, "headers": [], "timestamp": 1_800_000_000.0 + offset})


def drift_watcher_without_faust(sent: list):
    """The drift-watcher's agent state and logic, with a dict for its faust table and a list for what it sends."""
    from prometheus_client import CollectorRegistry

    from services.bus.logs import get_logger
    from services.drift_watcher.app import DriftWatcher, WindowMetrics
    watcher = DriftWatcher.__new__(DriftWatcher)
    watcher.bus, watcher.log, watcher.state, watcher._models = BUS, get_logger(component="test-agent"), {}, None
    watcher._recovered = set()
    watcher.inventory, watcher.deployments, watcher.specs, watcher.emitted = (Inventory(), Deployments(),
                                                                              SpecMonitoring(), Emitted())
    watcher.metrics = WindowMetrics(CollectorRegistry())

    async def send(event) -> None:
        sent.append(event)

    async def durable() -> None:
        pass
    watcher.send, watcher.durable = send, durable
    for record, value in (("mlbus.ModelTrained", tamed("mlbus.ModelTrained", records_for(BUS, "models.trained", 1,
                                                                                          7)[0][1])),
                          ("mlbus.ModelSpecDefined", tamed("mlbus.ModelSpecDefined", records_for(BUS, "models.specs",
                                                                                                  1, 8)[0][1]))):
        value = {**value, "model": "m", "version": 1, "monitoring_json": '{"window_rows": 5, "min_rows": 1}'} \
            if record == "mlbus.ModelSpecDefined" else {**value, "model": "m", "version": 1}
        received = decode_message(BUS, FakeMessage(BUS.catalogue.physical(BUS.catalogue.for_schema(record).name),
                                                   b"m", BUS.schemas.encode(record, value), 0, []))
        for fold in (watcher.inventory.apply, watcher.specs.apply):
            fold(received.record, received.value)
    watcher.deployments.apply("mlbus.DeploymentChanged", {
        "deployment_id": "d1", "model": "m", "phase": "completed", "step": 0,
        "routes": [{"version": 1, "variant": "champion", "weight": 1.0}]})
    return watcher


def test_agent_the_drift_watchers_windows_take_every_routed_hostile_record_and_nothing_escapes():
    """What the router forwards (records that passed the edge, keyed by model) through the agent itself:
    observe() never raises, windows close on them, and a window keeps only the columns the model was
    trained on."""
    import asyncio

    from services.bus.metrics import POISON
    from services.drift_watcher.router import INPUTS
    sent: list = []
    watcher = drift_watcher_without_faust(sent)
    events = []
    for topic in INPUTS:
        for message in hostile_messages(topic):
            try:
                decode_message(BUS, message)
            except BadInput:
                continue                         # the router dead-letters it: the agent never sees it
            events.append(FakeEvent(b"m", message.value(), len(events) + 1))     # all for the model it knows

    class Stream:
        async def events(self):
            for event in events:
                yield event
    def poisoned() -> float:
        return sum(s.value for m in POISON.collect() for s in m.samples
                   if s.name.endswith("_total") and s.labels["path"] == "agent")
    before = poisoned()
    asyncio.run(watcher.observe(Stream()))             # raises nothing
    assert len(events) >= EXAMPLES, len(events)
    print(f"{len(events)} observations, {len(sent)} outputs, {poisoned() - before} skipped")
    assert [e for e in sent if e.record == "mlbus.DriftReport"], "windows closed on them"
    known = watcher.columns("m")
    rows = [v for k, v in watcher.state.items() if k.startswith("row|")]
    assert all(set(r["features"]) | set(r["categories"]) <= known for r in rows if "features" in r)


def test_cli_consume_shows_every_hostile_message_and_raises_nothing():
    from services.cli.io_cmd import _as_json
    for topic in ("inference.requests", "models.specs", "approvals"):
        for message in hostile_messages(topic):
            shown = _as_json(BUS, topic, message)
            assert shown["record"] is not None or "decode_error" in shown
