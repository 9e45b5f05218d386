"""The export bridge's loop (adapter): a transactional consume-transform-produce over the chosen topics.

Each batch: begin a transaction, produce each record's copy (same partition, key, headers and time; value in
Confluent's framing with the same Avro body) or its dead letter, send the consumer's next offsets into the
transaction, commit. A copy and the source offset it answers commit together or not at all; a restarted bridge
(same topics: same transactional id) fences its predecessor and aborts whatever it left open, then reads on from
the committed offsets: nothing lost, nothing twice (read_committed readers of the copies)."""
from __future__ import annotations

import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from services.bus.codec import CONFLUENT_HEADER_LEN, WriterSchema, registry_form
from services.bus.consumed import position
from services.bus.context import Bus
from services.bus.dlq import dead_letter, dlq_topic
from services.bus.errors import BadInput, InfrastructureError
from services.bus.kafka import admin_config, consumer_config, group_id, producer_config
from services.bus.received import decode_message
from services.bus.transactions import AbortRun, commit_transactional
from services.bus.schema_registry import RegistryRefused, SchemaRegistry, quote, subject_for
from services.bus.settings import ConfigError
from services.bus.topics import retry_while_retriable

from .decide import (Key, Tally, bridge_name, caught_up, copied_value, copy_config, first_offsets, foreign_copies,
                     next_offsets)

SERVICE = "exporter"
SCHEMA_REFUSALS = (409, 422)        # an incompatible or invalid schema: the record's, dead-lettered
BATCH = 500
KAFKA_TIMEOUT_S = 30


class SchemaRefused(BadInput):
    """The registry refused the record's writer schema under the copy's subject (incompatible, invalid)."""


@dataclass
class ExportBridge:
    bus: Bus
    topics: list[str]                       # catalogue names of the exported topics
    target: str = "confluent"
    report: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)
    tallies: dict[str, Tally] = field(default_factory=dict)
    _stopping: bool = False
    _aborts: AbortRun = field(default_factory=AbortRun)     # aborted since the last commit: bounded as the runtime's

    def __post_init__(self) -> None:
        catalogue = self.bus.catalogue
        self.copies = {catalogue.physical(t): catalogue.copy_of(t) for t in self.topics}   # refuses the unexportable
        self.logical = {catalogue.physical(t): t for t in self.topics}
        if self.bus.schemas.registry is None:
            raise ConfigError("no schema registry configured: set MLBUS_REGISTRY_URL and MLBUS_REGISTRY_CONFIG "
                              "(scripts/registry start prints both); copies are framed with its ids")
        if not isinstance(self.bus.schemas.registry, SchemaRegistry):
            raise ConfigError("the export bridge registers its copies' schemas itself: it needs the bus's own "
                              "schema registry client (services/bus/schema_registry.py)")
        self.registry = self.bus.schemas.registry
        self.tallies = {t: Tally() for t in self.topics}
        self._ids: dict[tuple[str, bytes], int] = {}         # (copy subject, fingerprint) → registry id
        self._refused: dict[tuple[str, bytes], SchemaRefused] = {}      # … → why the registry refused it
        name = bridge_name(self.topics, self.target)
        settings = self.bus.settings
        self.consumer = Consumer({**consumer_config(settings, group_id(settings, name), SERVICE),
                                  "enable.partition.eof": True})
        self.producer = Producer(producer_config(settings, SERVICE, group_id(settings, name)))

    def stop(self, *_: object) -> None:
        self._stopping = True

    def run(self, until_caught_up: bool = False, progress_s: float = 5.0) -> bool:
        """Copy until stopped (SIGINT, SIGTERM: the batch in hand commits first) or, with until_caught_up, until
        every partition reached the end it had at start; True when caught up."""
        signal.signal(signal.SIGINT, self.stop)
        signal.signal(signal.SIGTERM, self.stop)
        self.prepare_copies()
        self.producer.init_transactions(KAFKA_TIMEOUT_S)       # fences a predecessor, aborts what it left open
        targets = self.assign()
        ends: dict[Key, int] = {}
        reported = time.monotonic()
        try:
            while not self._stopping:
                batch = self.consumer.consume(BATCH, 0.5)
                records = []
                for message in batch:
                    if (error := message.error()) is None:
                        records.append(message)
                    elif error.code() == KafkaError._PARTITION_EOF:
                        topic, partition, offset = position(message)
                        ends[(topic, partition)] = offset
                    else:
                        self._consumer_error(error)
                if records and not self.transact(records):
                    for topic, partition, _ in map(position, records):
                        ends.pop((topic, partition), None)       # read again: not at its end any more
                if until_caught_up and caught_up(ends, targets):
                    self.report(self.progress(targets))
                    return True
                if time.monotonic() - reported >= progress_s:
                    self.report(self.progress(targets))
                    reported = time.monotonic()
            self.report(self.progress(targets))
            return caught_up(ends, targets)
        finally:
            self.consumer.close()

    def prepare_copies(self) -> None:
        """Create each missing copy topic with its source's partitions and settings; refuse a copy that differs."""
        admin = AdminClient(admin_config(self.bus.settings))
        metadata = admin.list_topics(timeout=KAFKA_TIMEOUT_S).topics
        wanted = []
        for source, copy in self.copies.items():
            if source not in metadata or metadata[source].error is not None:
                raise ConfigError(f"topic {source} is missing on the broker (or the exporter may not read it): run "
                                  "`mlbus topics apply` and `mlbus acl apply`")
            partitions = len(metadata[source].partitions)
            if copy in metadata and metadata[copy].error is None:
                if len(metadata[copy].partitions) != partitions:
                    raise ConfigError(f"copy {copy} has {len(metadata[copy].partitions)} partitions, its source "
                                      f"{partitions}: a record's copy must land in its source's partition")
                continue
            topic = self.bus.catalogue[self.logical[source]]
            wanted.append(NewTopic(copy, partitions, topic.replication, config=copy_config(topic.config)))
        for copy, future in (admin.create_topics(wanted, request_timeout=KAFKA_TIMEOUT_S).items() if wanted else []):
            try:
                future.result()
                self.report(f"created {copy}")
            except KafkaException as failure:
                code = failure.args[0].code()
                if code == KafkaError.TOPIC_AUTHORIZATION_FAILED:
                    raise ConfigError(f"the exporter may not create {copy}: run `mlbus acl apply` (topics.yaml "
                                      "`export:` grants it), or have an admin create it") from None
                if code != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise

    def assign(self) -> dict[Key, int]:
        """Take every partition of the topics from the committed offsets (one bridge per set of topics: its
        transactional id fences any other); the end of each partition now, the target of --until-caught-up."""
        partitions = [TopicPartition(source, p) for source in self.copies
                      for p in self.consumer.list_topics(source, timeout=KAFKA_TIMEOUT_S).topics[source].partitions]
        committed = self.consumer.committed(partitions, timeout=KAFKA_TIMEOUT_S)
        copy_ends = {(tp.topic, tp.partition): self._high(self.copies[tp.topic], tp.partition) for tp in committed
                     if tp.offset < 0}
        foreign = self._holding_records(foreign_copies({(tp.topic, tp.partition): tp.offset for tp in committed},
                                                       copy_ends))
        if foreign:
            places = ", ".join(f"{self.copies[t]}[{p}]" for t, p in foreign)
            raise ConfigError(f"{places} already hold records that another export wrote (another set of topics is "
                              "another bridge): export these topics as they were exported before, or delete the "
                              "copies to start them again")
        self.consumer.assign([TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else -2)
                              for tp in committed])
        return {(tp.topic, tp.partition): self._high(tp.topic, tp.partition) for tp in committed}

    def _holding_records(self, candidates: list[Key]) -> list[Key]:
        """Of these source partitions, those whose copy holds a committed record (what an aborted transaction
        left, a predecessor's killed mid-way, takes offsets but holds none): read from the start, read_committed."""
        if not candidates:
            return []
        settings = self.bus.settings
        probe = Consumer({**consumer_config(settings, group_id(settings, "export.probe"), SERVICE),
                          "enable.partition.eof": True})
        probe.assign([TopicPartition(self.copies[t], p, -2) for t, p in candidates])
        source_of = {(self.copies[t], p): (t, p) for t, p in candidates}
        holding: set[Key] = set()
        undecided = set(source_of)
        deadline = time.monotonic() + KAFKA_TIMEOUT_S
        try:
            while undecided and time.monotonic() < deadline:
                for message in probe.consume(100, 0.5):
                    topic, partition, _ = position(message)
                    if message.error() is None:
                        holding.add(source_of[(topic, partition)])
                    undecided.discard((topic, partition))
        finally:
            probe.close()
        if undecided:
            raise InfrastructureError(f"could not read {len(undecided)} copy partitions to their end in "
                                      f"{KAFKA_TIMEOUT_S}s to see whether another export wrote them")
        return sorted(holding)

    def transact(self, records: list[Message]) -> bool:
        """One transaction: the batch's copies and dead letters, and its offsets; False when it was aborted and
        the batch is to be read again."""
        places = [position(m) for m in records]
        self.producer.begin_transaction()
        try:
            copied = [self.copy(message) for message in records]
            offsets = [TopicPartition(t, p, o) for (t, p), o in next_offsets(places).items()]
            commit_transactional(self.producer, offsets, self.consumer.consumer_group_metadata())
        except KafkaException as failure:
            error = failure.args[0]
            action = self._aborts.judge(error, rewindable=True)
            if action == "crash":
                raise           # fenced by a newer bridge, or worse: stop; the restart resumes from what committed
            self.producer.abort_transaction(KAFKA_TIMEOUT_S)
            self._aborts.aborted(error)
            if action == "abort-and-crash":     # aborted again and again: no rebalance, a loud restart
                raise InfrastructureError(f"transaction aborted {self._aborts.count} times in a row ({error}); "
                                          "stopping: the restart resumes from what committed") from failure
            self.report(f"transaction aborted ({error}); reading the batch again")
            for (topic, partition), offset in first_offsets(places).items():
                self.consumer.seek(TopicPartition(topic, partition, offset))
            return False
        self._aborts.committed()
        for (source, _, _), was_copied in zip(places, copied):
            logical = self.logical[source]
            self.tallies[logical] = self.tallies[logical].plus(int(was_copied), int(not was_copied))
        return True

    def copy(self, message: Message) -> bool:
        """Produce the record's copy (True), or its dead letter when it is not a record of its topic's type that the
        edge takes, or the registry refuses its schema (False: bytes kept, the reason in headers)."""
        source, partition, _ = position(message)
        value = message.value() or b""
        try:
            writer, header_len = self.bus.schemas.located(value)
            # The one edge every consumer passes: a whole body of the topic's own record type, every field within
            # the edge's rules — a sink downstream must not choke on it, and a record of another type must not
            # make the copy subject's first schema (which would refuse every honest record after it)
            decode_message(self.bus, message)
            registry_id = self.copy_id(self.copies[source], writer)
            framed = copied_value(value, header_len, None if header_len == CONFLUENT_HEADER_LEN else registry_id)
        except BadInput as error:              # a DecodeError, or a schema the registry refuses
            logical = self.logical[source]
            key, dead, headers = dead_letter(message, logical, SERVICE, "export", error,
                                             self.bus.settings.connection.secret_values())
            self._produce(self.bus.catalogue.physical(dlq_topic(logical)), key, dead, headers, None, None)
            return False
        self._produce(self.copies[source], message.key(), framed, message.headers(), partition,
                      message.timestamp()[1])
        return True

    def copy_id(self, copy: str, writer: WriterSchema) -> int:
        """The id of the writer schema under the copy's subject (TopicNameStrategy), registered there with
        BACKWARD compatibility where it is new; asked once per schema."""
        subject = subject_for(copy)
        known = (subject, writer.fingerprint)
        if known in self._refused:
            raise self._refused[known]
        if known not in self._ids:
            self.registry.call("PUT", f"/config/{quote(subject)}", {"compatibility": "BACKWARD"})
            try:
                self._ids[known] = self.registry.register(subject, registry_form(writer.parsed))
            except RegistryRefused as refused:
                if refused.status not in SCHEMA_REFUSALS:
                    raise           # credentials, rights: not the record's fault, stop (exit 1)
                self._refused[known] = SchemaRefused(f"{subject} refuses {writer.name} {writer.fingerprint_hex}: "
                                                     f"{refused}")
                raise self._refused[known] from None
        return self._ids[known]

    def progress(self, partitions: Iterable[Key]) -> str:
        """One line: per topic, records copied and dead-lettered by this run, and how far it is behind."""
        behind = {t: 0 for t in self.topics}
        for source, partition in partitions:
            behind[self.logical[source]] += max(0, self._high(source, partition) - self._position(source, partition))
        return "; ".join(f"{t}: {self.tallies[t].copied} copied, {self.tallies[t].dead_lettered} dead-lettered, "
                         f"lag {behind[t]}" for t in self.topics)

    def _produce(self, topic: str, key, value, headers, partition: int | None, timestamp_ms: int | None) -> None:
        while True:
            try:
                # partition -1: the partitioner's choice (a dead letter); a copy goes where its source was
                self.producer.produce(topic, value=value, key=key, headers=headers, timestamp=timestamp_ms or 0,
                                      partition=-1 if partition is None else partition)
                return
            except BufferError:
                self.producer.poll(0.1)

    def _high(self, topic: str, partition: int) -> int:
        # a copy just created has no leader for a moment: NOT_LEADER_FOR_PARTITION is asked again
        return retry_while_retriable(lambda: self.consumer.get_watermark_offsets(
            TopicPartition(topic, partition), timeout=KAFKA_TIMEOUT_S))[1]

    def _position(self, topic: str, partition: int) -> int:
        found = self.consumer.position([TopicPartition(topic, partition)])[0].offset
        return found if found >= 0 else 0

    def _consumer_error(self, error: KafkaError) -> None:
        if error.fatal() or error.code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.TOPIC_AUTHORIZATION_FAILED):
            raise KafkaException(error)
        self.report(f"consumer error, librdkafka retries: {error}")
