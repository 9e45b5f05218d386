"""The export bridge on the real broker and a real schema registry: records of a topic in single-object encoding
(one already in Confluent's framing, two the codec cannot place) are mirrored by `mlbus export` into the topic's
Confluent-framed copy; the bridge is killed with SIGKILL mid-way and started again, and the copy holds every
placeable record exactly once, in its source partition's order, with the same key, headers, time and Avro body
bytes, framed 00 + an id the registry resolves to the writer schema. The two others are dead letters, bytes
intact."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from datetime import datetime, timezone

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from services.bus.codec import CONFLUENT_HEADER_LEN, HEADER_LEN, MARKER, confluent_prefix, parse_announced, \
    registry_form, writer_schema
from services.bus.context import Bus
from services.bus.credentials import ADMIN
from services.bus.kafka import base_config, producer_config
from services.bus.settings import PROJECT_ROOT
from tests.support.polling import wait_until

pytestmark = pytest.mark.timeout(900)       # a first run fetches the registry (~160 MB) from Maven Central
TOPIC, RECORD = "kpis", "mlbus.KpiObserved"
PLACEABLE = 20_000                          # enough that a kill lands while the bridge is copying


def kpi(n: int) -> dict:
    at = datetime(2026, 12, 1, tzinfo=timezone.utc)
    return {"kpi_id": f"k{n}", "name": "conversion", "value": n / 7, "window_start": at, "window_end": at,
            "dimensions": {"variant": str(n % 3)}, "source": "shop", "observed_at": at}


def publish(admin: Bus) -> list[bytes]:
    """Source records, in single-object encoding but one in Confluent's framing (its id under the source's
    subject) and two the codec cannot place; their values in the order sent."""
    schema = admin.schemas.schema(RECORD)
    registry = admin.schemas.registry
    assert registry is not None
    source_id = registry.id_for(RECORD, registry_form(schema.parsed))
    values = [admin.schemas.encode(RECORD, kpi(n)) for n in range(PLACEABLE)]
    values[5] = confluent_prefix(source_id) + values[5][HEADER_LEN:]
    values[100:100] = [b"not avro at all", MARKER + b"\x01" * 8 + values[0][HEADER_LEN:]]
    producer = Producer(producer_config(admin.settings, "test-export"))
    for n, value in enumerate(values):
        producer.produce(admin.catalogue.physical(TOPIC), value=value, key=f"shop-{n % 17}".encode(),
                         headers=[("ce_id", f"id-{n}".encode())], timestamp=1_764_547_200_000 + n)
        if n % 1000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0
    return values


def read_all(admin: Bus, physical: str, committed: bool = True, settle_s: float = 3.0) -> list:
    """Every message of a topic, to its end (waits settle_s past the end so that extras would show)."""
    consumer = Consumer({**base_config(admin.settings), "group.id": "test-export-reader", "enable.auto.commit": False,
                         "isolation.level": "read_committed" if committed else "read_uncommitted",
                         "enable.partition.eof": True})
    try:
        partitions = consumer.list_topics(physical, timeout=30).topics[physical].partitions
        consumer.assign([TopicPartition(physical, p, -2) for p in partitions])
        messages: list = []
        at_end: set[int] = set()
        wait_until(lambda: _drain(consumer, messages, at_end) >= len(partitions), 120, f"the end of {physical}")
        _drain(consumer, messages, at_end, settle_s)        # anything past the end (a duplicate) would show
        return messages
    finally:
        consumer.close()


def _drain(consumer: Consumer, messages: list, at_end: set, for_s: float = 0.5) -> int:
    for message in consumer.consume(5000, for_s):
        if message.error() is None:
            messages.append(message)
        else:
            at_end.add(message.partition())
    return len(at_end)


def copy_count(admin: Bus, physical: str) -> int:
    consumer = Consumer({**base_config(admin.settings), "group.id": "test-export-count", "enable.auto.commit": False,
                         "isolation.level": "read_uncommitted"})
    try:
        metadata = consumer.list_topics(physical, timeout=10).topics.get(physical)
        if metadata is None or metadata.error is not None:
            return 0
        return sum(consumer.get_watermark_offsets(TopicPartition(physical, p), timeout=10)[1]
                   for p in metadata.partitions)
    except KafkaException:          # a copy just made has no leader for a moment
        return 0
    finally:
        consumer.close()


def export(env: dict, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "services.cli.main", "export", TOPIC, "--to", "confluent",
                             "--progress", "1", *extra], cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_the_bridge_copies_each_record_once_across_a_kill_9(bus, bus_env, schema_registry):
    env = {**bus_env, **schema_registry.writer_env()}          # the registry's writer, not its admin
    admin = Bus.from_env(env, principal=ADMIN)
    sent = publish(admin)
    copy = admin.catalogue.copy_of(TOPIC)

    first = export(env)
    try:
        wait_until(lambda: first.poll() is not None or copy_count(admin, copy) > 0, 120, "the bridge's first copies")
        assert first.poll() is None, first.communicate()
        first.send_signal(signal.SIGKILL)           # mid-way: a transaction may be open
    finally:
        first.kill()
        first.wait(30)
    at_kill = len(read_all(admin, copy, settle_s=0.5))
    assert at_kill < PLACEABLE, "the bridge was done before the kill"
    print(f"copied before the kill: {at_kill} committed of {PLACEABLE}, {copy_count(admin, copy)} written")

    second = export(env, "--until-caught-up", "--json")
    out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    summary = json.loads(out)
    assert summary["caught_up"] and summary["topics"][TOPIC]["copy"] == copy

    source = read_all(admin, admin.catalogue.physical(TOPIC))
    copies = read_all(admin, copy)
    dead = read_all(admin, admin.catalogue.physical(admin.catalogue[TOPIC].dlq))
    assert sorted(m.value() for m in dead) == sorted([b"not avro at all", sent[101]])
    assert {dict(m.headers())["dlq.service"] for m in dead} == {b"exporter"}
    placeable = [m for m in source if m.value() not in (sent[100], sent[101])]
    assert len(source) == PLACEABLE + 2 and len(copies) == PLACEABLE       # each once: none lost, none twice
    for partition in {m.partition() for m in source}:
        originals = [m for m in placeable if m.partition() == partition]
        copied = [m for m in copies if m.partition() == partition]
        # in order, with the same key, headers and time (the source's, which its broker may have stamped)
        assert [(m.key(), m.headers(), m.timestamp()[1]) for m in copied] == \
               [(m.key(), m.headers(), m.timestamp()[1]) for m in originals], partition
        for original, mirrored in zip(originals, copied):
            framed = mirrored.value()
            if original.value()[:1] == b"\x00":
                assert framed == original.value()                       # already Confluent-framed: as it was
                continue
            assert framed[:1] == b"\x00" and framed[CONFLUENT_HEADER_LEN:] == original.value()[HEADER_LEN:]
            assert admin.schemas.decode(framed) == admin.schemas.decode(original.value())

    registry = admin.schemas.registry
    assert registry is not None
    local = admin.schemas.schema(RECORD)
    copy_ids = {int.from_bytes(m.value()[1:CONFLUENT_HEADER_LEN], "big") for m in copies}
    for schema_id in copy_ids:                  # the copy subject's, and the source's of the record copied as it came
        fetched = writer_schema(parse_announced(str(registry.schema_text(schema_id)), local.parsed))
        assert fetched.fingerprint == local.fingerprint
    subject = f"{copy}-value"
    registered = registry.call("GET", f"/subjects/{subject}/versions/latest")
    assert registered["id"] in copy_ids
    level = registry.call("GET", f"/config/{subject}")
    assert (level.get("compatibilityLevel") or level.get("compatibility")) == "BACKWARD"

    # Started again with nothing new, then stopped as Ctrl-C would: exit 0, nothing copied twice.
    idle = export(env, "--progress", "0.5", "--json")
    assert idle.stderr is not None
    assert "0 copied" in idle.stderr.readline()         # its first progress line: it is running, with nothing to do
    idle.send_signal(signal.SIGTERM)
    out, err = idle.communicate(timeout=120)
    assert idle.returncode == 0, err
    assert json.loads(out)["topics"][TOPIC] == {"copy": copy, "copied": 0, "dead_lettered": 0}
    assert len(read_all(admin, copy)) == PLACEABLE


def test_a_topic_topics_yaml_does_not_export_is_refused_before_anything_starts(bus_env, schema_registry):
    refused = subprocess.run([sys.executable, "-m", "services.cli.main", "export", "inference.requests", "--to",
                              "confluent"], cwd=PROJECT_ROOT, env={**bus_env, **schema_registry.env()},
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "inference.requests is not exportable" in refused.stderr
    no_registry = {k: v for k, v in bus_env.items() if not k.startswith("MLBUS_REGISTRY")}
    unconfigured = subprocess.run([sys.executable, "-m", "services.cli.main", "export", TOPIC, "--to", "confluent"],
                                  cwd=PROJECT_ROOT, env=no_registry, capture_output=True, text=True, timeout=120)
    assert unconfigured.returncode == 2 and "no schema registry configured" in unconfigured.stderr
