"""The auditor's handler: raw messages in, sealed records (and checkpoints) out, the head kept between."""
from __future__ import annotations

import time
from typing import Callable

from confluent_kafka import Message

from services.bus import BadInput, Bus, Event, Received
from services.bus.access import ROLES
from services.domain import ChainHead
from services.bus.logs import get_logger
from services.bus.received import decode_message
from services.bus.signing import SIGNED_RECORDS, Verdict

from .decide import Crossing, append, attest, checkpoint

Verify = Callable[[Received, tuple[str, ...]], Verdict]


class Auditor:
    def __init__(self, bus: Bus, read_head: Callable[[], ChainHead], checkpoint_every: int, verify: Verify,
                 clock=lambda: int(time.time() * 1000)):
        self.bus = bus
        self.verify = verify
        self.read_head = read_head
        self.head: ChainHead | None = None
        self.checkpoint_every = checkpoint_every
        self.clock = clock
        self.log = get_logger(component="auditor")

    def __call__(self, messages: list[Message]) -> list[Event]:
        if self.head is None:
            # Read only now, after the runtime's init_transactions fenced any older auditor and aborted
            # what it had open: the tail read here is final, so the chain cannot fork.
            self.head = self.read_head()
            self.log.info("chain continues", sequence=self.head.sequence, hash=self.head.hash[:12])
        crossings = [Crossing(self.bus.catalogue.logical(m.topic()), m.partition(), m.offset(), m.timestamp()[1],
                              m.key(), list(m.headers() or []), m.value(), self._attested(m)) for m in messages]
        self.head, events = append(self.head, crossings, self.clock(), self.checkpoint_every)
        self.log.info("audited", records=len(crossings), sequence=self.head.sequence)
        return events

    def _attested(self, message: Message) -> str | None:
        """Who signed a person's act (only the topics that carry them are decoded: the rest stays raw)."""
        topic = self.bus.catalogue.topics.get(self.bus.catalogue.logical(message.topic()))
        if topic is None or topic.schema not in SIGNED_RECORDS:
            return None
        try:
            received = decode_message(self.bus, message)
        except BadInput:
            return None                      # audited as bytes; its consumers dead-letter it
        return attest(received.value, self.verify(received, ROLES))

    def on_stop(self) -> list[Event]:
        """A checkpoint of where the chain stands, unless one was just taken."""
        if self.head is None or self.head.sequence == 0 or self.head.sequence % max(self.checkpoint_every, 1) == 0:
            return []
        return [checkpoint(self.head, self.clock())]
