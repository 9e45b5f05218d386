"""Following topics from their start in a background thread: a service's view of reference data
(deployments, trained versions, specs) that is always current and rebuilt by replay at every start."""
from __future__ import annotations

import os
import threading
from typing import Callable

from confluent_kafka import Consumer, TopicPartition

from ..context import Bus
from ..errors import BadInput
from ..kafka import base_config, group_id
from ..logs import get_logger
from ..poison import poison_record
from ..received import decode_message
from ..replay import apply_fold
from ..topics import retry_while_retriable
from ..watchdog import EXIT_STUCK

Fold = Callable[[str, dict], None]
# what follows a topic: a Fold, or one marked `timed` or `takes_received` (replay.apply_fold says which it takes)
AnyFold = Callable[..., None]


class Follower:
    """Reads every partition of the topics carrying `records` from offset 0, folds each record into `folds`,
    then calls `on_event` (e.g. load the models a new deployment routes to), and `after_poll` once each poll's
    records are folded (e.g. write them to a store in one transaction). `start` returns once the topics have been
    read to the end offsets they had when it began, and what was read then has passed `after_poll`."""

    def __init__(self, bus: Bus, name: str, records: tuple[str, ...], folds: list[AnyFold],
                 on_event: Fold = lambda record, value: None, after_poll: Callable[[], None] = lambda: None):
        self.bus = bus
        self.name = name
        self.records = records
        self.folds = folds
        self.on_event = on_event
        self.after_poll = after_poll
        self.ready = threading.Event()             # read to the end, or failed (error set)
        self.error: BaseException | None = None      # what stopped the thread, raised by start()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._follow, name=f"{name}-follower", daemon=True)

    def start(self, timeout_s: float = 60.0) -> None:
        self.thread.start()
        if not self.ready.wait(timeout_s) or self.error is not None:
            raise RuntimeError(f"{self.name}: could not read {', '.join(self.records)} to their end") \
                from self.error

    def stop(self) -> None:
        self._stop.set()

    def _follow(self) -> None:
        try:
            self._read_and_follow()
        except BaseException as error:
            if self.ready.is_set():             # after start: the service would limp on with a frozen view
                get_logger(component=f"{self.name}-follower").critical(
                    "follower failed; the process exits so that it is restarted", error=repr(error))
                os._exit(EXIT_STUCK)
            self.error = error                  # before: start() raises it
            self.ready.set()                    # wakes start() at once
            raise

    def _read_and_follow(self) -> None:
        consumer = Consumer({**base_config(self.bus.settings), "group.id": group_id(self.bus.settings,
                                                                                   f"{self.name}-follower"),
                             "enable.auto.commit": False, "isolation.level": "read_committed"})
        topics = sorted({self.bus.catalogue.physical(self.bus.catalogue.for_schema(r).name) for r in self.records})
        ends = retry_while_retriable(lambda: {
            (topic, p): consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
            for topic in topics for p in consumer.list_topics(topic, timeout=30).topics[topic].partitions})
        consumer.assign([TopicPartition(t, p, 0) for t, p in ends])
        while not self._stop.is_set():
            # the first message as soon as it comes, then whatever else is here: consume(500, 0.2) would hold a
            # lone deployment back for the whole 0.2 s (the scorer would route by the old one meanwhile)
            first = consumer.consume(1, 0.2)
            for message in first + (consumer.consume(499, 0) if first else []):
                if not message.error():
                    self._apply(message)
            if first:
                self.after_poll()
            if not self.ready.is_set() and all(end == 0 or consumer.position([TopicPartition(t, p)])[0].offset >= end
                                               for (t, p), end in ends.items()):
                self.ready.set()
        consumer.close()

    def _apply(self, message) -> None:
        try:
            received = decode_message(self.bus, message)
        except BadInput:
            return                      # the topic's consuming services dead-letter these
        if received.record not in self.records:
            return
        try:
            for fold in self.folds:
                apply_fold(fold, received)
            self.on_event(received.record, received.value)
        except Exception as error:      # noqa: BLE001 - one record's meaning must not stop the view
            # The topic's consuming service refuses or dead-letters the same record; the view skips it.
            poison_record(self.name, "follow", received.topic, received.offset, error, received.record)
