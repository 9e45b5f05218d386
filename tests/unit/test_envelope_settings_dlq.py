from services.bus.dlq import scrub
from services.bus.envelope import Event, derive_id, envelope_for, from_headers, to_headers
from services.bus.jsonio import from_json, to_json
from services.bus.settings import Settings
from services.bus.codec import SchemaCatalogue
from services.bus.errors import BadInput
from services.bus.settings import PROJECT_ROOT
from tests.support.samples import SAMPLE_TIME

import pytest
from hypothesis import given, settings, strategies as st


def test_headers_round_trip_and_follow_cloudevents_binary_mode():
    cause = envelope_for(Event("mlbus.DataBatch", {}, "iris", "cause-id"), "cli:ana")
    envelope = envelope_for(Event("mlbus.DataValidated", {}, "iris", "effect-id", subject="iris"), "validator", cause)
    headers = dict(to_headers(envelope))
    assert headers["ce_specversion"] == b"1.0" and headers["content-type"] == b"application/avro"
    assert headers["ce_type"] == b"mlbus.DataValidated" and headers["ce_subject"] == b"iris"
    assert headers["causationid"] == b"cause-id" and headers["correlationid"] == b"cause-id"
    assert envelope.traceparent.split("-")[1] == cause.traceparent.split("-")[1]     # same trace
    assert from_headers(list(headers.items()), "fallback", "x") == envelope


def test_a_message_without_headers_gets_a_stable_fallback_id():
    assert from_headers(None, "topic/0/12", "mlbus.Outcome").id == "topic/0/12"


def test_derived_ids_are_deterministic():
    assert derive_id("a", 1) == derive_id("a", 1) != derive_id("a", 2)


def test_kafka_settings_from_environment_keep_secrets_out_of_reprs():
    settings = Settings.from_env({"MLBUS_KAFKA_SASL_PASSWORD": "hunter2", "MLBUS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"})
    assert settings.connection.kafka_overrides["security.protocol"] == "SASL_SSL"
    assert str(settings.connection.kafka_overrides["sasl.password"]) == "hunter2"
    assert "hunter2" not in repr(settings)
    assert settings.connection.secret_values() == ["hunter2"]


def test_scrub_removes_secret_values_and_password_assignments():
    text = scrub("login failed for password=abc with token: xyz and key hunter2", ["hunter2"])
    assert "abc" not in text and "xyz" not in text and "hunter2" not in text


def test_json_input_converts_times_and_bytes_and_fills_event_time():
    schema = SchemaCatalogue.from_dir(PROJECT_ROOT / "schemas").schema("mlbus.AuditRecord").parsed
    datum = from_json(schema, {"audited_at": "2026-11-23T12:30:15.123Z", "key": "AAH/", "headers": []})
    assert datum["audited_at"] == SAMPLE_TIME and datum["key"] == b"\x00\x01\xff"
    assert to_json(datum)["audited_at"] == "2026-11-23T12:30:15.123000Z"


def test_json_input_with_an_unknown_field_is_refused():
    schema = SchemaCatalogue.from_dir(PROJECT_ROOT / "schemas").schema("mlbus.Outcome").parsed
    with pytest.raises(BadInput, match="no field 'colour'"):
        from_json(schema, {"colour": "red"})


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.text(st.characters(exclude_categories=("Cs",))), st.integers()), max_size=4))
def test_derive_id_is_rfc4122_uuid5(parts):
    import uuid
    from services.bus.envelope import ID_NAMESPACE
    assert derive_id(*parts) == str(uuid.uuid5(ID_NAMESPACE, "/".join(str(p) for p in parts)))
