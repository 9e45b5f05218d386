"""Avro single-object encoding: round trips, exact bytes, schema evolution, bad input."""
import json

import pytest
from fastavro.schema import parse_schema

from services.bus.codec import HEADER_LEN, MARKER, SchemaCatalogue, parse_announced
from services.bus.errors import BadInput, DecodeError
from services.bus.settings import PROJECT_ROOT
from tests.support.samples import sample

SCHEMAS = PROJECT_ROOT / "schemas"
CATALOGUE = SchemaCatalogue.from_dir(SCHEMAS)


def crc64_avro(data: bytes) -> int:
    """The Avro spec's reference CRC-64-AVRO, written out independently of fastavro."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


@pytest.mark.parametrize("name", sorted(CATALOGUE.by_name))
def test_every_schema_round_trips(name):
    datum = sample(CATALOGUE.schema(name).parsed)
    encoded = CATALOGUE.encode(name, datum, check=True)
    assert encoded[:2] == MARKER
    assert CATALOGUE.decode(encoded) == (name, datum)


def test_exact_bytes_of_a_known_record():
    schema = {"type": "record", "name": "Point", "namespace": "test", "fields": [
        {"name": "x", "type": "long"}, {"name": "label", "type": "string"}]}
    catalogue = SchemaCatalogue([parse_schema(schema)])
    canonical = b'{"name":"test.Point","type":"record","fields":[{"name":"x","type":"long"},' \
                b'{"name":"label","type":"string"}]}'
    fingerprint = crc64_avro(canonical).to_bytes(8, "little")
    # x=1 → zigzag varint 0x02; label "hi" → length 2 (0x04) then the UTF-8 bytes.
    expected = b"\xc3\x01" + fingerprint + b"\x02\x04hi"
    assert catalogue.encode("test.Point", {"x": 1, "label": "hi"}) == expected


def test_fingerprints_of_every_schema_match_the_reference_crc():
    for schema in CATALOGUE.by_name.values():
        assert schema.fingerprint == crc64_avro(schema.canonical.encode()).to_bytes(8, "little")


def test_reader_with_an_added_defaulted_field_reads_old_data():
    old = {"type": "record", "name": "Thing", "namespace": "test", "fields": [{"name": "a", "type": "long"}]}
    new = {**old, "fields": old["fields"] + [{"name": "b", "type": "string", "default": "none"}]}
    writer = SchemaCatalogue([parse_schema(old)])
    reader = SchemaCatalogue([parse_schema(new)])
    reader.learn(json.dumps(old))
    assert reader.decode(writer.encode("test.Thing", {"a": 5})) == ("test.Thing", {"a": 5, "b": "none"})


def test_unknown_fingerprint_is_resolved_through_the_resolver():
    old = {"type": "record", "name": "Thing", "namespace": "test", "fields": [{"name": "a", "type": "long"}]}
    writer = SchemaCatalogue([parse_schema(old)])
    payload = writer.encode("test.Thing", {"a": 1})
    asked = []
    reader = SchemaCatalogue([], resolver=lambda fp: asked.append(fp) or json.dumps(old))
    assert reader.decode(payload) == ("test.Thing", {"a": 1})
    assert asked == [payload[2:HEADER_LEN]]


def without_new_drift_fields(schema):
    """DriftReport as it was before FeatureDrift gained bins/reference/current (expanded: FeatureDrift twice)."""
    if isinstance(schema, list):
        return [without_new_drift_fields(s) for s in schema]
    if isinstance(schema, dict):
        if schema.get("name") == "mlbus.FeatureDrift":
            return {**schema, "fields": [f for f in schema["fields"] if f["name"] not in ("bins", "reference", "current")]}
        return {k: without_new_drift_fields(v) for k, v in schema.items() if not k.startswith("__")}
    return schema


def test_an_older_writers_announced_canonical_form_reads_with_our_times_and_defaults():
    """What a service of the previous release announced on the schemas topic is its parsing canonical form: named
    types defined at each use (fastavro refuses to parse that back as is) and no logical types."""
    old = parse_announced(json.dumps(without_new_drift_fields(CATALOGUE.schema("mlbus.DriftReport").parsed)))
    writer = SchemaCatalogue([old])
    value = sample(CATALOGUE.schema("mlbus.DriftReport").parsed)
    value["features"] = [{k: v for k, v in value["prediction_drift"].items() if k not in ("bins", "reference", "current")}]
    value["prediction_drift"] = value["features"][0]
    payload = writer.encode("mlbus.DriftReport", value)
    announced = writer.schema("mlbus.DriftReport").canonical
    assert announced.count('"name":"mlbus.FeatureDrift"') == 2 and "logicalType" not in announced
    reader = SchemaCatalogue.from_dir(SCHEMAS, resolver=lambda fp: announced)
    name, read = reader.decode(payload)
    assert name == "mlbus.DriftReport" and read["window_end"] == value["window_end"]       # a datetime again
    assert read["features"][0]["bins"] == [] and read["prediction_drift"]["current"] == []


@pytest.mark.parametrize("payload, reason", [
    (b"", "too short"),
    (b"\x01\x01" + b"\x00" * 12, "marker"),
    (b"\x00\x01" + b"\x00" * 12, "registry"),       # a leading 00 is Confluent's framing (no registry here)
    (MARKER + b"\xde\xad\xbe\xef\x00\x00\x00\x00" + b"\x02", "unknown writer schema"),
])
def test_malformed_bytes_are_decode_errors(payload, reason):
    with pytest.raises(DecodeError, match=reason):
        CATALOGUE.decode(payload)


def test_truncated_body_is_a_decode_error():
    datum = sample(CATALOGUE.schema("mlbus.InferenceRequest").parsed)
    payload = CATALOGUE.encode("mlbus.InferenceRequest", datum)
    with pytest.raises(DecodeError):
        CATALOGUE.decode(payload[:-5])


def test_trailing_garbage_is_a_decode_error():
    datum = sample(CATALOGUE.schema("mlbus.Outcome").parsed)
    with pytest.raises(DecodeError, match="left after"):
        CATALOGUE.decode(CATALOGUE.encode("mlbus.Outcome", datum) + b"\x00")


def test_a_record_that_does_not_fit_names_the_field():
    datum = sample(CATALOGUE.schema("mlbus.KpiObserved").parsed) | {"value": "high"}
    with pytest.raises(BadInput, match="field 'value' got 'high', expected double"):
        CATALOGUE.encode("mlbus.KpiObserved", datum, check=True)
