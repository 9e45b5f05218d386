"""Proof with real outside readers (issue 38, item 3): predictions that mlbus's own Publisher writes in Confluent's
framing (00 + the registry's 4-byte id + Avro) are read, with the values mlbus reads, by tools that know nothing
of mlbus:
- a Kafka Connect standalone worker (connect-runtime 4.4.0) with Apicurio Registry's AvroConverter into a
  FileStreamSink;
- a Java consumer with Apicurio's Avro serde (tests/support/java/PrintValues.java);
- confluent-kafka's Python AvroDeserializer against the registry's Confluent-compatible API.
Security stays on: every reader logs in to the broker with SASL_SSL SCRAM as `app` (the business applications'
principal, which topics.yaml lets consume the predictions; in consumer groups its ACLs allow) and to the registry
over HTTPS as its read-only user.
"""
from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from confluent_kafka import Consumer
from confluent_kafka.schema_registry import SchemaRegistryClient as ConfluentRegistry
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from services.bus.context import Bus
from services.bus.credentials import read_properties
from services.bus.envelope import Event
from services.bus.publish import Publisher
from tests.support.outside_readers import (compile_reader, fetch_jars, json_lines, reader_access, ReaderAccess,
                                           start_connect, start_java_consumer, struct_fields)
from tests.support.people import mlbus_cli
from tests.support.polling import read_topic

pytestmark = pytest.mark.timeout(1500)       # a first run fetches the registry and ~100 jars from Maven Central

TOPIC, PREDICTION = "inference.predictions", "mlbus.Prediction"
COUNT = 6
SCALARS = ("prediction_id", "request_id", "entity_id", "model", "version", "variant", "served", "label", "score",
           "latency_ms", "cpu_ms", "deployment_id", "error")
READ_S = 240                                  # generous: JVMs start slowly on two busy cores


def predictions(count: int) -> list[dict]:
    """Predictions of every shape the topic carries: served and shadow, classifier and regressor, an ensemble's
    members, looked-up features found and missing, an error, nulls in every optional field."""
    at = datetime(2026, 12, 7, 1, 2, 3, 456000, tzinfo=timezone.utc)
    made = []
    for i in range(count):
        classifier = i % 2 == 0
        made.append({
            "prediction_id": f"p-{i}-{uuid.uuid4().hex[:8]}", "request_id": f"req-{i}", "entity_id": f"customer-{i}",
            "model": "churn" if classifier else "spend", "version": None if i == count - 1 else i + 1,
            "variant": "shadow" if i == 3 else "served", "served": i != 3,
            "label": ("yes" if i % 4 == 0 else "no") if classifier else None,
            "score": 0.875 - i / 8 if classifier else None,
            "probabilities": {"yes": 0.875, "no": 0.125} if classifier else {},
            "members": [{"model": "churn-a", "version": 2, "weight": 0.5, "probabilities": {"yes": 0.75},
                         "value": None},
                        {"model": "spend-b", "version": 1, "weight": 0.5, "probabilities": {}, "value": 12.5}]
            if i in (2, count - 1) else [],
            "lookups": [{"view": "shop", "version": "ab" * 32, "feature": "spend_7d", "entity": f"customer-{i}",
                         "value": 42.25, "text": None, "event_time": at - timedelta(minutes=5), "age_ms": 300000,
                         "missing": None, "reason": ""},
                        {"view": "shop", "version": "ab" * 32, "feature": "country", "entity": f"customer-{i}",
                         "value": None, "text": None, "event_time": None, "age_ms": None, "missing": "no-value",
                         "reason": "no event for this entity yet"}]
            if i == 1 else [],
            "latency_ms": 3.5 + i, "cpu_ms": 0.25 * i,
            "deployment_id": None if i == count - 1 else f"dep-{i}",
            "error": "no deployment" if i == count - 1 else None,
            "predicted_at": at + timedelta(seconds=i),
        })
    return made


def polled(consumer: Consumer, count: int) -> list:
    found, end = [], time.monotonic() + READ_S
    while len(found) < count and time.monotonic() < end:
        message = consumer.poll(1.0)
        if message is None:
            continue
        assert message.error() is None, message.error()
        found.append(message)
    assert len(found) == count, f"read {len(found)} of {count} messages in {READ_S} s"
    return found


def as_json(value):
    """A decoded value as JSON carries it: times as epoch milliseconds (Avro's timestamp-millis long)."""
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, dict):
        return {key: as_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [as_json(item) for item in value]
    return value


def java_text(value) -> str:
    """How a Connect Struct prints a scalar (Java's toString)."""
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if isinstance(value, float) else str(value)


def write_in_confluent_framing(bus_env: dict[str, str], schema_registry, values: list[dict]) -> int:
    """Every schema registered by mlbus's CLI (the registry's admin), then `values` published by the scorer's own
    Publisher under MLBUS_WIRE=confluent (as topics.yaml `wire: confluent` on the topic would); the schema id."""
    registered = mlbus_cli({**bus_env, **schema_registry.env()}, "schemas", "register", "--json")
    assert registered.returncode == 0, registered.stderr
    writer = Bus.from_env({**bus_env, **schema_registry.writer_env(), "MLBUS_WIRE": "confluent"}, principal="scorer")
    publisher = Publisher(writer, "scorer")
    for value in values:
        publisher.publish(Event(PREDICTION, value, key=value["entity_id"], id=value["prediction_id"]))
    publisher.flush(60)
    return json.loads(registered.stdout)["subjects"][f"{writer.catalogue.physical(TOPIC)}-value"]


def decoded_by_mlbus(bus: Bus, bus_env: dict[str, str], reader_file: str, schema_id: int) -> dict[str, dict]:
    """The topic's values as mlbus reads them, by prediction id, after checking their framing: 00 + the registry's
    id. The schema is looked up in the registry by id, as by a reader who never wrote it."""
    raw = [message.value() for message in read_topic(bus, TOPIC, COUNT, timeout=READ_S)]
    assert len(raw) == COUNT, f"{len(raw)} messages on {TOPIC}, not {COUNT}"
    assert {value[:5] for value in raw} == {b"\x00" + schema_id.to_bytes(4, "big")}
    reader = Bus.from_env({**bus_env, "MLBUS_REGISTRY_CONFIG": reader_file})
    decoded = [reader.schemas.decode(value) for value in raw]
    assert {record for record, _ in decoded} == {PREDICTION}
    return {datum["prediction_id"]: datum for _, datum in decoded}


def read_with_confluent_kafka(access: ReaderAccess, kafka: dict[str, str], topic: str, group: str) -> dict[str, dict]:
    """confluent-kafka's AvroDeserializer against the registry's Confluent-compatible API; values by prediction id."""
    registry = ConfluentRegistry({"url": access.registry_url, "ssl.ca.location": access.registry_ca,
                                  "basic.auth.user.info": f"{access.registry_user}:{access.registry_password}"})
    deserialize = AvroDeserializer(registry)
    consumer = Consumer({"bootstrap.servers": access.bootstrap, **kafka, "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    try:
        values = [deserialize(message.value(), SerializationContext(topic, MessageField.VALUE))
                  for message in polled(consumer, COUNT)]
    finally:
        consumer.close()
    return {value["prediction_id"]: value for value in values}


def assert_connect_wrote(lines: list[str], ours: dict[str, dict]) -> None:
    """The file sink's Structs against mlbus's values: every scalar field as Java prints it (nulls left out), and
    as many nested records as mlbus has."""
    connected = {fields["prediction_id"]: fields
                 for fields in (struct_fields(line, (*SCALARS, "members", "lookups")) for line in lines)}
    assert {key: {name: text for name, text in fields.items() if name in SCALARS}
            for key, fields in connected.items()} == \
        {key: {name: java_text(value[name]) for name in SCALARS if value[name] is not None}
         for key, value in ours.items()}
    for key, value in ours.items():
        for nested in ("members", "lookups"):
            assert connected[key][nested].count("Struct{") == len(value[nested]), (key, nested)


def test_connect_a_java_consumer_and_confluent_kafka_read_what_mlbus_wrote(broker, bus, bus_env, schema_registry,
                                                                          tmp_path):
    started = time.monotonic()
    libs = fetch_jars()
    fetched = time.monotonic()
    topic = bus.catalogue.physical(TOPIC)
    sent = predictions(COUNT)
    schema_id = write_in_confluent_framing(bus_env, schema_registry, sent)
    ours = decoded_by_mlbus(bus, bus_env, schema_registry.reader_file, schema_id)
    assert ours == {value["prediction_id"]: value for value in sent}

    # The outside readers log in as `app`, the business applications' principal, which topics.yaml lets consume
    # the predictions: its own SCRAM credentials, consumer groups its ACLs allow (<namespace>mlbus.app.*), the
    # registry's read-only user.
    app = {key: str(value) for key, value in read_properties(Path(broker.clients_dir) / "app.properties").items()
           if key != "bootstrap.servers"}
    access = reader_access(broker.bootstrap, app, Path(schema_registry.reader_file), tmp_path)
    group = f"{bus.catalogue.namespace}mlbus.app"
    (tmp_path / "connect").mkdir()
    connect = start_connect(libs, access, topic, f"{group}.connect", tmp_path / "connect")
    java_consumer = None
    try:
        java_started = time.monotonic()
        java_consumer = start_java_consumer(libs, compile_reader(libs, tmp_path), access, topic, f"{group}.java",
                                            COUNT, tmp_path, READ_S)
        assert read_with_confluent_kafka(access, app, topic, f"{group}.python") == ours

        printed, errors = java_consumer.communicate(timeout=READ_S + 120)       # Apicurio's serde
        java_s = time.monotonic() - java_started
        assert java_consumer.returncode == 0, errors[-4000:]
        assert {value["prediction_id"]: value for value in json_lines(printed)} == \
            {key: as_json(value) for key, value in ours.items()}

        lines = connect.wait_for(COUNT, READ_S)             # Kafka Connect, Apicurio's converter, the file sink
        assert len(lines) == COUNT, f"the file sink holds {len(lines)} of {COUNT} values:\n{connect.tail()}"
        assert_connect_wrote(lines, ours)
        connect_s = time.monotonic() - connect.started
    finally:
        connect.stop()
        if java_consumer is not None and java_consumer.poll() is None:
            java_consumer.kill()
            java_consumer.communicate(timeout=30)
    print(f"\noutside readers: jars ready in {fetched - started:.1f} s, the test's body "
          f"{time.monotonic() - started:.1f} s; java consumer (compile and run) {java_s:.1f} s; connect worker, "
          f"start to {COUNT} lines, {connect_s:.1f} s")
