"""The compiled consumer (services/bus/native_consumer.py) on the real, secured broker: it reads what the client
reads — every field, headers of every shape, committed transactions only —, its group metadata carries a
transaction's offsets as the client's does, it seeks, knows positions and watermarks, reports statistics, and
tells an error event as one."""
from __future__ import annotations

import json
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from services.bus.kafka import consumer_config, group_id, producer_config
from services.bus.native_consumer import NativeConsumer, librdkafka_path
from services.domain.compiled import native
from tests.support.polling import wait_until

pytestmark = pytest.mark.skipif(native is None, reason="services/native is not built here")

HEADERS = [
    [("ce_id", b"1"), ("ce_source", b"shop")],
    [("empty", b""), ("none", None), ("twice", b"a"), ("twice", b"b")],
    [("binary", bytes(range(256))), ("unicode-név", "é".encode())],
    [],
]


def produce(bus, topic: str, count: int, transactional_abort: int = 0) -> None:
    """`count` messages on `topic`'s partitions (with every shape of headers), then `transactional_abort` more
    in a transaction that is aborted (a read_committed consumer never sees them)."""
    producer = Producer(producer_config(bus.settings, "native-test"))
    for i in range(count):
        producer.produce(topic, key=None if i % 7 == 0 else f"k{i}".encode(), value=None if i % 11 == 0 else
                         f"value {i}".encode() * (i % 5), partition=i % 3, headers=HEADERS[i % len(HEADERS)] or None)
    producer.flush(30)
    if transactional_abort:
        aborted = Producer(producer_config(bus.settings, "native-test", f"native-test-{uuid.uuid4().hex[:6]}"))
        aborted.init_transactions(30)
        aborted.begin_transaction()
        for i in range(transactional_abort):
            aborted.produce(topic, value=b"aborted", partition=i % 3)
        aborted.flush(30)
        aborted.abort_transaction(30)


def read_all(consumer, topic: str, partitions: int, expected: int) -> list[tuple]:
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    seen: list[tuple] = []

    def more() -> bool:
        for m in consumer.consume(500, 0.5):
            assert m.error() is None, m.error()
            seen.append((m.topic(), m.partition(), m.offset(), m.timestamp(), m.key(), m.value(), m.headers(),
                         len(m)))
        return len(seen) >= expected

    wait_until(more, 60, f"{expected} messages read")
    return sorted(seen, key=lambda s: (s[1], s[2]))


def config(bus, name: str) -> dict:
    return consumer_config(bus.settings, group_id(bus.settings, "scorer"), name)


def test_the_native_consumer_reads_every_field_as_the_client_does(bus):
    topic = bus.catalogue.physical("inference.requests")
    produce(bus, topic, 600, transactional_abort=50)
    client = Consumer(config(bus, "client"))
    compiled = NativeConsumer(config(bus, "compiled"), librdkafka_path())
    try:
        by_client = read_all(client, topic, 3, 600)
        by_compiled = read_all(compiled, topic, 3, 600)
    finally:
        client.close()
        compiled.close()
    assert len(by_compiled) == 600 and by_compiled == by_client
    assert {s[6] and tuple(h[0] for h in s[6]) for s in by_compiled} >= {("empty", "none", "twice", "twice"), None}


def test_its_group_metadata_commits_a_transactions_offsets(bus):
    topic = bus.catalogue.physical("inference.requests")
    produce(bus, topic, 30)
    settings = config(bus, "compiled")
    compiled = NativeConsumer(settings, librdkafka_path())
    producer = Producer(producer_config(bus.settings, "scorer", f"native-test-{uuid.uuid4().hex[:6]}"))
    try:
        producer.init_transactions(30)
        read = read_all(compiled, topic, 3, 30)
        producer.begin_transaction()
        ends = [TopicPartition(topic, p, max(o for _, q, o, *_ in read if q == p) + 1) for p in range(3)]
        producer.send_offsets_to_transaction(ends, compiled.consumer_group_metadata(), 30)
        producer.commit_transaction(30)
        positions = {p.partition: p.offset for p in compiled.position([TopicPartition(topic, p) for p in range(3)])}
        watermarks = {p: compiled.get_watermark_offsets(TopicPartition(topic, p), cached=True)[1] for p in range(3)}
        compiled.seek(TopicPartition(topic, 1, 0))
        again = compiled.consume(500, 5)
    finally:
        compiled.close()
    committed = Consumer(settings)
    try:
        offsets = {p.partition: p.offset for p in committed.committed([TopicPartition(topic, p) for p in range(3)],
                                                                      timeout=30)}
    finally:
        committed.close()
    assert offsets == {p.partition: p.offset for p in ends} == positions == watermarks
    assert again and {m.partition() for m in again} == {1} and min(m.offset() for m in again) == 0


def end_events(consumer, topic: str) -> list[tuple]:
    """The partition-end events a consumer reading `topic`'s 3 partitions gives (enable.partition.eof): error
    events, as the runtime's survey() tells them from messages."""
    consumer.assign([TopicPartition(topic, p, 0) for p in range(3)])
    events: list = []
    wait_until(lambda: events.extend(m for m in consumer.consume(100, 0.3) if m.error()) or len(events) >= 3,
               60, "an end-of-partition event for each partition")
    return sorted((m.topic(), m.partition(), m.offset(), m.error().code(), m.error().fatal()) for m in events)


def test_statistics_reach_the_callback_and_error_events_are_the_clients(bus):
    topic = bus.catalogue.physical("inference.requests")
    produce(bus, topic, 9)
    reports: list[str] = []
    eof = {"enable.partition.eof": True}
    compiled = NativeConsumer({**config(bus, "compiled"), **eof, "statistics.interval.ms": 200,
                               "stats_cb": reports.append}, librdkafka_path())
    client = Consumer({**config(bus, "client"), **eof})
    try:
        by_compiled, by_client = end_events(compiled, topic), end_events(client, topic)
        wait_until(lambda: compiled.consume(10, 0.3) is not None and reports, 30, "a statistics report")
    finally:
        compiled.close()
        client.close()
    assert json.loads(reports[0])["type"] == "consumer"
    assert by_compiled == by_client == [(topic, p, 3, KafkaError._PARTITION_EOF, False) for p in range(3)]


def test_a_refused_setting_is_a_clear_error(bus):
    with pytest.raises(ValueError, match="librdkafka refused no.such.setting"):
        NativeConsumer({**config(bus, "compiled"), "no.such.setting": "1"}, librdkafka_path())
