"""Publishing events: encode with the catalogue, route by record type, track delivery."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from confluent_kafka import KafkaError, Message, Producer

from .credentials import ADMIN, secured
from .consumed import wire_size
from .context import Bus
from .envelope import Envelope, Event, envelope_for, to_headers
from .errors import BadInput
from .kafka import producer_config
from .settings import Settings
from .signing import SIGNED_RECORDS

SCHEMA_RECORD = "mlbus.SchemaDefinition"


def wire_form(bus: Bus, event: Event, envelope: Envelope) -> tuple[str, bytes, bytes, list]:
    """(catalogue topic, key, Avro value, CloudEvents headers): the event as it goes on the bus, whichever
    client sends it (the Publisher, or faust in the drift-watcher)."""
    if event.encoded is not None:
        value = event.encoded
    elif bus.signer is not None and event.record in SIGNED_RECORDS and not event.value.get("signature"):
        _, normalized = bus.schemas.decode(bus.schemas.encode(event.record, event.value))   # what readers will see
        value = bus.schemas.encode(event.record, bus.signer(event.record, normalized))
    else:
        value = bus.schemas.encode(event.record, event.value)
    return bus.catalogue.for_schema(event.record).name, event.key.encode(), value, to_headers(envelope)


DEFAULT_MAX_BYTES = 1_048_588        # the broker's own default max.message.bytes


class OutputRefused(BadInput):
    """An event its topic would refuse: the input that made it is dead-lettered instead (runtime._publish)."""

    stage = "handler"


@dataclass(frozen=True)
class Prepared:
    """An event encoded for its topic, measured, ready to send."""

    record: str
    topic: str
    key: bytes
    value: bytes
    headers: list
    envelope: Envelope
    partition: int | None = None


class DeliveryError(RuntimeError):
    """The broker did not acknowledge a message: an infrastructure failure (crash, retry after restart)."""


ABORTED = (KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT)   # what abort_transaction does to queued messages


class Publisher:
    """Wraps one producer. Every writer publishes its schemas to the `schemas` topic before its first event."""

    def __init__(self, bus: Bus, source: str, producer: Producer | None = None):
        self.bus = bus
        self.source = source
        self.producer = producer or Producer(producer_config(bus.settings, client_id=source))
        self.failures: list[KafkaError] = []
        self.delivered = 0
        self._announced: set[str] = set()

    def publish(self, event: Event, cause: Envelope | None = None) -> Envelope:
        prepared = self.prepared(event, cause)
        self.send(prepared)
        return prepared.envelope

    def prepared(self, event: Event, cause: Envelope | None = None) -> "Prepared":
        """The event encoded for its topic; OutputRefused (a BadInput) when its topic would not take it: the codec
        refuses its value, or it holds more bytes than the topic's max.message.bytes (counted before compression,
        which can only make it smaller)."""
        envelope = envelope_for(event, self.source, cause)
        try:
            topic, key, value, headers = wire_form(self.bus, event, envelope)
        except BadInput as refusal:
            raise OutputRefused(f"a {event.record} the codec refuses: {refusal}") from None
        except (TypeError, ValueError, OverflowError, KeyError, AttributeError) as error:
            raise OutputRefused(f"a {event.record} the codec refuses: {type(error).__name__}: {error}") from None
        size = wire_size(key, value, headers)
        limit = int(self.bus.catalogue[topic].config.get("max.message.bytes", DEFAULT_MAX_BYTES))
        if size > limit:
            raise OutputRefused(f"a {event.record} of {size:,} bytes, more than {topic} takes ({limit:,})")
        return Prepared(event.record, topic, key, value, headers, envelope, event.partition)

    def send(self, prepared: "Prepared") -> None:
        self._announce(prepared.record)
        self.produce_physical(self.bus.catalogue.physical(prepared.topic), prepared.key, prepared.value,
                              prepared.headers, partition=prepared.partition)

    def produce(self, topic: str, key: bytes | None, value: bytes | None, headers: list) -> None:
        """Raw produce to a catalogue topic (by its catalogue name); waits for room if the queue is full."""
        self.produce_physical(self.bus.catalogue.physical(topic), key, value, headers)

    def produce_physical(self, physical: str, key: bytes | None, value: bytes | None, headers: list,
                         timestamp_ms: int = 0, partition: int | None = None) -> None:
        while True:
            try:
                if partition is None:
                    self.producer.produce(physical, value=value, key=key, headers=headers, timestamp=timestamp_ms,
                                          on_delivery=self._on_delivery)
                else:
                    self.producer.produce(physical, value=value, key=key, headers=headers, timestamp=timestamp_ms,
                                          on_delivery=self._on_delivery, partition=partition)
                return
            except BufferError:
                self.producer.poll(0.1)

    def flush(self, timeout: float = 30.0) -> None:
        """Wait for every acknowledgement; raise DeliveryError if any message was refused."""
        remaining = self.producer.flush(timeout)
        if remaining:
            raise DeliveryError(f"{remaining} messages not acknowledged within {timeout}s")
        self.raise_failures()

    def raise_failures(self) -> None:
        if self.failures:
            first = self.failures[0]
            self.failures = []
            raise DeliveryError(f"broker refused a message: {first}")

    def forget_aborted(self) -> None:
        """After abort_transaction: the aborted messages' failures are no longer this batch's (it is handled
        again, or the service restarts), and schemas announced inside the transaction were never committed:
        they are announced again with the next event of each type."""
        self.failures = []
        self._announced.clear()

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is not None and error.code() in ABORTED:
            return                      # purged by abort_transaction: not lost, the batch is handled again
        if error is not None:
            self.failures.append(error)
        else:
            self.delivered += 1

    def announce(self, records: tuple[str, ...], flush: bool = True) -> None:
        """Publish these records' schemas now (a writer that sends through another client, e.g. faust, or one
        whose first write of a type may come late: flush=False inside a transaction)."""
        for record in records:
            self._announce(record)
        if flush:
            self.flush()

    def _announce(self, record: str) -> None:
        if record in self._announced or not may_announce(self.bus.settings):
            return
        self._announced.add(record)
        schema = self.bus.schemas.schema(record)
        for announced in {schema.name: schema, SCHEMA_RECORD: self.bus.schemas.schema(SCHEMA_RECORD)}.values():
            value = {"fingerprint": announced.fingerprint_hex, "name": announced.name,
                     "schema_json": announced.canonical, "registered_by": self.source,
                     "registered_at": datetime.now(timezone.utc)}
            self.produce(self.bus.catalogue.for_schema(SCHEMA_RECORD).name, announced.fingerprint_hex.encode(),
                         self.bus.schemas.encode(SCHEMA_RECORD, value), [])


def announce_all(bus: Bus) -> None:
    """Announce the schema of every record the catalogue's topics carry (the admin's: `mlbus acl apply`,
    `mlbus up`), so that a reader of another version resolves them from the `schemas` topic."""
    Publisher(bus, "mlbus-admin").announce(tuple(sorted({t.schema for t in bus.catalogue if t.schema})))


def may_announce(settings: Settings) -> bool:
    """Whether this process writes the `schemas` topic: only the admin may on a secured broker (a principal
    that could write it could flood it, or name a fingerprint with a schema of its own choosing); `mlbus acl
    apply` announces every schema in schemas/. On an unsecured broker, every writer announces its own."""
    return not secured(settings) or settings.connection.client_principal == ADMIN
