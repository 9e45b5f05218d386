"""The compiled consumer's messages (services/native/src/consumer.rs: ConsumedMessage) read as the client's do, and
the auditor's pager seals them into the very pages it writes from the client's Messages. The consumer itself on a
real broker: tests/integration/test_native_consumer.py."""
import pytest

from services.bus.consumed import UNREADABLE_HEADERS, headers_of, survey
from services.bus.native_consumer import librdkafka_path, native_consumer
from services.domain.compiled import native
from tests.support.handlers import FakeMessage, audited
from tests.unit.auditor.test_pages import BUS, auditor, messages, opened

compiled = pytest.mark.skipif(native is None, reason="services/native is not built here")


def as_native(message: FakeMessage):
    """The same message as the compiled consumer would give it; the client's where its headers are no
    (text, bytes) pairs (a hostile message built by hand: the client would not give those either)."""
    try:
        return native.ConsumedMessage(message.topic(), message.partition(), message.offset(), message.timestamp(),
                                      message.key(), message.value(), message.headers())
    except TypeError:
        return message


@compiled
def test_a_native_message_answers_every_accessor_as_the_clients():
    for message in messages():
        made = as_native(message)
        for accessor in ("topic", "partition", "offset", "timestamp", "key", "value", "error"):
            assert getattr(made, accessor)() == getattr(message, accessor)()
        assert made.headers() == (message.headers() or None)
        assert len(made) == len(message.value() or b"")
    assert headers_of(native.ConsumedMessage("t", 0, 1, (1, 5), None, None, None)) == []


@compiled
def test_the_pager_writes_the_same_pages_from_native_messages(tmp_path):
    personal = {BUS.catalogue.physical(t.name) for t in BUS.catalogue if t.personal}
    plain = [m for m in messages() if m.topic() not in personal]
    natives = [as_native(m) for m in plain]
    assert sum(m is not p for m, p in zip(natives, plain)) > len(plain) // 2        # most of them are compiled
    from_client = auditor(tmp_path / "a", pager=True, page_records=7, every=10)(plain)
    from_native = auditor(tmp_path / "b", pager=True, page_records=7, every=10)(natives)
    pages = [e.encoded for e in from_native if e.record == "mlbus.AuditPage"]
    assert pages == [e.encoded for e in from_client if e.record == "mlbus.AuditPage"]


@compiled
def test_personal_data_from_native_messages_is_sealed_as_from_the_clients(tmp_path):
    batch = messages()
    from_client = auditor(tmp_path / "a", pager=True, page_records=50, every=64)(batch)
    from_native = auditor(tmp_path / "b", pager=True, page_records=50, every=64)([as_native(m) for m in messages()])
    client, compiled_ = audited(BUS.schemas, from_client), audited(BUS.schemas, from_native)
    assert any(r["sealed"] for r in compiled_)
    assert opened(compiled_, from_native) == opened(client, from_client)


class UnreadableHeaders(FakeMessage):
    def headers(self):
        raise SystemError("a header key is not UTF-8")          # what the client does


@compiled
def test_a_native_message_whose_header_name_is_not_utf8_is_audited_as_the_clients_is(tmp_path):
    """The client raises on such a name (consumed.headers_of remembers the message and stands UNREADABLE_HEADERS
    for its headers); the compiled consumer's message raises too, and the pager leaves it to Python."""
    topic = BUS.catalogue.physical("data.batches")
    broken = native.ConsumedMessage(topic, 0, 3, (1, 9), b"k", b"v", [("ce_source", b"shop"), (b"\xff", b"x")])
    assert headers_of(broken) == UNREADABLE_HEADERS
    [from_native] = audited(BUS.schemas, auditor(tmp_path / "a", pager=True)([broken]))
    [from_client] = audited(BUS.schemas, auditor(tmp_path / "b", pager=True)([UnreadableHeaders(topic, b"k", b"v", 3)]))
    assert from_native["headers"] == from_client["headers"] and from_native["source_offset"] == 3


@compiled
def test_survey_reads_native_messages_positions():
    batch = [native.ConsumedMessage("t", p, o, (1, o), None, b"v", None) for p, o in ((0, 4), (1, 9), (0, 5))]
    surveyed = survey(batch)
    assert surveyed.good == batch and surveyed.errors == []
    assert surveyed.next_offsets() == {("t", 0): 6, ("t", 1): 10}


MAPS = """7f00-7f01 r--p 00000000 08:01 123 /venv/lib/python3.11/site-packages/confluent_kafka/cimpl.so
7f02-7f03 r-xp 00001000 08:01 456 /venv/lib/python3.11/site-packages/confluent_kafka.libs/librdkafka-0cb94173.so.1
7f04-7f05 rw-p 00000000 00:00 0
7f06-7f07 r--p 00000000 08:01 789 /usr/lib/x86_64-linux-gnu/libc.so.6"""


def test_the_library_confluent_kafka_loaded_is_found_in_the_memory_map():
    assert librdkafka_path(MAPS) == "/venv/lib/python3.11/site-packages/confluent_kafka.libs/librdkafka-0cb94173.so.1"
    assert librdkafka_path("7f04-7f05 rw-p 00000000 00:00 0\n") is None
    assert librdkafka_path() is not None            # this process imported confluent-kafka


def test_the_clients_consumer_when_the_compiled_one_is_switched_off(monkeypatch):
    from confluent_kafka import Consumer
    monkeypatch.setenv("MLBUS_NATIVE_CONSUMER", "off")
    consumer = native_consumer({"bootstrap.servers": "127.0.0.1:9", "group.id": "g"})
    try:
        assert isinstance(consumer, Consumer)
    finally:
        consumer.close()
