"""The registry's handler: verify people's acts, fold the event, decide, fold the decisions, mirror the rows."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable

from services.bus import Event, Received
from services.bus.projections.inventory import Inventory
from services.bus.signing import Verdict

from .adapters import RegistryDatabase
from .decide import on_approval, on_deployment, on_policy, on_trained

Verify = Callable[[Received, tuple[str, ...]], Verdict]
APPROVER, ADMIN = ("approver",), ("admin",)


def now_ms() -> datetime:
    """Now, to the millisecond Avro keeps: the database row equals the event a replay decodes."""
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class Registry:
    def __init__(self, inventory: Inventory, database: RegistryDatabase, verify: Verify,
                 clock: Callable[[], datetime] = lambda: now_ms()):
        self.inventory = inventory
        self.database = database
        self.verify = verify
        self.clock = clock
        self.decisions = {"mlbus.ModelTrained": self._trained, "mlbus.ApprovalSubmitted": self._approval,
                          "mlbus.DeploymentChanged": self._deployment, "mlbus.PromotionPolicyDefined": self._policy}

    def __call__(self, message: Received) -> list[Event]:
        decide = self.decisions.get(message.record)
        events = decide(message, self.clock()) if decide else []
        if not (message.record == "mlbus.PromotionPolicyDefined" and events):   # a refused policy is not folded
            self.inventory.apply(message.record, message.value)
        for event in events:
            self.inventory.apply(event.record, event.value)
        self.database.save(self.inventory, {message.value["model"]})
        return events

    def _trained(self, message: Received, now: datetime) -> list[Event]:
        return on_trained(self.inventory, message.value, message.envelope.id, now)

    def _approval(self, message: Received, now: datetime) -> list[Event]:
        return on_approval(self.inventory, message.value, self.verify(message, APPROVER), now)

    def _deployment(self, message: Received, now: datetime) -> list[Event]:
        return on_deployment(self.inventory, message.value, now)

    def _policy(self, message: Received, now: datetime) -> list[Event]:
        return on_policy(message.value, self.verify(message, ADMIN), message.envelope.id, now)
