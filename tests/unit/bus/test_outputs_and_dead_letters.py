"""What a service sends must fit where it goes: an event its topic would refuse is refused before it is sent
(the input is dead-lettered instead), a message too large for a DLQ is stood in for by its size and digest, and
a message whose headers cannot be read is read once."""
import hashlib
from datetime import datetime, timezone

import pytest

from services.bus import Bus, Event
from services.bus.consumed import UNREADABLE_HEADERS, headers_of
from services.bus.dlq import DLQ_BYTES, dead_letter
from services.bus.errors import HandlerFailed
from services.bus.publish import OutputRefused, Publisher
from services.notifier.decide import MAX_GROUP, Outbox, due_groups
from tests.support.traffic import request

BUS = Bus.from_env({"MLBUS_NAMESPACE": "t."})


class FakeProducer:
    def __init__(self):
        self.sent = []

    def produce(self, topic, value=None, key=None, headers=None, timestamp=0, on_delivery=None):
        self.sent.append((topic, key, value, headers))


class Message:
    def __init__(self, key, value, headers, broken=False):
        self._key, self._value, self._headers, self.broken, self.reads = key, value, headers, broken, 0

    def topic(self): return "t.inference.requests"
    def partition(self): return 0
    def offset(self): return 7
    def timestamp(self): return (1, 1_800_000_000_000)
    def key(self): return self._key
    def value(self): return self._value

    def headers(self):
        self.reads += 1
        if self.broken:
            raise SystemError("a header key that is not UTF-8")
        return self._headers


def test_an_event_larger_than_its_topic_takes_is_refused_before_it_is_sent():
    publisher = Publisher(BUS, "test", FakeProducer())
    event = request(1)
    huge = Event(event.record, {**event.value, "features": {f"f{i}": 1.0 for i in range(120_000)}}, event.key,
                 event.id)
    with pytest.raises(OutputRefused, match="more than inference.requests takes"):
        publisher.prepared(huge)
    assert publisher.producer.sent == []
    publisher.publish(event)
    assert [t for t, *_ in publisher.producer.sent][-1] == "t.inference.requests"    # after its schema


def test_an_event_the_codec_refuses_is_an_output_refused():
    publisher = Publisher(BUS, "test", FakeProducer())
    event = request(1)
    with pytest.raises(OutputRefused, match="codec refuses"):
        publisher.prepared(Event(event.record, {**event.value, "features": "not a map"}, event.key, event.id))


def test_a_message_a_dlq_cannot_take_is_stood_in_for_by_its_size_and_digest():
    value = b"a" * DLQ_BYTES
    key, sent, headers = dead_letter(Message(b"k", value, []), "inference.requests", "scorer", "decode",
                                     HandlerFailed("too large"), [])
    found = dict(headers)
    assert key is None and sent is None
    assert found["dlq.original.size"] == str(1 + DLQ_BYTES).encode()
    assert found["dlq.original.sha256"] == hashlib.sha256(b"k" + value).hexdigest().encode()
    assert found["dlq.error.message"] == b"too large"


def test_a_message_a_dlq_takes_keeps_its_bytes_and_headers():
    key, sent, headers = dead_letter(Message(b"k", b"v", [("origin", b"x")]), "inference.requests", "scorer",
                                     "decode", HandlerFailed("no"), [])
    assert (key, sent, headers[0]) == (b"k", b"v", ("origin", b"x"))


def test_headers_that_cannot_be_read_are_read_once():
    message = Message(b"k", b"v", [], broken=True)
    assert headers_of(message) == UNREADABLE_HEADERS
    assert headers_of(message) == UNREADABLE_HEADERS and message.reads == 1


def test_a_notifier_group_is_at_most_max_group_alerts():
    outbox = Outbox(queues={"ops": [{"alert_id": str(i)} for i in range(MAX_GROUP + 5)]})
    [(sink, group)] = due_groups(outbox, datetime.now(timezone.utc))
    assert sink == "ops" and len(group) == MAX_GROUP
