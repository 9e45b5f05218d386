"""How a batch's input offsets are committed, for the runtime (runtime.py).

Transactional (exactly-once within Kafka): the offsets go into the batch's transaction and commit with its
outputs; a failed commit is judged (transactions.after_failed_commit) — crash, abort and read the batch again
where this copy still owns its partitions, or abort and crash so the service's state is rebuilt.
At-least-once: the outputs are flushed first, then the offsets are committed asynchronously (commits.py keeps
them until the broker confirms); as partitions are revoked, and at a stop, everything owed is waited for."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from .commits import OffsetsToCommit
from .consumed import position
from .errors import InfrastructureError
from .metrics import ServiceMetrics
from .modes import RuntimeConfig
from .publish import Publisher
from .transactions import REBALANCING, TRANSACTION_DEADLINE_S, AbortRun, commit_transactional
from .watchdog import Watchdog


@dataclass
class Committer:
    service: str
    config: RuntimeConfig
    consumer: Consumer
    publisher: Publisher
    watchdog: Watchdog
    log: Any
    metrics: ServiceMetrics
    offsets: OffsetsToCommit = field(default_factory=OffsetsToCommit)  # at-least-once: flushed, not yet committed
    aborts: AbortRun = field(default_factory=AbortRun)      # transactions aborted since the last commit

    def commit(self, offsets: list[TopicPartition]) -> bool:
        """Commit the batch's outputs and offsets; False when the transaction was aborted (see after_failed_commit)."""
        producer = self.publisher.producer
        if not self.config.transactional:
            self.publisher.flush()          # the outputs are on the broker before their inputs' offsets move on
            self.offsets.add({(o.topic, o.partition): o.offset for o in offsets})
            self.send_async()
            return True
        with self.watchdog.deadline("send_offsets_to_transaction + commit_transaction", TRANSACTION_DEADLINE_S):
            try:
                commit_transactional(producer, offsets, self.consumer.consumer_group_metadata())
            except KafkaException as failure:
                error = failure.args[0]
                action = self.aborts.judge(error, self.config.rewinds)
                if action == "crash":
                    raise
                self.log.warning("transaction aborted", error=str(error), rewound=action == "rewind")
                self.metrics.aborted.labels(self.service).inc()
                producer.abort_transaction(30)
                self.publisher.forget_aborted()
                self.aborts.aborted(error)
                if self.config.on_aborted and action == "rewind":
                    self.config.on_aborted()
                if action == "abort-and-crash":
                    raise InfrastructureError(
                        f"transaction aborted ({error}); restarting, so that the service's state is rebuilt "
                        "from what was committed") from failure
                return False
        self.publisher.raise_failures()
        self.aborts.committed()
        self.committed()
        return True

    def commit_alone(self) -> None:
        """The open transaction of events that answer no input (a tick, a stop): no offsets in it."""
        with self.watchdog.deadline("commit_transaction", TRANSACTION_DEADLINE_S):
            commit_transactional(self.publisher.producer)
        self.publisher.raise_failures()
        self.committed()

    def rewind(self, messages: list[Message]) -> None:
        """After an aborted transaction: read the batch again from its first offset in each partition this copy
        still owns (a partition a rebalance took away is read by its new owner from the committed offset)."""
        first: dict[tuple[str, int], int] = {}
        for message in messages:
            topic, partition, offset = position(message)
            first.setdefault((topic, partition), offset)
        owned = {(p.topic, p.partition) for p in self.consumer.assignment()}
        for (topic, partition), offset in first.items():
            if (topic, partition) not in owned:
                continue
            try:
                self.consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as error:
                if (topic, partition) in {(p.topic, p.partition) for p in self.consumer.assignment()}:
                    raise InfrastructureError(f"could not read {topic}[{partition}] again from {offset} after an "
                                              f"aborted transaction ({error}); restarting from the committed "
                                              "offset") from error
                self.log.warning("rewind skipped: revoked meanwhile", topic=topic, partition=partition)

    def committed(self) -> None:
        if self.config.on_committed:
            self.config.on_committed()

    def send_async(self) -> None:
        """At-least-once, after the outputs were flushed: the loop goes on to the next batch while the broker
        records the offsets (commits.py keeps them until it confirms; a refused one is sent again)."""
        sending = self.offsets.send_async()
        if not sending:
            return
        try:
            self.consumer.commit(offsets=_partitions(sending), asynchronous=True)
        except KafkaException as error:
            self.offsets.refused(sending)
            if error.args[0].code() not in REBALANCING + (KafkaError._STATE,):
                raise
            self.log.warning("commit deferred by a rebalance", error=str(error.args[0]))

    def on_async_commit(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """The consumer's on_commit: what the broker confirmed settles, what it refused is sent again."""
        failed = {(p.topic, p.partition): p.offset for p in partitions if error is not None or p.error}
        self.offsets.settled({(p.topic, p.partition): p.offset for p in partitions
                              if (p.topic, p.partition) not in failed})
        if failed and (error is None or error.code() != KafkaError._NO_OFFSET):
            self.offsets.refused(failed)
            self.log.warning("asynchronous commit refused; sent again with the next", error=str(error))

    def commit_owed(self, keys: set[tuple[str, int]] | None = None) -> None:
        """Commit and wait for everything not yet confirmed for these partitions (all when None): as they are
        revoked, and at a stop. A rebalance in progress refuses it (the group's generation moved on): the
        offsets stay owed for the partitions this copy keeps; only what is never committed is read again."""
        owed = self.offsets.owed(keys)
        if not owed:
            return
        try:
            self.consumer.commit(offsets=_partitions(owed), asynchronous=False)
        except KafkaException as error:
            # a rebalance in progress, or partitions already lost (a session that expired while this copy
            # was stalled): not this copy's to commit any more; what it handled is read again by the next owner
            if error.args[0].code() not in REBALANCING + (KafkaError._ASSIGNMENT_LOST, KafkaError._STATE):
                raise
            self.log.warning("commit deferred by a rebalance", error=str(error.args[0]))
            return
        self.offsets.settled(owed)

    def revoked(self, keys: set[tuple[str, int]]) -> None:
        """At-least-once partitions taken from this copy: what it owes for them committed, then forgotten."""
        self.commit_owed(keys)
        self.offsets.forget(keys)


def _partitions(offsets: dict[tuple[str, int], int]) -> list[TopicPartition]:
    return [TopicPartition(topic, partition, offset) for (topic, partition), offset in offsets.items()]
