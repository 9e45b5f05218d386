"""Red team, issue 38 (the Kafka world): Confluent-framed records on every topic a service consumes, the registry
as an amplifier and a source of hostile schemas, the registry's roles and the mutual-TLS naming rules.

Findings are strict xfails (they fail now; each names its finding); the defences that held are plain tests, as
properties over every consumed topic where they can be. A registry is a dict here (no HTTP): what it answers is
what an attacker who can register a schema, or a registry that is down, makes it answer."""
from __future__ import annotations

import ast
import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from services.bus.codec import HEADER_LEN, MARKER, MAX_UNKNOWN_IDS, SchemaCatalogue, confluent_prefix, registry_form
from services.bus.errors import BadInput, is_infrastructure
from services.bus.native import native
from services.bus.received import Received, decode_message
from services.bus.runtime import Forward
from services.bus.schema_registry import RegistryUnavailable
from tests.support.handlers import FakeMessage
from tests.unit.test_no_record_stops_a_service import BUS, hostile_messages

ROOT = Path(__file__).resolve().parents[2]
PARSED = [schema.parsed for schema in BUS.schemas.by_name.values()]
TOPICS = sorted(t.name for t in BUS.catalogue if t.schema and t.consumers)    # every topic a service consumes


class DictRegistry:
    """A registry's two answers from a dict; counts what it is asked."""

    def __init__(self):
        self.by_id: dict[int, str] = {}
        self.asked: list[int] = []

    def put(self, schema_text: str, schema_id: int | None = None) -> int:
        schema_id = schema_id if schema_id is not None else len(self.by_id) + 1
        self.by_id[schema_id] = schema_text
        return schema_id

    def id_for(self, record: str, schema_text: str) -> int:
        return next((i for i, t in self.by_id.items() if t == schema_text), None) or self.put(schema_text)

    def schema_text(self, schema_id: int) -> str | None:
        self.asked.append(schema_id)
        return self.by_id.get(schema_id)


class DownRegistry(DictRegistry):
    def schema_text(self, schema_id: int) -> str | None:
        raise RegistryUnavailable("schema registry at https://127.0.0.1:1 did not answer")


def registry_bus(registry):
    return replace(BUS, schemas=SchemaCatalogue(PARSED, registry=registry))


# One registry for the properties: every mlbus record type's writer schema, and what else a registry may hold.
REGISTRY = DictRegistry()
ID_OF = {name: REGISTRY.put(registry_form(schema.parsed)) for name, schema in sorted(BUS.schemas.by_name.items())}
NOT_A_RECORD = REGISTRY.put('"string"')
UNKNOWN = 999_999
HOSTILE_IDS = [0, UNKNOWN, 2 ** 32 - 1, NOT_A_RECORD]
RBUS = registry_bus(REGISTRY)


def confluent_of(payload: bytes | None) -> bytes | None:
    """A single-object record re-framed as Confluent's (the same body, its type's registry id); None otherwise."""
    if payload is None or payload[:2] != MARKER or len(payload) < HEADER_LEN:
        return None
    writer = BUS.schemas.by_fingerprint.get(bytes(payload[2:HEADER_LEN]))
    return None if writer is None else confluent_prefix(ID_OF[writer.name]) + payload[HEADER_LEN:]


def outcome(bus, message) -> tuple[str, bytes] | str:
    """What the edge makes of a message: the record re-encoded (NaN-proof comparison), or 'refused'."""
    try:
        received = decode_message(bus, message)
    except BadInput:
        return "refused"
    assert isinstance(received, Received)
    return received.record, BUS.schemas.encode(received.record, received.value)


# ---------------------------------------------------------------- defences that held
@pytest.mark.parametrize("topic", TOPICS)
def test_every_consumed_topic_reads_a_confluent_framed_hostile_record_as_its_single_object_twin(topic):
    """Every consumer's edge × the hostile records of tests/unit/test_no_record_stops_a_service (hostile content,
    keys, headers, damaged bytes) re-framed as Confluent's: the same refusal or the same record, so every handler,
    fold and follower meets in Confluent framing exactly what that file already proved it survives."""
    compared = 0
    for message in hostile_messages(topic):
        framed = confluent_of(message.value())
        if framed is None:
            continue
        twin = replace(message, _value=framed)
        assert outcome(RBUS, twin) == outcome(BUS, message), (topic, message.offset())
        compared += 1
    assert compared >= 10, f"{topic}: only {compared} records compared"


@pytest.mark.parametrize("topic", TOPICS)
def test_every_consumed_topic_refuses_hostile_ids_and_records_of_another_type(topic):
    """Ids unknown, 0, the largest, one naming a non-record schema, and ids naming every other record type's
    schema (a registry schema registered for another subject): each is a refusal (dead letter), never a crash."""
    physical, carried = BUS.catalogue.physical(topic), BUS.catalogue[topic].schema
    bodies = [b"", b"\x00", b"\x02\x02\x02\x02", b"\xff" * 40]
    single = next((m.value() for m in hostile_messages(topic) if confluent_of(m.value()) is not None), None)
    if single is not None:
        bodies.append(single[HEADER_LEN:])
    others = [i for name, i in ID_OF.items() if name != carried]
    for schema_id in HOSTILE_IDS + others:
        for body in bodies:
            with pytest.raises(BadInput):
                decode_message(RBUS, FakeMessage(physical, b"k", confluent_prefix(schema_id) + body, 0, []))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(TOPICS), st.integers(0, 2 ** 32 - 1) | st.sampled_from(sorted(ID_OF.values())),
       st.binary(max_size=200))
def test_any_confluent_frame_on_any_consumed_topic_is_its_record_or_a_refusal(topic, schema_id, body):
    message = FakeMessage(BUS.catalogue.physical(topic), b"k", confluent_prefix(schema_id) + body, 0, [])
    try:
        received = decode_message(RBUS, message)
    except BadInput:
        return
    assert received.record == BUS.catalogue[topic].schema


def test_the_drift_watchers_router_dead_letters_confluent_framed_hostile_ids():
    from services.bus.logs import get_logger
    from services.drift_watcher.router import INPUTS, Router
    router = Router.__new__(Router)
    router.bus, router.observations_topic, router.log = RBUS, "t.drift-observations", get_logger(component="rt")
    for topic in INPUTS:
        for schema_id in HOSTILE_IDS:
            forwarded = router.forward(FakeMessage(BUS.catalogue.physical(topic), b"k",
                                                   confluent_prefix(schema_id) + b"\x02", 0, []))
            assert isinstance(forwarded, Forward)
            assert forwarded.physical_topic == BUS.catalogue.physical(f"{topic}.dlq")


DEEP = "".join('{"type":"record","name":"r%d","fields":[{"name":"f","type":' % i for i in range(300)) + \
    '"int"' + "}]}" * 300
HOSTILE_SCHEMAS = {
    "a named-type cycle": {"type": "record", "name": "mlbus.Node",
                           "fields": [{"name": "next", "type": ["null", "mlbus.Node"]}]},
    "a cycle named as a topic's record": {"type": "record", "name": "mlbus.Prediction", "fields": [
        {"name": "next", "type": ["null", "mlbus.Prediction"]}, {"name": "prediction_id", "type": "string"}]},
    "records nested 300 deep": DEEP,
    "arrays nested 400 deep": {"type": "record", "name": "mlbus.X", "fields": [
        {"name": "f", "type": json.loads('{"type":"array","items":' * 400 + '"int"' + "}" * 400)}]},
    "an enum named as a topic's record": {"type": "enum", "name": "mlbus.Prediction", "symbols": ["A"]},
    "a fixed of a terabyte named as a topic's record": {"type": "fixed", "name": "mlbus.Prediction", "size": 2 ** 40},
    "a nested record's name (not a topic's)": {"type": "record", "name": "mlbus.MemberOutput",
                                               "fields": [{"name": "model", "type": "string"}]},
    "a default of the wrong type": {"type": "record", "name": "mlbus.Z",
                                    "fields": [{"name": "f", "type": "long", "default": "x"}]},
    "a uuid logical type on the record's id": {"type": "record", "name": "mlbus.Prediction", "fields": [
        {"name": "prediction_id", "type": {"type": "string", "logicalType": "uuid"}}]},
}


@pytest.mark.parametrize("kind", sorted(HOSTILE_SCHEMAS))
def test_a_hostile_registry_schema_is_a_refusal_on_the_predictions_topic(kind):
    schema = HOSTILE_SCHEMAS[kind]
    registry = DictRegistry()
    schema_id = registry.put(schema if isinstance(schema, str) else json.dumps(schema))
    bus = registry_bus(registry)
    physical = BUS.catalogue.physical("inference.predictions")
    for body in (b"", b"\x02", b"\x00" * 10, b"\x80" * 20, b"\x02" * 600 + b"\x00", b"\xfe\xff\xff\xff\x0f"):
        with pytest.raises(BadInput):
            decode_message(bus, FakeMessage(physical, b"k", confluent_prefix(schema_id) + body, 0, []))


def test_unknown_ids_are_asked_once_each_and_remembered_within_the_bound():
    """The negative cache holds: the same unknown id is asked once; distinct ones once each (the registry's
    work is one GET per distinct unknown id, at most MAX_UNKNOWN_IDS remembered)."""
    registry = DictRegistry()
    bus = registry_bus(registry)
    physical = BUS.catalogue.physical("inference.requests")
    for schema_id in [5, 5, 5, *range(100, 190)]:           # within the look-up budget (codec.LOOKUP_BUDGET)
        with pytest.raises(BadInput):
            decode_message(bus, FakeMessage(physical, b"k", confluent_prefix(schema_id) + b"\x00", 0, []))
    assert len(registry.asked) == 91
    assert len(bus.schemas._unknown_ids) <= MAX_UNKNOWN_IDS


def test_the_mutual_tls_mapping_rule_maps_only_a_lone_cn_and_never_admin():
    """compose/kafka/security.properties' rule, read with Python's re (Java's differs only in `$` before a final
    line terminator, which the CA's name check never lets into a certificate): a subject with extra RDNs,
    several CNs, upper case or admin maps to nothing, and there is no DEFAULT rule."""
    text = (ROOT / "compose/kafka/security.properties").read_text()
    [rules] = re.findall(r"^listener\.name\.mtls\.ssl\.principal\.mapping\.rules=(.*)$", text, re.M)
    assert "DEFAULT" not in rules
    pattern = re.compile(rules.split("RULE:", 1)[1].rsplit("/", 2)[0].replace("(?!admin$)", "(?!admin\\Z)"))
    for subject in ("CN=dana,O=x", "O=x,CN=dana", "CN=dana,CN=admin", "CN=admin", "CN=Dana", "CN=dаna",
                    "CN=dana+UID=admin", "CN=", "CN=1dana", "CN=dana/x"):
        assert not pattern.fullmatch(subject), subject
    assert pattern.fullmatch("CN=dana").group(1) == "dana"


# ---------------------------------------------------------------- findings (strict xfails while open; 1-10 fixed)
@pytest.mark.parametrize("topic", TOPICS)
def test_finding_1_a_registry_outage_stops_the_service_and_dead_letters_nothing(topic):
    bus = registry_bus(DownRegistry())
    message = FakeMessage(BUS.catalogue.physical(topic), b"k", confluent_prefix(1) + b"\x00", 0, [])
    with pytest.raises(Exception) as caught:
        decode_message(bus, message)
    assert not isinstance(caught.value, BadInput), f"dead-lettered: {caught.value}"
    assert is_infrastructure(caught.value)


def test_finding_1_a_follower_does_not_build_its_view_without_the_registry():
    from services.bus.projections.follow import Follower
    folded: list = []
    follower = Follower(registry_bus(DownRegistry()), "rt-follower", ("mlbus.DeploymentChanged",),
                        [lambda record, value: folded.append(record)])
    framed = confluent_of(an_honest("deployments"))
    with pytest.raises(Exception) as caught:
        follower._apply(FakeMessage(BUS.catalogue.physical("deployments"), b"k", framed, 0, []))
    assert is_infrastructure(caught.value)


def with_logical_type_on(record: str, field: str, logical: str) -> str:
    """The record's registry form with `logical` put on a plain long field: the same parsing canonical form (so
    the same CRC-64 fingerprint as mlbus's own writer schema), a different reading."""
    schema = json.loads(registry_form(BUS.schemas.schema(record).parsed))
    for f in schema["fields"]:
        if f["name"] == field:
            assert f["type"] == "long"
            f["type"] = {"type": "long", "logicalType": logical}
    return json.dumps(schema)


@pytest.mark.skipif(native is None, reason="the compiled decoders' cache is what is poisoned (MLBUS_NATIVE=off: "
                    "fastavro reads each record with its own writer schema)")
@pytest.mark.parametrize("record, field, topic", [("mlbus.DataBatch", "rows", "data.batches"),
                                                  ("mlbus.ModelTrained", "duration_ms", "models.trained")])
def test_finding_2_one_confluent_record_does_not_change_how_later_records_read(record, field, topic):
    registry = DictRegistry()
    poisoned = registry.put(with_logical_type_on(record, field, "timestamp-millis"))
    bus = registry_bus(registry)
    physical = BUS.catalogue.physical(topic)
    passed = next(decode_message(BUS, m) for m in hostile_messages(topic) if outcome(BUS, m) != "refused")
    honest = BUS.schemas.encode(record, {**passed.value, field: 5})    # an ordinary count
    decode_message(bus, FakeMessage(physical, b"k", confluent_prefix(poisoned) + honest[HEADER_LEN:], 0, []))
    again = decode_message(bus, FakeMessage(physical, b"k", honest, 1, []))   # mlbus's own record, after it
    assert type(again.value[field]) is int, f"{record}.{field} now reads as {again.value[field]!r}"


def test_finding_3_a_service_writes_schemas_without_being_the_registrys_admin():
    text = (ROOT / "scripts/registry").read_text()
    users = ast.literal_eval(re.search(r"^USERS = (\{.*\})$", text, re.M).group(1))
    assert "sr-developer" in users.values(), users
    how_to = (ROOT / "docs/how-to/export-confluent.md").read_text()
    assert "MLBUS_REGISTRY_CONFIG=var/registry/clients/admin.properties" not in how_to


def test_finding_4_the_known_ids_a_consumer_remembers_are_bounded():
    registry = DictRegistry()
    n = MAX_UNKNOWN_IDS + 50
    for i in range(n):
        registry.put('{"type":"record","name":"mlbus.Spam%d","fields":[]}' % i, i + 1)
    bus = registry_bus(registry)
    before = len(bus.schemas.by_fingerprint)
    physical = BUS.catalogue.physical("inference.requests")
    for schema_id in range(1, n + 1):
        with pytest.raises(BadInput):                     # WrongRecordType: refused, and remembered anyway
            decode_message(bus, FakeMessage(physical, b"k", confluent_prefix(schema_id), 0, []))
    assert len(bus.schemas.by_registry_id) <= MAX_UNKNOWN_IDS
    assert len(bus.schemas.by_fingerprint) - before <= MAX_UNKNOWN_IDS


# ---------------------------------------------------------------- the export bridge (services/exporter)
class SubjectRegistry(DictRegistry):
    """A registry with subjects held to BACKWARD the simplest way: a subject keeps the record type it first took
    (another record's schema is incompatible: 409, as Apicurio answers)."""

    def __init__(self):
        super().__init__()
        self.subjects: dict[str, str] = {}

    def call(self, method: str, path: str, body=None):
        return {}

    def register(self, subject: str, schema_text: str) -> int:
        from services.bus.schema_registry import RegistryRefused
        name = json.loads(schema_text)["name"]
        if self.subjects.setdefault(subject, name) != name:
            raise RegistryRefused(409, f"{name} is incompatible with {self.subjects[subject]}")
        return self.id_for(name, schema_text)


class Sent:
    def __init__(self):
        self.records: list[tuple[str, bytes | None]] = []

    def produce(self, topic, value=None, **kwargs):
        self.records.append((topic, value))


def bridge(topic: str):
    from services.bus.codec import SchemaCatalogue
    from services.exporter.bridge import ExportBridge
    from services.exporter.decide import Tally
    registry = SubjectRegistry()
    for name in sorted(BUS.schemas.by_name):
        registry.put(registry_form(BUS.schemas.schema(name).parsed))
    made = ExportBridge.__new__(ExportBridge)
    made.bus = replace(BUS, schemas=SchemaCatalogue(PARSED, registry=registry))
    made.topics, made.target = [topic], "confluent"
    made.copies = {BUS.catalogue.physical(topic): BUS.catalogue.copy_of(topic)}
    made.logical = {BUS.catalogue.physical(topic): topic}
    made.registry, made.tallies, made._ids, made._refused = registry, {topic: Tally()}, {}, {}
    made.producer = Sent()
    return made, registry


EXPORTED = sorted(t.name for t in BUS.catalogue.exported())


def an_honest(topic: str) -> bytes:
    passed = next(decode_message(BUS, m) for m in hostile_messages(topic) if outcome(BUS, m) != "refused")
    return BUS.schemas.encode(passed.record, passed.value)


@pytest.mark.parametrize("topic", EXPORTED)
def test_the_bridge_dead_letters_what_no_codec_places_and_copies_honest_records(topic):
    made, _ = bridge(topic)
    physical = BUS.catalogue.physical(topic)
    for value in (None, b"", b"\xc3\x01" + b"\x00" * 8, confluent_prefix(UNKNOWN) + b"\x00", b"\x00\x00"):
        assert made.copy(FakeMessage(physical, b"k", value, 0, [])) is False
    assert made.copy(FakeMessage(physical, b"k", an_honest(topic), 1, [])) is True
    dlq, copy = BUS.catalogue.physical(f"{topic}.dlq"), BUS.catalogue.copy_of(topic)
    assert [t for t, _ in made.producer.records] == [dlq] * 5 + [copy]


def a_stranger(topic: str) -> tuple[str, bytes]:
    """A record of another type than the topic's (one another consumed topic carries), single-object encoded."""
    carried = BUS.catalogue[topic].schema
    other = next(str(t.schema) for t in BUS.catalogue if t.schema and t.schema != carried and t.consumers)
    return other, an_honest(BUS.catalogue.for_schema(other).name)


@pytest.mark.parametrize("topic", EXPORTED)
def test_finding_5_a_confluent_record_of_another_type_is_not_copied(topic):
    made, registry = bridge(topic)
    other, stranger = a_stranger(topic)
    framed = confluent_prefix(registry.id_for(other, registry_form(BUS.schemas.schema(other).parsed))) + \
        stranger[HEADER_LEN:]
    assert made.copy(FakeMessage(BUS.catalogue.physical(topic), b"k", framed, 0, [])) is False


@pytest.mark.parametrize("topic", EXPORTED)
def test_finding_6_one_misplaced_record_first_does_not_dead_letter_every_honest_one_after_it(topic):
    made, _ = bridge(topic)
    physical, (_, stranger) = BUS.catalogue.physical(topic), a_stranger(topic)
    made.copy(FakeMessage(physical, b"k", stranger, 0, []))
    assert made.copy(FakeMessage(physical, b"k", an_honest(topic), 1, [])) is True


# ---------------------------------------------------------------- the lineage service (services/lineage)
def lineage_with_a_prediction_at(when):
    from datetime import datetime, timezone
    from services.lineage.decide import Places, Scoring
    from services.lineage.handlers import Lineage
    now = datetime(2026, 12, 7, tzinfo=timezone.utc)
    emitted: list = []
    service = Lineage(Places("mlbus", "kafka://broker:9093", "urn:mlbus:lineage:0"), Scoring(3600),
                      emitted.append, 60.0, clock=lambda: now)
    passed = next(decode_message(BUS, m) for m in hostile_messages("inference.predictions")
                  if outcome(BUS, m) != "refused")
    value = {**passed.value, "model": "m", "version": 1, "predicted_at": when}
    physical = BUS.catalogue.physical("inference.predictions")
    received = decode_message(BUS, FakeMessage(physical, b"m", BUS.schemas.encode("mlbus.Prediction", value), 0, []))
    try:
        service(received)
    except BadInput:
        pass
    service.tick()
    return service


def test_lineage_a_prediction_of_the_current_hour_opens_one_period_closed_by_a_later_tick():
    from datetime import datetime, timezone
    service = lineage_with_a_prediction_at(datetime(2026, 12, 6, 23, 30, tzinfo=timezone.utc))
    assert len(service.scoring.open) == 1


def test_finding_7_a_prediction_dated_years_ahead_opens_no_period():
    from datetime import datetime, timezone
    service = lineage_with_a_prediction_at(datetime(2500, 1, 1, tzinfo=timezone.utc))
    assert service.scoring.open == {}


MAX_LINEAGE_NAME = 1024       # what a lineage backend stores for a dataset's name (Marquez: a bounded column)


def lineage_names_of_a_batch_at(uri: str) -> list[str] | None:
    """The dataset names the lineage service emits for a DataBatch with this URI; None when it refuses it."""
    from services.lineage.decide import Places, Scoring
    from services.lineage.handlers import Lineage
    emitted: list = []
    service = Lineage(Places("mlbus", "kafka://broker:9093", "urn:mlbus:lineage:0"), Scoring(3600),
                      emitted.append, 60.0)
    passed = next(decode_message(BUS, m) for m in hostile_messages("data.batches") if outcome(BUS, m) != "refused")
    physical = BUS.catalogue.physical("data.batches")
    value = {**passed.value, "dataset": "d", "uri": uri}
    try:
        received = decode_message(BUS, FakeMessage(physical, b"d", BUS.schemas.encode("mlbus.DataBatch", value), 0, []))
        service(received)
    except BadInput:
        return None
    return [d.namespace + "|" + d.name for e in emitted for d in (*(e.inputs or []), *(e.outputs or []))]


@pytest.mark.parametrize("uri", ["s3://bucket/" + "k" * 200_000, "s3://bucket/a\x1b[31mb\x07"], ids=["long", "escapes"])
def test_finding_8_a_batch_uri_becomes_a_bounded_printable_dataset_name_or_a_refusal(uri):
    names = lineage_names_of_a_batch_at(uri)
    if names is None:
        return
    assert names, "the batch mapped to no dataset"
    for name in names:
        assert len(name) <= MAX_LINEAGE_NAME and name.isprintable(), name[:120]


def test_lineage_an_ordinary_batch_uri_is_its_dataset_name():
    names = lineage_names_of_a_batch_at("s3://bucket/shop/2026-12-06.parquet")
    assert names and any(n == "s3://bucket|shop/2026-12-06.parquet" for n in names), names


# ---------------------------------------------------------------- mutual TLS: who a client certificate may name
def kafka_script():
    import importlib.util
    import sys
    from importlib.machinery import SourceFileLoader
    sys.path.insert(0, str(ROOT / "scripts"))          # scripts/kafka imports its neighbours (ports, private)
    loader = SourceFileLoader("mlbus_kafka_script", str(ROOT / "scripts/kafka"))
    spec = importlib.util.spec_from_loader("mlbus_kafka_script", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def refuses(check, name: str) -> bool:
    try:
        check(name)
    except SystemExit:
        return True
    return False


def test_client_cert_names_refused_for_admin_services_lookalikes_and_other_dn_fields():
    check = kafka_script().check_cert_principal
    for name in ("admin", "auditor", "t0123abcd.scorer", "drift-watcher", "exporter", "dana,o=x", "dana+cn=admin",
                 "d\u0430na", "Dana", "dana\n", "cn=dana", "", "a" * 201, "dana/x", "dana admin"):
        assert refuses(check, name), repr(name)
    assert not refuses(check, "dana") and not refuses(check, "t0123abcd.dana")


def test_finding_9_no_client_certificate_names_a_non_person_principal():
    from services.bus.access import service_principals
    check = kafka_script().check_cert_principal
    principals = service_principals(BUS.catalogue)
    assert "app" in principals and "exporter" in principals
    allowed = [p for p in principals if not refuses(check, p)]
    assert allowed == []                        # every principal the catalogue names, services and app alike


def test_finding_10_a_flood_of_fresh_unknown_ids_costs_the_registry_a_bounded_number_of_requests():
    registry = DictRegistry()
    bus = registry_bus(registry)
    physical = BUS.catalogue.physical("inference.requests")
    for schema_id in range(10_000, 11_000):
        with pytest.raises(BadInput):
            decode_message(bus, FakeMessage(physical, b"k", confluent_prefix(schema_id) + b"\x00", 0, []))
    assert len(registry.asked) <= 100, f"{len(registry.asked)} registry requests for 1,000 records"
