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


def test_a_tick_that_raises_on_what_it_holds_makes_no_events_and_the_service_goes_on():
    from types import SimpleNamespace

    from confluent_kafka import KafkaError, KafkaException

    from services.bus.runtime import ServiceRuntime
    runtime = SimpleNamespace(service="test-ticks")
    assert ServiceRuntime._ticked(runtime, lambda: {}["canary"]) == []           # a KeyError: said, counted
    def broker_away():
        raise KafkaException(KafkaError(KafkaError._TRANSPORT))
    with pytest.raises(KafkaException):                                            # the broker's: a crash
        ServiceRuntime._ticked(runtime, broker_away)


def test_report_labels_are_bounded_whatever_values_a_sender_chooses():
    from services.drift_watcher.stats import MAX_LABEL_CHARS, MAX_LABELS, OTHER, bounded_labels
    values = [f"v{i}" * 1000 for i in range(500)] + ["known"] * 3
    labels = bounded_labels(values, keep={"known"})
    assert len(set(labels)) <= MAX_LABELS + 2 and OTHER in labels and labels[-1] == "known"
    assert max(map(len, labels)) <= MAX_LABEL_CHARS


def test_an_alert_with_a_line_break_still_makes_a_one_line_subject():
    from services.notifier.sinks import email_message
    alert = {"alert_id": "a", "kind": "drift", "severity": "critical", "model": "m", "version": 1,
             "message": "line one\r\nBcc: victim@example.com", "raised_at": datetime.now(timezone.utc),
             "cause_id": "", "evidence_json": "{}"}
    message = email_message({"type": "email", "from": "mlbus@example.com", "to": ["ops@example.com"],
                             "format": "text"}, [alert])
    assert "\n" not in message["Subject"] and message["Bcc"] is None
