"""The service loop: consume → decode → handle → produce → commit, with DLQ and graceful stop.

Outputs are delivered before the input's offset is committed (at-least-once), or — in transactional
mode — outputs and offsets commit atomically in one Kafka transaction (exactly-once within Kafka).
A BadInput goes to `<topic>.dlq` and the loop goes on; so does a record its handler raised on
(HandlerFailed: no record can stop a service). A failure of the infrastructure (errors.is_infrastructure:
the broker, the disk, the database) crashes the process so it is restarted; a message in flight when the
process died outright (a signal, memory, a native fault) is dead-lettered after MLBUS_POISON_BUDGET such
deaths (poison.py).
Handlers run first for the whole batch; the transaction opens only once their outputs are ready, so
a slow handler (offload=True: run in a thread while the consumer keeps polling, paused) never holds
a transaction open or overruns max.poll.interval.ms.
"""
from __future__ import annotations

import gc
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Callable, Sequence

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from .consumed import position, survey
from .committer import Committer
from .context import Bus
from .dlq import dead_letter, dlq_topic
from .envelope import Envelope, Event
from .errors import BadInput, HandlerFailed, InfrastructureError, is_infrastructure
from .kafka import consumer_config, group_id, producer_config
from .logs import get_logger
from .metrics import ServiceMetrics
from .native_consumer import native_consumer
from .modes import Batched, BatchHandler, Forward, Handler, HandlerMode, PerRecord, RawBatch, RuntimeConfig, Tick
from .poison import PoisonFile, Span, poison_record, spans
from .positions import Consumed, start_offsets
from .publish import Publisher
from .received import Received, decode_message
from .schema_topic import SchemasTopicResolver
from .settings import ConfigError
from .transactions import TRANSACTION_DEADLINE_S, commit_transactional
from .watchdog import Watchdog, exit_stuck

# How often every input partition's position is measured besides after each batch (positions.py): it costs no
# request (the consumer's own position and cached watermarks), and catches what moves without a batch — a
# transaction's commit marker read past, a partition newly assigned, the start offsets once statistics tell them.
# Measured with the auditor's 77 input partitions: 0.21 ms for all of them; after a batch, 4.7 µs for 3.
LAG_EVERY_S = 1.0
# librdkafka's statistics, for where each partition started (positions.start_offsets): for those 77 partitions
# 112 KB of JSON, parsed in 1.1 ms, once a second.
STATISTICS_EVERY_MS = 1_000
__all__ = ["BatchHandler", "Batched", "Forward", "Handler", "PerRecord", "RawBatch", "Received", "RuntimeConfig",
           "ServiceRuntime", "Tick", "settle_heap"]


@dataclass(frozen=True)
class Outcome:
    """What handling one message produced: events to publish, or the message itself to dead-letter."""

    message: Message
    events: Sequence[Event | Forward]      # Forwards from a raw batch handler only
    cause: Envelope | None = None
    error: BadInput | None = None


def handler_failed(error: Exception) -> HandlerFailed:
    """The refusal of a record its handler raised on: the exception's class and words."""
    return HandlerFailed(f"the handler raised {type(error).__name__}: {str(error)[:500]}")


class ServiceRuntime:
    committer: Committer            # how each batch's offsets are committed (made once the clients are)

    def __init__(self, bus: Bus, service: str, mode: HandlerMode, config: RuntimeConfig | None = None):
        """A service's loop: its handler in one of three modes (modes.py), run as config says (None: defaults)."""
        if not isinstance(mode, PerRecord | Batched | RawBatch):
            raise TypeError(f"a handler is passed in its mode: PerRecord(handler), Batched(...) or RawBatch(...), "
                            f"not {type(mode).__name__}")
        self.bus = bus
        self.service = service
        self.mode = mode
        self.config = config = config or RuntimeConfig()
        self.topics = list(config.topics if config.topics is not None
                           else [t.name for t in bus.catalogue.consumed_by(service)])
        offload = isinstance(mode, PerRecord) and mode.offload
        self.offload = ThreadPoolExecutor(1, thread_name_prefix=service) if offload else None
        self._last_tick = time.monotonic()
        self.metrics = config.metrics or ServiceMetrics(service)
        self.metrics.restarts.labels(service).set(bus.settings.runtime.restarts)
        self._lag_at = 0.0
        self._started: dict[tuple[str, int], int] = {}      # (physical topic, partition) → offset it started at
        # A service's group is mlbus.<service> when it runs as its own principal, else under that principal's.
        self.group = group_id(bus.settings, "" if service == bus.settings.connection.client_principal else service)
        task = config.task
        if task is not None:
            self.group = task.group
        self.log = get_logger(group=self.group, **({"task": task.name} if task else {}))
        self.watchdog = Watchdog(exit_stuck(self.log))
        runtime = bus.settings.runtime
        runner = task.transactional_id if task else f"{self.group}.{runtime.instance}"
        poison_file = bus.settings.storage.var_dir / "state" / f"{runner}.poison.json"
        self.poison = PoisonFile(poison_file, runtime.poison_budget)
        self._stopping = False
        instance = bus.settings.runtime.instance        # MLBUS_INSTANCE: one per copy when scaled out
        transactional_id = runner if config.transactional else None
        # A transactional task's partitions are assigned and its offsets go with its transactions: the compiled
        # consumer serves it where it can be had (native_consumer.py), the client's otherwise and everywhere else.
        make_consumer = native_consumer if task is not None and config.transactional else Consumer
        self.consumer = make_consumer({**consumer_config(bus.settings, self.group, f"{service}-{instance}"),
                                  "on_commit": lambda error, partitions: self.committer.on_async_commit(
                                      error, partitions),
                                  "statistics.interval.ms": STATISTICS_EVERY_MS, "stats_cb": self._on_statistics})
        self.publisher = Publisher(bus, service, Producer(producer_config(bus.settings, service, transactional_id)))
        self.committer = Committer(service, config, self.consumer, self.publisher, self.watchdog, self.log,
                                   self.metrics)
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
        if self.config.transactional:
            self.publisher.producer.init_transactions(30)
        self._announce_outputs()
        observability = self.bus.settings.observability
        if self.config.metrics is None:         # else the process serves the registry its tasks share
            if unserved := self.metrics.serve(observability.metrics_port, observability.metrics_host):
                self.log.warning(unserved)
        if self.config.task is not None:        # its partitions from their committed offsets (else the start)
            self.consumer.assign([TopicPartition(self.bus.catalogue.physical(topic), partition)
                                  for topic, partition in self.config.task.partitions])
        else:
            self.consumer.subscribe([self.bus.catalogue.physical(t) for t in self.topics],
                                    on_assign=self._on_rebalance("assigned"),
                                    on_revoke=self._on_rebalance("revoked"))
        self.log.info("service started", topics=self.topics, transactional=self.config.transactional,
                      consumer=type(self.consumer).__name__)
        settle_heap()
        try:
            while not self._stopping:
                messages = self._next_batch()
                self.committer.send_async()     # at-least-once: what a rebalance or a refusal left to send
                if messages:
                    self.handle_batch(messages)
                ticker = self.config.ticker
                if ticker and time.monotonic() - self._last_tick >= ticker.every_s:
                    self._run_tick(ticker.tick)
                if time.monotonic() - self._lag_at >= LAG_EVERY_S:
                    self._measure_lag()
            if self.config.on_stop:
                self._publish_alone(self._ticked(self.config.on_stop))
            self.committer.commit_owed()
        finally:
            self.consumer.close()
            self.publisher.producer.flush(10)
            if self.offload:
                self.offload.shutdown()
            if self.config.task is not None:    # its partitions go with the task: the process reports them no more
                self.metrics.consumed.forget(set(self.config.task.partitions))
            self.log.info("service stopped")

    def _announce_outputs(self) -> None:
        if not self.config.outputs:
            return
        if not self.config.transactional:
            self.publisher.announce(self.config.outputs)
            return
        self.publisher.producer.begin_transaction()
        self.publisher.announce(self.config.outputs, flush=False)
        with self.watchdog.deadline("commit_transaction", TRANSACTION_DEADLINE_S):
            commit_transactional(self.publisher.producer)
        self.publisher.raise_failures()

    def _next_batch(self) -> list[Message]:
        """Wait for the first message, then take whatever else is already here (up to batch_size): a
        batch never waits to fill up, so latency stays low under light load and batches grow under heavy."""
        first = self.consumer.consume(1, self.config.poll_timeout_s)
        if not first or self.config.batch_size == 1:
            return first
        return first + self.consumer.consume(self.config.batch_size - 1, 0)

    def handle_batch(self, messages: list[Message]) -> None:
        batch = survey(messages)
        for error in batch.errors:
            self._on_consumer_error(error)
        good, next_offsets = batch.good, batch.next_offsets()
        outcomes: list[Outcome] = []
        rest: list[Message] = []
        handling = time.perf_counter()
        if not self.poison.ledger.suspects:     # no earlier crash to tell apart: the batch as it is, in one go
            rest = good
        else:
            for message in good:
                at = position(message)
                if not self.poison.ledger.is_suspect(at):
                    rest.append(message)
                elif refusal := self.poison.ledger.exhausted(at):
                    self.log.error("poison message dead-lettered", topic=message.topic(), partition=at[1],
                                   offset=at[2], error=str(refusal)[:500])
                    outcomes.append(Outcome(message, [], error=refusal))
                else:               # a suspect of an earlier crash: alone, so that a crash names it
                    outcomes += self._guarded([message])
        if rest:
            outcomes += self._guarded(rest, batch.spans if rest is good else None)
        committing = time.perf_counter()
        if self.config.transactional:
            self.publisher.producer.begin_transaction()
        outcomes = [self._publish(outcome) for outcome in outcomes]
        if not self.committer.commit([TopicPartition(t, p, o) for (t, p), o in next_offsets.items()]):
            self.committer.rewind(good)
            return
        self._count(batch.per_topic, outcomes, committing - handling, time.perf_counter() - committing)
        self._report_positions(next_offsets)        # current as soon as the batch is committed, not a second later
        for outcome in outcomes:
            if outcome.error is not None:
                self.poison.ledger.settled(*position(outcome.message))

    def _count(self, per_physical: dict[str, int], outcomes: list[Outcome], handling_s: float,
               committing_s: float) -> None:
        """Metrics of one batch: messages handled and dead-lettered per input topic, handling and commit time."""
        if not per_physical:
            return
        per_topic: dict[str, int] = {}
        for physical, count in per_physical.items():
            topic = self.bus.catalogue.logical(physical)
            per_topic[topic] = per_topic.get(topic, 0) + count
        for outcome in outcomes:
            if outcome.error is not None:
                topic = self.bus.catalogue.logical(position(outcome.message)[0])
                per_topic[topic] -= 1
                self.metrics.handled(topic, "dead_lettered")
        for topic, count in per_topic.items():
            self.metrics.handled(topic, "handled", count)
        self.metrics.handler_seconds.labels(self.service, next(iter(per_topic))).observe(handling_s)
        self.metrics.commit_seconds.labels(self.service).observe(committing_s)
        self.metrics.emitted.labels(self.service).inc(sum(len(o.events) for o in outcomes))

    def _measure_lag(self) -> None:
        """Position, high-water mark and lag of every assigned input partition, from the client's own view."""
        self._lag_at = time.monotonic()
        try:
            assigned = self.consumer.assignment()
            self._report_positions({(reached.topic, reached.partition): reached.offset
                                    for reached in (self.consumer.position(assigned) if assigned else [])})
        except KafkaException:
            return                          # the broker is away: the loop finds out for itself

    def _report_positions(self, positions: dict[tuple[str, int], int]) -> None:
        """These partitions' positions (physical names) against their cached high-water marks, on /metrics. A
        partition nothing was read from since its assignment has no position (-1001): the offset its fetch
        started at stands in; one whose start or end is not known yet is left out (no figure, not a false 0)."""
        consumed = {}
        for (topic, partition), offset in positions.items():
            offset = offset if offset >= 0 else self._started.get((topic, partition), -1)
            _, high = self.consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
            if offset >= 0 and high >= 0:
                consumed[(self.bus.catalogue.logical(topic), partition)] = Consumed(offset, high)
        self.metrics.consumed.record(consumed)

    def _on_statistics(self, statistics: str) -> None:
        self._started = start_offsets(statistics)

    def _guarded(self, messages: list[Message], in_flight: list[Span] | None = None) -> list[Outcome]:
        """Handle messages with their offsets marked in flight (`in_flight`: their spans, when known): a crash counts
        against them (poison.py)."""
        self.poison.begin_spans(spans([position(m) for m in messages]) if in_flight is None else in_flight)
        try:
            match self.mode:
                case RawBatch(handler):
                    outcomes = [Outcome(messages[-1], handler(messages))]
                case Batched(handler):
                    outcomes = self._handle_all(messages, handler)
                case PerRecord(handler):
                    outcomes = [self._handle_one(m, handler) for m in messages]
        except (KafkaException, InfrastructureError):
            self.poison.begin([])           # the broker's failure, not the message's
            raise
        except Exception as error:
            self.poison.crashed(f"{type(error).__name__}: {error}"[:1000])
            raise
        self.poison.finished()
        return outcomes

    def _handle_one(self, message: Message, handler: Handler) -> Outcome:
        started = time.perf_counter()
        topic, partition, offset = position(message)
        context = {"topic": self.bus.catalogue.logical(topic), "partition": partition, "offset": offset}
        try:
            received = decode_message(self.bus, message)
            context.update(event_id=received.envelope.id, record=received.record)
            events = self._refusing(lambda: self._call_handler(handler, received), context)
        except BadInput as error:
            self.log.warning("message dead-lettered", **context, outcome="dead-lettered", stage=error.stage,
                             error_class=type(error).__name__, error=str(error)[:500],
                             duration_ms=round((time.perf_counter() - started) * 1000, 3))
            return Outcome(message, [], error=error)
        self.log.info("message handled", **context, outcome="handled", emitted=len(events),
                      duration_ms=round((time.perf_counter() - started) * 1000, 3))
        return Outcome(message, events, cause=received.envelope)

    def _handle_all(self, messages: list[Message], handler: BatchHandler) -> list[Outcome]:
        """Batch mode: decode each message (bad ones to the DLQ), then one call for all the rest."""
        started = time.perf_counter()
        outcomes: list[Outcome] = []
        decoded: list[tuple[Message, Received]] = []
        for message in messages:
            try:
                decoded.append((message, decode_message(self.bus, message)))
            except BadInput as error:
                outcomes.append(Outcome(message, [], error=error))
        results = self._batch_results(handler, [received for _, received in decoded], position(messages[0]))
        for (message, received), result in zip(decoded, results):
            if isinstance(result, BadInput):
                outcomes.append(Outcome(message, [], error=result))
            else:
                outcomes.append(Outcome(message, result, cause=received.envelope))
        dead = sum(o.error is not None for o in outcomes)
        self.log.info("batch handled", messages=len(messages), dead_lettered=dead,
                      emitted=sum(len(o.events) for o in outcomes),
                      duration_ms=round((time.perf_counter() - started) * 1000, 3))
        return outcomes

    def _refusing(self, handle: Callable[[], list[Event]], context: dict) -> list[Event]:
        """What `handle` returns; a record it raises on (not the infrastructure's failure) is a HandlerFailed,
        dead-lettered with the error, so that no record can stop the service (errors.is_infrastructure)."""
        try:
            return handle()
        except BadInput:
            raise
        except Exception as error:          # noqa: BLE001 - told apart just below
            if is_infrastructure(error):
                raise
            poison_record(self.service, "live", context["topic"], context["offset"], error, context.get("record", ""))
            raise handler_failed(error) from None

    def _batch_results(self, handler: BatchHandler, batch: list[Received],
                       at: tuple[str, int, int]) -> list[list[Event] | BadInput]:
        """The batch handler's results; if it raises on the batch (not the infrastructure's failure), each record
        is handled alone, and the ones it raises on are HandlerFailed (dead-lettered)."""
        if not batch:
            return []
        try:
            return handler(batch)
        except Exception as error:          # noqa: BLE001 - told apart just below
            if is_infrastructure(error):
                raise
            if len(batch) == 1:
                poison_record(self.service, "live", batch[0].topic, batch[0].offset, error, batch[0].record)
                return [handler_failed(error)]
        self.log.warning("batch handler raised; handling its records one by one", messages=len(batch),
                         topic=self.bus.catalogue.logical(at[0]))
        return [result for received in batch for result in self._batch_results(handler, [received], at)]

    def _run_tick(self, tick: Tick) -> None:
        self._last_tick = time.monotonic()
        self._publish_alone(self._ticked(tick))

    def _ticked(self, tick: Tick) -> list[Event]:
        """A tick's (or a stop's) events; one that raises on what it holds (not the infrastructure) is said and
        counted (poison_record, path tick) and makes no events this time: the service goes on."""
        try:
            return tick()
        except Exception as error:          # noqa: BLE001 - told apart just below
            if is_infrastructure(error):
                raise
            poison_record(self.service, "tick", "-", 0, error)
            return []

    def _publish_alone(self, events: list[Event]) -> None:
        """Events that answer no input (a tick, a stop): in a transaction of their own when transactional."""
        if not events:
            return
        ready = []
        for event in events:
            try:
                ready.append(self.publisher.prepared(event))
            except BadInput as refusal:         # no input to dead-letter: said, counted and dropped
                poison_record(self.service, "tick", event.record, 0, refusal)
        if not ready:
            return
        if self.config.transactional:
            self.publisher.producer.begin_transaction()
        for prepared in ready:
            self.publisher.send(prepared)
        if self.config.transactional:
            self.committer.commit_alone()
        else:
            self.publisher.flush()

    def _call_handler(self, handler: Handler, received: Received) -> list[Event]:
        if self.offload is None:
            return list(handler(received))
        future = self.offload.submit(lambda: list(handler(received)))
        paused: list[TopicPartition] = []
        try:
            while True:
                try:
                    return future.result(timeout=0.2)
                except FutureTimeout:
                    if not paused:
                        paused = self.consumer.assignment()
                        self.consumer.pause(paused)
                    self._keep_alive()
        finally:
            if paused:
                self.consumer.resume(paused)

    def _keep_alive(self) -> None:
        """Poll while a slow handler runs, so the member stays in its group (max.poll.interval.ms)."""
        message = self.consumer.poll(0.1)
        if message is not None and not message.error():
            # Paused partitions return nothing; should one slip through, rewind so it is not skipped.
            self.consumer.seek(TopicPartition(*position(message)))

    def _publish(self, outcome: Outcome) -> Outcome:
        """An outcome's events, or its input's dead letter; returns the outcome as it was sent. Events are encoded
        and measured first, all of them: one its topic would refuse (encode refuses it, or it holds more than the
        topic takes) dead-letters the input instead (HandlerFailed), before any of its events is sent — a refusal
        from the broker would abort the batch at every start."""
        if outcome.error is None:
            try:
                ready = [e if isinstance(e, Forward) else self.publisher.prepared(e, outcome.cause)
                         for e in outcome.events]
            except BadInput as refusal:
                if isinstance(self.mode, RawBatch):     # one outcome stands for the whole batch (the auditor's
                    raise                               # chain): its outputs are bounded where they are made
                topic, _, offset = position(outcome.message)
                poison_record(self.service, "live", self.bus.catalogue.logical(topic), offset, refusal)
                outcome = Outcome(outcome.message, [], error=HandlerFailed(f"its output cannot be sent: {refusal}"))
            else:
                for event in ready:
                    if isinstance(event, Forward):
                        self.publisher.produce_physical(event.physical_topic, event.key, event.value, event.headers,
                                                        event.timestamp_ms)
                    else:
                        self.publisher.send(event)
                return outcome
        assert outcome.error is not None
        topic = self.bus.catalogue.logical(position(outcome.message)[0])
        key, value, headers = dead_letter(outcome.message, topic, self.service, outcome.error.stage, outcome.error,
                                          self.bus.settings.connection.secret_values())
        self.publisher.produce(dlq_topic(topic), key, value, headers)
        return outcome

    def _on_rebalance(self, change: str) -> Callable[[Consumer, list[TopicPartition]], None]:
        """Log each rebalance (how often they happen is a health signal: the chaos suite counts them)."""
        def log(_consumer: Consumer, partitions: list[TopicPartition]) -> None:
            if partitions:
                self.log.info(f"partitions {change}", partitions=[f"{p.topic}[{p.partition}]" for p in partitions])
            if change == "revoked":
                self.metrics.consumed.forget({(self.bus.catalogue.logical(p.topic), p.partition) for p in partitions})
            if change == "revoked" and not self.config.transactional:
                self.committer.revoked({(p.topic, p.partition) for p in partitions})
        return log

    def _on_consumer_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._PARTITION_EOF:
            return
        if error.fatal() or error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            raise KafkaException(error)
        # Transport errors (a broker restarting) are retried by librdkafka itself.
        self.log.warning("consumer error, librdkafka retries", error=str(error))

    def _check_topics_exist(self) -> None:
        # A raw handler dead-letters nothing (the auditor, which reads the DLQs themselves).
        needs_dlq = [] if isinstance(self.mode, RawBatch) else self.topics
        physical = {self.bus.catalogue.physical(t) for t in self.topics} | {
            self.bus.catalogue.physical(dlq_topic(t)) for t in needs_dlq}
        existing = set(self.consumer.list_topics(timeout=30).topics)
        missing = sorted(physical - existing)
        if missing:
            raise ConfigError(f"topics missing on the broker: {', '.join(missing)}; run `mlbus topics apply`")


YOUNG_COLLECTION = 50_000


def settle_heap() -> None:
    """Leave what start-up made (modules, loaded models, projections) out of the cyclic collector's passes from
    now on (gc.freeze, after a collection so no garbage is kept). Each full pass otherwise walks all of it
    again, and a batch of messages makes tens of thousands of small objects: measured on the scorer's path,
    per-row decode 21 → 11 µs and ~50 → ~38 µs in all. Call again after loading something large.
    The youngest generation is collected every YOUNG_COLLECTION allocations rather than 700: a batch of 5,000
    messages makes ~100,000 container objects (messages, header lists and tuples) that reference counting frees,
    and the collector's passes over them were 11 % of the auditor's time under load (2026-12-06)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION, *gc.get_threshold()[1:])
