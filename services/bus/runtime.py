"""The service loop: consume → decode → handle → produce → commit, with DLQ and graceful stop.

Outputs are delivered before the input's offset is committed (at-least-once), or — in transactional
mode — outputs and offsets commit atomically in one Kafka transaction (exactly-once within Kafka).
A BadInput goes to `<topic>.dlq` and the loop goes on; any other exception crashes the process.
"""
from __future__ import annotations

import signal
import time
from dataclasses import dataclass
from typing import Callable, Iterable

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from .context import Bus
from .dlq import dead_letter_headers, dlq_topic
from .envelope import Envelope, Event, derive_id, from_headers
from .errors import BadInput
from .kafka import consumer_config, producer_config
from .logs import get_logger
from .publish import Publisher
from .schema_topic import SchemasTopicResolver
from .settings import ConfigError


@dataclass(frozen=True)
class Received:
    """A decoded input message, as a handler sees it."""

    topic: str                   # catalogue name (without namespace)
    partition: int
    offset: int
    timestamp_ms: int
    key: str | None
    record: str                  # Avro full name
    value: dict
    envelope: Envelope


Handler = Callable[[Received], Iterable[Event]]


class ServiceRuntime:
    def __init__(self, bus: Bus, service: str, handler: Handler, *, topics: list[str] | None = None,
                 transactional: bool = False, batch_size: int = 500,
                 poll_timeout_s: float = 0.5):
        self.bus = bus
        self.service = service
        self.handler = handler
        self.topics = topics if topics is not None else [t.name for t in bus.catalogue.consumed_by(service)]
        self.transactional = transactional
        self.batch_size = batch_size
        self.poll_timeout_s = poll_timeout_s
        self.group = f"{bus.settings.namespace}mlbus.{service}"
        self.log = get_logger(group=self.group)
        self._stopping = False
        instance = bus.settings.instance        # MLBUS_INSTANCE: one per copy when scaled out
        transactional_id = f"{self.group}.{instance}" if transactional else None
        self.consumer = Consumer(consumer_config(bus.settings, self.group, f"{service}-{instance}"))
        self.publisher = Publisher(bus, service, Producer(producer_config(bus.settings, service, transactional_id)))
        bus.schemas.resolver = SchemasTopicResolver(bus)

    def stop(self, *_: object) -> None:
        """Finish the current batch, commit, close (SIGTERM / SIGINT)."""
        self._stopping = True

    def run(self, handle_signals: bool = True) -> None:
        """Loop until stop(); handle_signals=False when run in a thread (signals belong to the main one)."""
        self._check_topics_exist()
        if handle_signals:
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
        if self.transactional:
            self.publisher.producer.init_transactions(30)
        self.consumer.subscribe([self.bus.catalogue.physical(t) for t in self.topics])
        self.log.info("service started", topics=self.topics, transactional=self.transactional)
        try:
            while not self._stopping:
                messages = self.consumer.consume(self.batch_size, self.poll_timeout_s)
                if messages:
                    self.handle_batch(messages)
        finally:
            self.consumer.close()
            self.publisher.producer.flush(10)
            self.log.info("service stopped")

    def handle_batch(self, messages: list[Message]) -> None:
        if self.transactional:
            self.publisher.producer.begin_transaction()
        next_offsets: dict[tuple[str, int], int] = {}
        for message in messages:
            if message.error():
                self._on_consumer_error(message.error())
                continue
            self._handle_one(message)
            next_offsets[(message.topic(), message.partition())] = message.offset() + 1
        self._commit([TopicPartition(t, p, o) for (t, p), o in next_offsets.items()])

    def _handle_one(self, message: Message) -> None:
        started = time.perf_counter()
        topic = self.bus.catalogue.logical(message.topic())
        context = {"topic": topic, "partition": message.partition(), "offset": message.offset()}
        try:
            received = self.decode(message, topic)
            context.update(event_id=received.envelope.id, record=received.record)
            events = list(self.handler(received))
        except BadInput as error:
            self._dead_letter(message, topic, error)
            self.log.warning("message dead-lettered", **context, outcome="dead-lettered", stage=error.stage,
                             error_class=type(error).__name__, error=str(error)[:500],
                             duration_ms=round((time.perf_counter() - started) * 1000, 3))
            return
        for event in events:
            self.publisher.publish(event, cause=received.envelope)
        self.log.info("message handled", **context, outcome="handled", emitted=len(events),
                      duration_ms=round((time.perf_counter() - started) * 1000, 3))

    def decode(self, message: Message, topic: str) -> Received:
        record, value = self.bus.schemas.decode(message.value())
        key = message.key()
        fallback_id = derive_id(topic, message.partition(), message.offset())
        return Received(topic=topic, partition=message.partition(), offset=message.offset(),
                        timestamp_ms=message.timestamp()[1], key=key.decode("utf-8", "replace") if key else None,
                        record=record, value=value, envelope=from_headers(message.headers(), fallback_id, record))

    def _dead_letter(self, message: Message, topic: str, error: BadInput) -> None:
        headers = dead_letter_headers(message, topic, self.service, error.stage, error,
                                      self.bus.settings.secret_values())
        self.publisher.produce(dlq_topic(topic), message.key(), message.value(), headers)

    def _commit(self, offsets: list[TopicPartition]) -> None:
        producer = self.publisher.producer
        if self.transactional:
            producer.send_offsets_to_transaction(offsets, self.consumer.consumer_group_metadata(), 30)
            producer.commit_transaction(30)
            self.publisher.raise_failures()
        else:
            self.publisher.flush()
            if offsets:
                self.consumer.commit(offsets=offsets, asynchronous=False)

    def _on_consumer_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._PARTITION_EOF:
            return
        if error.fatal() or error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            raise KafkaException(error)
        # Transport errors (a broker restarting) are retried by librdkafka itself.
        self.log.warning("consumer error, librdkafka retries", error=str(error))

    def _check_topics_exist(self) -> None:
        physical = {self.bus.catalogue.physical(t) for t in self.topics} | {
            self.bus.catalogue.physical(dlq_topic(t)) for t in self.topics}
        existing = set(self.consumer.list_topics(timeout=30).topics)
        missing = sorted(physical - existing)
        if missing:
            raise ConfigError(f"topics missing on the broker: {', '.join(missing)}; run `mlbus topics apply`")
