"""Which shards this auditor copy runs: audit.log's partitions shared out by a consumer group, each one a shard
run in a thread of its own (its own consumer, transactional producer and chain).

Every copy joins the group `mlbus.auditor.shards` on audit.log; the group's assignment (cooperative-sticky) is
the ownership: a copy runs the shards whose partitions it is given and never reads them through this consumer
(they are paused). When a copy dies or leaves, the group gives its shards to the others; when one comes back,
some move to it. A shard moving away is stopped (its batch finished and committed) before the move completes,
and the copy that takes it fences any runner still alive by the shard's transactional id.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

from confluent_kafka import Consumer, KafkaException, TopicPartition

from services.bus import Bus, ServiceRuntime
from services.bus.kafka import consumer_config, group_id
from services.bus.logs import get_logger
from services.bus.settings import ConfigError

POLL_S = 0.5


@dataclass
class Running:
    """A shard running in its thread; `failure` is what stopped it other than a stop."""

    runtime: ServiceRuntime
    thread: threading.Thread | None = None
    failure: BaseException | None = None


class ShardFailed(RuntimeError):
    """A shard's runtime stopped on an error (the broker, a fenced transaction): the copy exits to restart."""


class Shards:
    """This copy's shards, started and stopped as the group assigns audit.log's partitions."""

    def __init__(self, bus: Bus, make: Callable[[int, int], ServiceRuntime], instance: str,
                 retire: Callable[[int], None] = lambda shard: None):
        self.bus = bus
        self.make = make                        # (shard, shards) → its runtime, not yet running
        self.retire = retire                    # a shard stopped here: what the copy reports of it goes
        self.topic = bus.catalogue.physical("audit.log")
        self.running: dict[int, Running] = {}
        self.stopped: list[tuple[int, Running]] = []      # stopped since the loop last looked at them
        self.stopping = False
        self.shards = 0
        self.log = get_logger(component="auditor")
        self.consumer = Consumer({**consumer_config(bus.settings, group_id(bus.settings, "shards"),
                                                    f"auditor-shards-{instance}")})
        # Membership only: its partitions are paused once given, nothing is read through it, nor committed.

    def stop(self, *_: object) -> None:
        self.stopping = True

    def run(self) -> None:
        """Hold the group's shards until stop(); a shard that fails stops the copy (raised: ShardFailed)."""
        listed = self.consumer.list_topics(self.topic, timeout=30).topics[self.topic]
        if listed.error is not None or not listed.partitions:
            raise ConfigError(f"audit.log ({self.topic}) is missing on the broker or not readable by the auditor "
                              f"({listed.error}): run `mlbus topics apply` and `mlbus acl apply`")
        self.shards = len(listed.partitions)
        self.log.info("auditor copy joins", shards=self.shards, group=group_id(self.bus.settings, "shards"))
        self.consumer.subscribe([self.topic], on_assign=self._assigned, on_revoke=self._revoked,
                                on_lost=self._revoked)
        try:
            while not self.stopping:
                self.consumer.consume(1, POLL_S)        # nothing comes (paused): heartbeats and rebalances
                self._raise_failed(list(self.running.items()) + self.stopped)
                self.stopped = []
        finally:
            self._stop(sorted(self.running))
            self.consumer.close()
        self._raise_failed(self.stopped)

    @staticmethod
    def _raise_failed(shards: list[tuple[int, Running]]) -> None:
        """A shard that stopped on an error — running, or stopped as it moved away (a zombie copy's shard, whose
        last commit its new runner fenced) — stops the copy too: it exits loudly and restarts clean."""
        for shard, running in shards:
            if running.failure is not None:
                raise ShardFailed(f"shard {shard} stopped: {type(running.failure).__name__}: "
                                  f"{running.failure}") from running.failure

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        consumer.incremental_assign(partitions)
        consumer.pause(partitions)
        for partition in partitions:
            self._start(partition.partition)

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._stop([p.partition for p in partitions])
        try:
            consumer.incremental_unassign(partitions)
        except KafkaException:          # lost: the client has dropped them itself
            pass

    def _start(self, shard: int) -> None:
        if shard >= self.shards:
            # audit.log has more partitions than this copy read at its start (added by hand): every source
            # partition's shard would change, some audited twice or by none. Refused loudly, never run.
            raise ShardFailed(f"shard {shard} is past the {self.shards} audit.log had when this copy started: the "
                              f"number of shards is fixed when audit.log is made (docs/audit.md#shards)")
        if shard in self.running:
            return
        running = Running(self.make(shard, self.shards))
        running.thread = threading.Thread(target=self._run_shard, args=(shard, running), daemon=True,
                                          name=f"auditor-shard-{shard}")
        self.running[shard] = running
        running.thread.start()
        self.log.info("shard started", shard=shard, shards=self.shards)

    def _run_shard(self, shard: int, running: Running) -> None:
        try:
            running.runtime.run(handle_signals=False)
        except BaseException as error:          # noqa: BLE001 - handed to the main thread, which exits on it
            self.log.critical("shard stopped on an error", shard=shard, error=f"{type(error).__name__}: {error}")
            running.failure = error

    def _stop(self, shards: list[int]) -> None:
        """Stop these shards and wait for each to finish its batch and commit (a moved shard must not run twice:
        its next runner's fencing is the guard, this the courtesy)."""
        stopping = [(shard, self.running.pop(shard)) for shard in shards if shard in self.running]
        for _, running in stopping:
            running.runtime.stop()
        for shard, running in stopping:
            if running.thread is not None:
                running.thread.join()
            self.retire(shard)
            self.log.info("shard stopped", shard=shard)
        self.stopped += stopping

