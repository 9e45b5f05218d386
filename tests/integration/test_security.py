"""Who did it, provably — on the real, secured broker: authentication, ACLs derived from topics.yaml, and
the broker refusing what a principal may not do."""
from __future__ import annotations

import json
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

import pandas as pd

from services.bus import Publisher
from services.bus.access import EVERY, EXPORTER, service_principals
from services.bus.context import Bus
from services.bus.credentials import client_credentials
from services.bus.identity import Identity
from services.bus.kafka import group_id
from services.bus.settings import Settings
from services.domain import REDACTED
from services.adapters import audit_records
from services.adapters.audit_log import topic_error
from tests.support.drift import send_traffic
from tests.support.polling import wait_until
from tests.support.processes import running

REFUSED = "refused"


def as_principal(bus: Bus, principal: str) -> Bus:
    return Bus(bus.settings.connecting_as(principal), bus.catalogue, bus.schemas)


def connection(bus: Bus, **overrides) -> dict:
    return {"bootstrap.servers": bus.settings.bootstrap, **client_credentials(bus.settings), **overrides}


def expected_writers(bus: Bus, topic) -> set[str]:
    """Straight from topics.yaml: who the catalogue says produces the topic (people aside); the export bridge
    writes the dead letters of a topic marked `export:`."""
    everyone = set(service_principals(bus.catalogue))
    named = everyone if EVERY in topic.producers else {p for p in topic.producers if not p.startswith("role:")}
    exported = topic.dead_letter_for is not None and bus.catalogue[topic.dead_letter_for].export is not None
    return named | ({EXPORTER} if exported else set())


def expected_readers(bus: Bus, topic) -> set[str]:
    """Who consumes or reads the topic, and the export bridge on a topic marked `export:`."""
    everyone = set(service_principals(bus.catalogue))
    named = {*topic.consumers, *topic.readers}
    return (everyone if EVERY in named else named) | ({EXPORTER} if topic.export is not None else set())


def write_outcomes(bus: Bus, principal: str) -> dict[str, str]:
    """Produce one message to every catalogue topic as `principal`: topic → 'ok' or the broker's error name."""
    producer = Producer(connection(as_principal(bus, principal), **{"acks": "all", "message.timeout.ms": 20_000}))
    outcomes: dict[str, str] = {}
    for topic in bus.catalogue:
        def delivered(error, _message, name=topic.name):
            outcomes[name] = "ok" if error is None else error.name()
        producer.produce(bus.catalogue.physical(topic.name), b"not avro: an ACL probe", key=b"probe", partition=0,
                         on_delivery=delivered)          # a key: compacted topics refuse messages without one
    assert producer.flush(60) == 0
    return outcomes


def read_outcomes(bus: Bus, principal: str) -> dict[str, str]:
    """Fetch from every catalogue topic (each holds the admin's probe message) as `principal`."""
    return reading_outcomes(as_principal(bus, principal))


def reading_outcomes(member: Bus, names: tuple[str, ...] = ()) -> dict[str, str]:
    """read_outcomes for a bus acting as its principal (a service's, or a person's identity file); with names,
    of those topics only."""
    consumer = Consumer(connection(member, **{"group.id": group_id(member.settings, "acl-probe"),
                                              "enable.auto.commit": False, "isolation.level": "read_uncommitted",
                                              "auto.offset.reset": "earliest"}))
    physical = {member.catalogue.physical(t.name): t.name for t in member.catalogue if t.name in names or not names}
    # Subscribed, a topic the principal may not read reports TOPIC_AUTHORIZATION_FAILED (from its metadata,
    # or from the fetch when it may only write it); assigned, it would stay silent.
    consumer.subscribe(list(physical))
    outcomes: dict[str, str] = {}
    deadline = time.monotonic() + 60
    try:
        while len(outcomes) < len(physical) and time.monotonic() < deadline:
            for message in consumer.consume(100, 1.0):
                topic = physical.get(message.topic())
                if topic is None or topic in outcomes:
                    continue
                error = message.error()
                if error is None:
                    outcomes[topic] = "ok"
                elif error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
                    outcomes[topic] = REFUSED
                else:
                    outcomes[topic] = error.name()
    finally:
        consumer.close()
    return {name: outcomes.get(name, "nothing within 60 s") for name in physical.values()}


def test_no_credentials_a_wrong_password_or_plaintext_are_refused_and_write_nothing(bus):
    topic = bus.catalogue.physical("kpis")
    attempts = {
        "no credentials": {"security.protocol": "SSL", "ssl.ca.location": client_credentials(bus.settings)["ssl.ca.location"]},
        "wrong password": {**client_credentials(bus.settings), "sasl.password": "not-the-password"},
        "plaintext": {"security.protocol": "PLAINTEXT"},
    }
    for name, config in attempts.items():
        errors: list[KafkaError] = []
        producer = Producer({"bootstrap.servers": bus.settings.bootstrap, **config, "message.timeout.ms": 5_000,
                             "error_cb": errors.append})
        delivered: list = []
        producer.produce(topic, b"x", on_delivery=lambda error, message: delivered.append(error))
        producer.flush(15)
        assert delivered and delivered[0] is not None, name                  # not acknowledged
        assert errors, f"{name}: the client saw no error"
        text = " ".join(str(e) for e in errors)
        if name == "wrong password":
            assert "Authentication failed" in text, text
    low, high = Consumer(connection(bus, **{"group.id": group_id(bus.settings, "check")})).get_watermark_offsets(
        TopicPartition(topic, 0), timeout=10)
    assert high == 0                                                           # nothing was written


def test_each_principal_writes_and_reads_exactly_what_topics_yaml_says(bus):
    admin_probe = Producer(connection(bus))
    for topic in bus.catalogue:
        admin_probe.produce(bus.catalogue.physical(topic.name), b"probe", key=b"probe", partition=0)
    assert admin_probe.flush(60) == 0
    mismatches = []
    for principal in service_principals(bus.catalogue):
        written, read = write_outcomes(bus, principal), read_outcomes(bus, principal)
        for topic in bus.catalogue:
            may_write, may_read = principal in expected_writers(bus, topic), principal in expected_readers(bus, topic)
            if (written[topic.name] == "ok") != may_write or (
                    not may_write and written[topic.name] != "TOPIC_AUTHORIZATION_FAILED"):
                mismatches.append(f"{principal} write {topic.name}: {written[topic.name]} (catalogue: {may_write})")
            if (read[topic.name] == "ok") != may_read:
                mismatches.append(f"{principal} read {topic.name}: {read[topic.name]} (catalogue: {may_read})")
    assert not mismatches, "\n".join(mismatches)
    assert "scorer" not in expected_writers(bus, bus.catalogue["models.lifecycle"])
    assert {p for p in service_principals(bus.catalogue)
            if p in expected_writers(bus, bus.catalogue["audit.log"])} == {"auditor"}


def test_only_the_admin_may_delete_or_reconfigure_the_audit_log(bus):
    audit_log = bus.catalogue.physical("audit.log")
    auditor = AdminClient(connection(as_principal(bus, "auditor")))
    with pytest.raises(KafkaException, match="AUTHORIZATION_FAILED"):
        auditor.delete_topics([audit_log], operation_timeout=10)[audit_log].result()
    change = ConfigResource(ResourceType.TOPIC, audit_log, incremental_configs=[
        ConfigEntry("retention.ms", "1000", incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(KafkaException, match="AUTHORIZATION_FAILED"):
        next(iter(auditor.incremental_alter_configs([change]).values())).result()
    assert audit_log in AdminClient(connection(bus)).list_topics(timeout=10).topics


def test_transactional_ids_belong_to_their_principal(bus):
    validator = as_principal(bus, "validator")
    own_prefix = Producer(connection(validator, **{"transactional.id": group_id(validator.settings, "probe")}))
    own_prefix.init_transactions(30)                                   # its own prefix: allowed
    for principal, transactional_id in (("validator", "someone-else.0"),                      # another prefix
                                        ("trainer", group_id(validator.settings, "0"))):       # another's id
        producer = Producer(connection(as_principal(bus, principal), **{"transactional.id": transactional_id}))
        with pytest.raises(KafkaException, match="TRANSACTIONAL_ID_AUTHORIZATION_FAILED"):
            producer.init_transactions(30)


def person_bus(env: dict[str, str], identity_file) -> Bus:
    """A Bus acting as the person of this identity file, over their own broker credentials (as the CLI does)."""
    identity = Identity.load(identity_file)
    return Bus.from_settings(Settings.from_env(env).as_person(identity.principal, identity.kafka))


def test_only_the_dpo_reads_audit_keys_and_a_viewers_explain_shows_personal_data_redacted(bus, bus_env, cli,
                                                                                           tmp_path):
    with running("services.auditor", bus_env, tmp_path / "auditor.log"):
        [request_id] = send_traffic(Publisher(bus, "test:app"), "m", 1, pd.DataFrame([{"income": 73412.5}]), "r")
        wait_until(lambda: len(audit_records(bus, ["mlbus.Prediction"])) == 1, timeout=120,
                   message="the auditor to audit the prediction")
    mallory = person_bus(bus_env, cli.identity("mallory"))
    assert topic_error(mallory, "audit.keys").name() == "TOPIC_AUTHORIZATION_FAILED"       # the broker refuses her
    assert reading_outcomes(mallory, ("audit.keys",)) == {"audit.keys": REFUSED}
    dora = person_bus(bus_env, cli.identity("dora"))
    assert topic_error(dora, "audit.keys") is None
    hers = cli("audit", "explain", request_id, "--json", person="mallory")
    assert hers.returncode == 0, hers.stderr
    shown = json.loads(hers.stdout)["request"]
    assert (shown["features"], shown["personal_data"], shown["request_id"]) == (REDACTED, "redacted", request_id)
    assert f"features: {REDACTED}" in cli("audit", "explain", request_id, person="mallory").stdout
    exported = [json.loads(line) for line in cli("audit", "export", person="mallory").stdout.splitlines()]
    [request] = [e for e in exported if e["topic"] == "inference.requests"]
    assert request["value"]["features"] == REDACTED and request["value"]["request_id"] == request_id
    opened = json.loads(cli("audit", "explain", request_id, "--json", person="dora").stdout)["request"]
    assert opened["personal_data"] == "readable" and opened["features"] == {"income": 73412.5}
