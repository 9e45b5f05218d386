"""The registry's handler: fold the event, decide, fold the decisions, mirror the model's rows."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable

from services.bus import Event, Received
from services.bus.projections.inventory import Inventory

from .adapters import RegistryDatabase
from .decide import on_approval, on_deployment, on_trained


def now_ms() -> datetime:
    """Now, to the millisecond Avro keeps: the database row equals the event a replay decodes."""
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class Registry:
    def __init__(self, inventory: Inventory, database: RegistryDatabase,
                 clock: Callable[[], datetime] = lambda: now_ms()):
        self.inventory = inventory
        self.database = database
        self.clock = clock

    def __call__(self, message: Received) -> list[Event]:
        record, value, now = message.record, message.value, self.clock()
        if record == "mlbus.ModelTrained":
            events = on_trained(self.inventory, value, message.envelope.id, now)
        elif record == "mlbus.ApprovalSubmitted":
            events = on_approval(self.inventory, value, now)
        elif record == "mlbus.DeploymentChanged":
            events = on_deployment(self.inventory, value, now)
        else:
            events = []
        self.inventory.apply(record, value)
        for event in events:
            self.inventory.apply(event.record, event.value)
        self.database.save(self.inventory, {value["model"]})
        return events
