"""The notifier's handler: alerts into the outbox; a tick sends the groups that are due and records each attempt."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable

from services.bus import Event, Received
from services.bus.logs import get_logger

from .decide import Config, Outbox, after_attempt, due_groups, on_alert

Send = Callable[[dict, list[dict]], "str | None"]


class Notifier:
    def __init__(self, config: Config, outbox: Outbox, send: Send,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self.config = config
        self.outbox = outbox
        self.send = send
        self.clock = clock
        self.log = get_logger(component="notifier")

    def __call__(self, message: Received) -> list[Event]:
        if message.record != "mlbus.Alert":
            return []
        return on_alert(self.outbox, self.config, message.value, self.clock())

    def tick(self) -> list[Event]:
        """Send every group that is due; a failure keeps it for the next try (after the back-off)."""
        events = []
        for sink, group in due_groups(self.outbox, self.clock()):
            error = self.send(self.config.sinks[sink], group)
            event = after_attempt(self.outbox, self.config, sink, group, error, self.clock())
            (self.log.warning if error else self.log.info)(
                "notification " + ("failed" if error else "delivered"), sink=sink, alerts=len(group),
                attempt=event.value["attempt"], error=error)
            events.append(event)
        return events
