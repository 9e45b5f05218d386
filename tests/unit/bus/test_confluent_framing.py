"""Confluent's framing beside single-object encoding (services/bus/codec.py), with a registry held in a dict:
for every record type, the body is the same bytes in both framings and reads back the same; a reader takes both
framings whichever it writes; what a registry form of a schema says is the schema (fingerprint and logical
types); and every id, registry answer or byte string that is not a record is a DecodeError (dead-lettered),
while a registry that does not answer is not (the service stops loudly)."""
import json

import pytest
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form
from hypothesis import given, settings, strategies as st

from services.bus.catalogue import CatalogueError, build_catalogue
from services.bus.codec import (CONFLUENT_HEADER_LEN, HEADER_LEN, LOOKUP_BUDGET, MAX_UNKNOWN_IDS, SchemaCatalogue,
                                confluent_prefix, registry_form)
from services.bus.context import Bus
from services.bus.errors import DecodeError, InfrastructureError
from services.bus.schema_registry import RegistryRefused, RegistryUnavailable, SchemaRegistry
from services.bus.settings import ConfigError, Settings
from tests.support.hostile import examples, strategy_for

BUS = Bus.from_settings(Settings.from_env({}))
RECORDS = sorted(BUS.schemas.by_name)


class DictRegistry:
    """A registry's two answers, from a dict: ids handed out in order of first registration."""

    def __init__(self):
        self.by_id: dict[int, str] = {}
        self.ids: dict[tuple[str, str], int] = {}
        self.asked: list[int] = []

    def id_for(self, record: str, schema_text: str) -> int:
        return self.ids.setdefault((record, schema_text), self.put(schema_text))

    def put(self, schema_text: str) -> int:
        schema_id = len(self.by_id) + 1
        self.by_id[schema_id] = schema_text
        return schema_id

    def schema_text(self, schema_id: int) -> str | None:
        self.asked.append(schema_id)
        return self.by_id.get(schema_id)


class DownRegistry(DictRegistry):
    def schema_text(self, schema_id: int) -> str | None:
        raise RegistryUnavailable("schema registry at http://127.0.0.1:1 did not answer")


def catalogues(registry=None):
    """(writer in Confluent framing for every record, a reader of both framings) sharing one registry."""
    registry = registry or DictRegistry()
    parsed = [schema.parsed for schema in BUS.schemas.by_name.values()]
    return SchemaCatalogue(parsed, registry=registry, confluent=RECORDS), SchemaCatalogue(parsed, registry=registry)


WRITER, BOTH = catalogues()


@pytest.mark.parametrize("record", RECORDS)
def test_every_record_type_has_the_same_body_in_both_framings_and_reads_back_the_same(record):
    writer, reader = WRITER, BOTH
    for value in examples(strategy_for(BUS.schemas.schema(record).parsed), 5, 3):
        single, confluent = BUS.schemas.encode(record, value), writer.encode(record, value)
        assert confluent[:1] == b"\x00" and single[:2] == b"\xc3\x01"
        assert confluent[CONFLUENT_HEADER_LEN:] == single[HEADER_LEN:]
        for payload in (confluent, single):           # compared as bytes again: NaN is not equal to itself
            name, datum = reader.decode(payload)
            assert name == record and BUS.schemas.encode(name, datum) == single


def test_a_writer_asks_the_registry_once_per_record_type_and_reads_its_own_ids_without_asking():
    registry = DictRegistry()
    writer, _ = catalogues(registry)
    value = examples(strategy_for(BUS.schemas.schema("mlbus.Prediction").parsed), 1, 0)[0]
    first, second = writer.encode("mlbus.Prediction", value), writer.encode("mlbus.Prediction", value)
    assert first[:CONFLUENT_HEADER_LEN] == second[:CONFLUENT_HEADER_LEN] == confluent_prefix(1)
    assert len(registry.ids) == 1
    writer.decode(first)
    assert registry.asked == []


@pytest.mark.parametrize("record", RECORDS)
def test_a_schema_in_registry_form_is_the_same_schema_with_its_logical_types(record):
    schema = BUS.schemas.schema(record)
    text = registry_form(schema.parsed)
    again = parse_schema(json.loads(text), expand=True)          # a name defined twice would be refused here
    assert "__fastavro" not in text
    assert fingerprint(to_parsing_canonical_form(again), "CRC-64-AVRO") == schema.fingerprint_hex
    assert own(again) == own(schema.parsed)                       # logical types, docs, defaults: all there


def own(node):
    """A parsed schema without fastavro's own keys."""
    if isinstance(node, list):
        return [own(item) for item in node]
    if isinstance(node, dict):
        return {key: own(value) for key, value in node.items() if not key.startswith("__")}
    return node


def test_a_reader_learns_a_writer_schema_it_has_not_seen_from_the_registry():
    registry = DictRegistry()
    record = "mlbus.Prediction"
    value = examples(strategy_for(BUS.schemas.schema(record).parsed), 1, 0)[0]
    payload = SchemaCatalogue([s.parsed for s in BUS.schemas.by_name.values()], registry=registry,
                              confluent=[record]).encode(record, value)
    fresh = SchemaCatalogue([s.parsed for s in BUS.schemas.by_name.values()], registry=registry)
    assert BUS.schemas.encode(*fresh.decode(payload)) == BUS.schemas.encode(record, value)
    fresh.decode(payload)
    assert registry.asked == [1]


HOSTILE_SCHEMAS = ['"string"', "[]", "{}", "not json", '{"type": "record", "name": "x", "fields": 7}',
                   "[" * 100_000 + "]" * 100_000, json.dumps({"type": "record", "name": "deep", "fields": [
                       {"name": "f", "type": json.loads("[" * 500 + '"int"' + "]" * 500)}]})]


@pytest.mark.parametrize("schema_text", HOSTILE_SCHEMAS, ids=range(len(HOSTILE_SCHEMAS)))
def test_a_registry_schema_that_is_no_record_schema_is_a_decode_error(schema_text):
    registry = DictRegistry()
    registry.by_id[7] = schema_text
    _, reader = catalogues(registry)
    with pytest.raises(DecodeError):
        reader.decode(confluent_prefix(7) + b"\x02\x00")


def test_an_id_the_registry_lacks_is_a_decode_error_asked_once():
    registry = DictRegistry()
    _, reader = catalogues(registry)
    for _ in range(3):
        with pytest.raises(DecodeError, match="not in the schema registry"):
            reader.decode(confluent_prefix(42) + b"\x00")
    assert registry.asked == [42]


def test_the_ids_found_unknown_are_remembered_within_a_bound(monkeypatch):
    monkeypatch.setattr("services.bus.codec.LOOKUP_BUDGET", (MAX_UNKNOWN_IDS * 2, 60.0))
    registry = DictRegistry()
    _, reader = catalogues(registry)
    for schema_id in range(MAX_UNKNOWN_IDS + 5):
        with pytest.raises(DecodeError):
            reader.decode(confluent_prefix(schema_id + 1000) + b"\x00")
    assert len(reader._unknown_ids) <= MAX_UNKNOWN_IDS and len(registry.asked) == MAX_UNKNOWN_IDS + 5


def test_a_confluent_record_without_a_registry_is_a_decode_error_naming_the_setting():
    with pytest.raises(DecodeError, match="MLBUS_REGISTRY_URL"):
        BUS.schemas.decode(confluent_prefix(1) + b"\x00")


def test_a_registry_that_does_not_answer_is_not_bad_input():
    _, reader = catalogues(DownRegistry())
    with pytest.raises(RegistryUnavailable):
        reader.decode(confluent_prefix(1) + b"\x00")


ONE_ID = DictRegistry()
ONE_ID.by_id[1] = registry_form(BUS.schemas.schema("mlbus.Prediction").parsed)
_, READER = catalogues(ONE_ID)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_any_bytes_decode_or_are_a_decode_error(payload):
    reader = READER
    for candidate in (payload, b"\x00" + payload, confluent_prefix(1) + payload):
        try:
            reader.decode(candidate)
        except DecodeError:
            pass


def test_the_wire_is_chosen_per_topic_or_for_the_deployment_and_never_for_mlbus_own_records():
    raw = {"topics": [
        {"name": "a", "schema": "mlbus.Prediction", "key": "k", "purpose": "p", "wire": "confluent"},
        {"name": "b", "schema": "mlbus.InferenceRequest", "key": "k", "purpose": "p"},
        {"name": "c", "schema": "mlbus.Alert", "key": "k", "purpose": "p", "wire": "single-object"},
        {"name": "audit", "schema": "mlbus.AuditRecord", "key": "k", "purpose": "p"}]}
    catalogue = build_catalogue(raw)
    assert catalogue.confluent_records("single-object") == {"mlbus.Prediction"}
    assert catalogue.confluent_records("confluent") == {"mlbus.Prediction", "mlbus.InferenceRequest"}
    for bad in ("avro", "CONFLUENT", 1):
        with pytest.raises(CatalogueError, match="wire"):
            build_catalogue({"topics": [{**raw["topics"][0], "wire": bad}]})
    with pytest.raises(CatalogueError, match="single-object encoding only"):
        build_catalogue({"topics": [{**raw["topics"][3], "wire": "confluent"}]})


def test_a_deployment_in_confluent_framing_needs_a_registry_and_a_known_wire():
    with pytest.raises(ConfigError, match="MLBUS_REGISTRY_URL"):
        Bus.from_settings(Settings.from_env({"MLBUS_WIRE": "confluent"}))
    with pytest.raises(ConfigError, match="MLBUS_WIRE"):
        Settings.from_env({"MLBUS_WIRE": "json"})
    bus = Bus.from_settings(Settings.from_env({"MLBUS_WIRE": "confluent", "MLBUS_REGISTRY_URL": "http://127.0.0.1:1"}))
    assert "mlbus.Prediction" in bus.schemas.confluent and "mlbus.AuditRecord" not in bus.schemas.confluent


class AnsweringRegistry(SchemaRegistry):
    """The bus's registry client over canned answers by path: a dict value is the JSON answer, an int a status."""

    def __init__(self, answers: dict):
        super().__init__("https://registry.invalid/apis/ccompat/v7", BUS.catalogue)
        self.answers_by_path = answers

    def call(self, method, path, body=None):
        answer = self.answers_by_path.get(path, 404)
        if answer == "down":
            raise RegistryUnavailable("did not answer")
        if isinstance(answer, int) and answer >= 500:
            raise RegistryUnavailable(f"{answer}", status=answer)
        if isinstance(answer, int):
            raise RegistryRefused(answer, "refused")
        return answer


@pytest.mark.parametrize("answers, stops", [
    ({"/schemas/ids/7": 500, "/schemas/types": ["AVRO"]}, False),   # a server error for this id alone: the record's
    ({"/schemas/ids/7": 500, "/schemas/types": 503}, True),         # the registry is in trouble: stop
    ({"/schemas/ids/7": "down", "/schemas/types": ["AVRO"]}, True),  # no answer at all
    ({"/schemas/ids/7": 401}, True),                                # our credentials: not the record's fault
    ({"/schemas/ids/7": 403}, True),
    ({"/schemas/ids/7": 422}, False),
    ({"/schemas/ids/7": {"schema": "not json"}}, False)])
def test_only_a_registry_that_fails_for_every_id_stops_the_reader(answers, stops):
    """A record that names an id is never a crash loop: the registry's failure for that id alone dead-letters it;
    a registry that does not answer, or refuses our credentials, stops the service (InfrastructureError)."""
    reader = SchemaCatalogue([s.parsed for s in BUS.schemas.by_name.values()], registry=AnsweringRegistry(answers))
    with pytest.raises(InfrastructureError if stops else DecodeError):
        reader.decode(confluent_prefix(7) + b"\x00")


def test_a_flood_of_ids_not_seen_before_costs_the_registry_a_budget_then_refusals():
    registry = DictRegistry()
    _, reader = catalogues(registry)
    most, _ = LOOKUP_BUDGET
    refusals = []
    for schema_id in range(1000, 1000 + most * 3):
        with pytest.raises(DecodeError) as refused:
            reader.decode(confluent_prefix(schema_id) + b"\x00")
        refusals.append(str(refused.value))
    assert len(registry.asked) == most
    assert all("flood of unknown ids" in reason for reason in refusals[most:])
