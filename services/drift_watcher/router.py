"""The drift-watcher's router: inference.requests, inference.predictions and outcomes re-keyed by model onto
its observations topic, bytes and headers untouched, in Kafka transactions with the input offsets (the bus
runtime, librdkafka). Faust's own consumer lost and repeated messages around the rebalance that follows a
restart (measured: 8 of 60 requests lost, 13 repeated after a kill -9), so the step that must lose
nothing runs on the runtime every other service uses; faust keeps the windows and their state."""
from __future__ import annotations

import os
import threading

from confluent_kafka import Message

from services.bus import BadInput, Bus, RawBatch, RuntimeConfig, ServiceRuntime
from services.bus.consumed import headers_of, message_size
from services.bus.dlq import dead_letter, dlq_topic
from services.bus.logs import get_logger
from services.bus.received import decode_message
from services.bus.runtime import Forward

INPUTS = ("inference.requests", "inference.predictions", "outcomes")
TICK_HEADER = "mlbus.tick"      # the drift-watcher's own timer messages on its observations topic
FORWARD_LIMIT = 1_040_000       # under the observations topic's cap (the broker's default, 1,048,588) with a batch's
                                # own bytes: a message the edge takes may still not fit re-keyed


class Router:
    def __init__(self, bus: Bus, observations_topic: str):
        self.bus = bus
        self.observations_topic = observations_topic
        self.log = get_logger(component="drift-watcher-router")
        self.runtime = ServiceRuntime(bus, "drift-watcher", RawBatch(self),
                                      RuntimeConfig(topics=INPUTS, transactional=True, batch_size=1000))

    def __call__(self, messages: list[Message]) -> list[Forward]:
        return [self.forward(m) for m in messages]

    def forward(self, message: Message) -> Forward:
        try:
            if any(name == TICK_HEADER for name, _ in headers_of(message)):
                raise BadInput(f"carries the drift-watcher's internal {TICK_HEADER} header")
            value = decode_message(self.bus, message).value       # the topic decides the record type
            if message_size(message) + len(value["model"]) > FORWARD_LIMIT:
                raise BadInput(f"{message_size(message):,} bytes: more than the observations topic takes re-keyed")
            return Forward(self.observations_topic, value["model"].encode(), message.value(),
                           headers_of(message), message.timestamp()[1])
        except BadInput as error:
            logical = self.bus.catalogue.logical(message.topic())
            self.log.warning("dead-lettered", topic=logical, offset=message.offset(), error=str(error))
            key, value, headers = dead_letter(message, logical, "drift-watcher", error.stage, error,
                                              self.bus.settings.connection.secret_values())
            return Forward(self.bus.catalogue.physical(dlq_topic(logical)), key, value, headers)

    def start(self) -> threading.Thread:
        """Run in a thread of the drift-watcher's process; if it fails, the whole process goes down loudly."""
        thread = threading.Thread(target=self._run, name="router", daemon=True)
        thread.start()
        return thread

    def _run(self) -> None:
        try:
            self.runtime.run(handle_signals=False)
        except BaseException as error:             # an infrastructure failure: crash, to be restarted
            self.log.critical("router failed; the drift-watcher stops", error=repr(error))
            os._exit(1)

    def stop(self) -> None:
        self.runtime.stop()
