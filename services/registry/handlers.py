"""The registry's handler: verify people's acts, fold the event, decide, fold the decisions, write the rows they
changed."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable

from services.bus import Event, Received, derive_id
from services.bus.identity import TRAINED_SIGNER, act_refusal
from services.bus.projections.identities import Identities
from services.domain import alert
from services.bus.projections.inventory import Inventory
from services.bus.signing import Verdict

from .adapters import RegistryDatabase, touched
from .decide import on_approval, on_deployment, on_policy, on_trained

Verify = Callable[[Received, tuple[str, ...]], Verdict]
APPROVER, ADMIN = ("approver",), ("admin",)
LIFECYCLE = "mlbus.ModelLifecycle"
REFUSABLE = ("mlbus.PromotionPolicyDefined", "mlbus.ModelTrained")     # not folded when refused


def now_ms() -> datetime:
    """Now, to the millisecond Avro keeps: the database row equals the event a replay decodes."""
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class Registry:
    def __init__(self, inventory: Inventory, database: RegistryDatabase, verify: Verify,
                 clock: Callable[[], datetime] = lambda: now_ms(), identities: Identities | None = None):
        self.inventory = inventory
        self.identities = identities or Identities()     # the keys, to say when a declaration is refused
        self.database = database
        self.verify = verify
        self.clock = clock
        self.decisions = {"mlbus.ModelTrained": self._trained, "mlbus.ApprovalSubmitted": self._approval,
                          "mlbus.DeploymentChanged": self._deployment, "mlbus.PromotionPolicyDefined": self._policy,
                          "mlbus.IdentityDeclared": self._identity}

    def __call__(self, message: Received) -> list[Event]:
        decide = self.decisions.get(message.record)
        events = decide(message, self.clock()) if decide else []
        folded = []
        refused = message.record in REFUSABLE and any(e.record == "mlbus.Alert" for e in events)
        if not refused:                             # a refused policy or version record is not folded
            folded += self._fold(message.record, message.value)
        for event in events:
            folded += self._fold(event.record, event.value)
        self.database.write(touched(self.inventory, folded))
        return events

    def _fold(self, record: str, value: dict) -> list[tuple[str, dict]]:
        """Fold one event in; what changed: the event itself, and the decisions that took effect with it."""
        took_effect = self.inventory.apply(record, value)
        return ([] if record == LIFECYCLE else [(record, value)]) + [(LIFECYCLE, e) for e in took_effect]

    def _trained(self, message: Received, now: datetime) -> list[Event]:
        """A version is registered only from the trainer's own signed record (anyone holding the trainer's
        broker credentials could write one)."""
        refused = act_refusal(message, self.verify, TRAINED_SIGNER["mlbus.ModelTrained"])
        if refused:
            value = message.value
            return [alert("trained-refused", value["model"], f"v{value['version']} of {value['model']} not "
                          f"registered: {refused}", derive_id(message.topic, message.partition, message.offset),
                          now, severity="critical", version=value["version"], evidence={"refusal": refused})]
        return on_trained(self.inventory, message.value, message.envelope.id, now)

    def _approval(self, message: Received, now: datetime) -> list[Event]:
        return on_approval(self.inventory, message.value, self.verify(message, APPROVER), now)

    def _deployment(self, message: Received, now: datetime) -> list[Event]:
        return on_deployment(self.inventory, message.value, now)

    def _identity(self, message: Received, now: datetime) -> list[Event]:
        """A key declared differently from before, swapped, backdated past its proof or granted without the
        endorsements its roles need: refused by every reader; the registry raises the alert."""
        refused = self.identities.apply(message.record, message.value, message.timestamp_ms)
        if refused is None:
            return []
        value = message.value
        return [alert("identity-refused", value["name"], f"declaration of key {value['key_id']} for {value['name']} "
                      f"refused: {refused}", derive_id(message.topic, message.partition, message.offset), now,
                      severity="critical", evidence={"key_id": value["key_id"], "roles": value["roles"],
                                                     "refusal": refused})]

    def _policy(self, message: Received, now: datetime) -> list[Event]:
        return on_policy(message.value, self.verify(message, ADMIN), message.envelope.id, now,
                         self.inventory.policies.get(message.value["model"]))
