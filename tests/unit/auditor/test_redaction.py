"""Personal data for a reader without the dpo role: the broker refuses it audit.keys (TOPIC_AUTHORIZATION_FAILED),
which reads as "no keys" — every personal field says it is redacted, nothing crashes — while any other broker
error stays an error. Only the auditor and the dpo role read audit.keys; the admin role does not imply it."""
import pytest
from confluent_kafka import KafkaError, KafkaException

from services.bus.access import holds, plan_acls
from services.cli.audit_cmd import print_explanation
from services.adapters import audit_log, decoded, keys_refused
from services.domain import REDACTED, cited, personal_state
from tests.unit.auditor.test_erasure import auditor, bus_without_broker, records_of, request
from tests.unit.test_access import BUS, topic_grants


def test_only_the_auditor_and_the_dpo_role_read_audit_keys_and_admin_does_not_imply_dpo():
    grants = plan_acls(BUS.catalogue, {"t1.mallory": ["viewer"], "t1.dora": ["dpo"], "t1.lead": ["admin"]})
    readers = {g.principal for g in grants if g.name == "t1.audit.keys" and g.operation == "read"}
    assert readers == {"auditor", "t1.dora"}
    assert "audit.log" in topic_grants(grants, "t1.mallory", "read")          # the log itself stays readable
    assert holds(["admin"], "approver") and not holds(["admin"], "dpo") and holds(["dpo"], "dpo")


def test_only_an_authorization_failure_means_no_keys():
    assert keys_refused(None) is False
    assert keys_refused(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)) is True
    for other in (KafkaError._TRANSPORT, KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._TIMED_OUT):
        with pytest.raises(KafkaException):
            keys_refused(KafkaError(other))


def test_personal_state_names_what_the_reader_sees():
    assert personal_state(True, False, True) == "readable"
    assert personal_state(False, True, True) == "erased"         # an erasure is on record for everyone
    assert personal_state(False, False, True) == "redacted"
    assert personal_state(False, False, False) == "sealed"


def refused_reader(bus, tmp_path, monkeypatch) -> list:
    audit = auditor(bus, tmp_path)
    records = records_of(audit([request(bus, "e1", 0)]))
    monkeypatch.setattr(audit_log, "data_keys", lambda bus: None)     # the broker refused audit.keys
    return list(decoded(bus, records))


def test_a_reader_refused_audit_keys_sees_each_personal_field_redacted(tmp_path, monkeypatch):
    bus = bus_without_broker()
    [event] = refused_reader(bus, tmp_path, monkeypatch)
    assert event.personal == "redacted" and event.hidden == ("features", "categories")
    shown = event.shown()
    assert shown["features"] == REDACTED and shown["categories"] == REDACTED and shown["request_id"] == "r0"
    shown = cited(event)
    assert shown["features"] == REDACTED and shown["personal_data"] == "redacted"


def test_explain_prints_the_redaction(tmp_path, monkeypatch, capsys):
    bus = bus_without_broker()
    [event] = refused_reader(bus, tmp_path, monkeypatch)
    prediction = {"label": "1", "score": 0.9, "model": "m", "version": 1, "variant": "served", "at": event.at,
                  "audit_sequence": 2}
    print_explanation({"request_id": "r0", "prediction": prediction, "request": cited(event),
                       "model_version": None, "deployment": None, "ensemble_members": [], "data": [],
                       "decisions": [], "later_drift_alerts": []})
    assert f"features: {REDACTED}" in capsys.readouterr().out
