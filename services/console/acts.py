"""The acts a person signs at the console (pure): the record's value made from the form, prepared for
signing (services.bus.signing.prepare_act) and kept here, bound to the session, until the browser sends
back the signature of its canonical bytes. The browser never sends the act itself, only its signature: what
is published is what the console prepared."""
from __future__ import annotations

import hmac
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

from services.bus.envelope import Event
from services.bus.signing import canonical_act, prepare_act

from .guard import new_token

ACT_TTL_S = 120.0           # time to sign an act once the console prepared it
PENDING_KEPT = 10_000       # outstanding acts; the oldest are dropped beyond it
APPROVAL, DEPLOYMENT = "mlbus.ApprovalSubmitted", "mlbus.DeploymentRequested"
ROLES = {APPROVAL: ("approver",), DEPLOYMENT: ("operator",)}        # the role services verify the act with


@dataclass(frozen=True)
class PendingAct:
    session: str                # the session token it was prepared for
    event: Event                # its value prepared: signer, signer_key, act_id, made_at; no signature
    expires_at: float
    notice: str                 # what the page says once it is sent

    def canonical(self) -> bytes:
        return canonical_act(self.event.record, self.event.value)

    def signed(self, signature: str) -> Event:
        return Event(self.event.record, {**self.event.value, "signature": signature}, key=self.event.key,
                     id=self.event.id, subject=self.event.subject)


def decision(approval_id: str, model: str, version: int, verdict: str, name: str, reason: str,
             artifact_sha256: str | None, now: datetime) -> Event:
    """An approve/reject of a version, as the CLI's `models approve|reject` makes it."""
    return Event(APPROVAL, {"approval_id": approval_id, "model": model, "version": version, "decision": verdict,
                            "actor": name, "reason": reason, "submitted_at": now, "artifact_sha256": artifact_sha256},
                 key=model, id=approval_id, subject=f"{model}@{version}")


def deployment(request_id: str, fields: dict, name: str, artifact_sha256: str | None, now: datetime) -> Event:
    """A deploy or rollback request, as the CLI's `deploy` makes it (`fields`: what the form chose)."""
    return Event(DEPLOYMENT, {"request_id": request_id, **fields, "actor": name, "requested_at": now,
                              "artifact_sha256": artifact_sha256}, key=fields["model"], id=request_id)


def deployment_fields(action: str, model: str, reason: str, form) -> dict:
    """What a deployment form chose, as DeploymentRequested fields (ValueError or KeyError when incomplete)."""
    fields: dict[str, Any] = {"model": model, "action": action, "reason": reason, "strategy": "replace",
                              "version": None, "percent": None, "steps": [], "step_interval_s": 0.0}
    if action == "deploy":
        fields.update(version=int(form["version"]), strategy=str(form.get("strategy") or "replace"))
        if fields["strategy"] == "canary":
            fields.update(steps=[10, 25, 50, 100], step_interval_s=float(form.get("interval_s") or 60))
        if fields["strategy"] == "champion-challenger":
            fields.update(percent=int(form.get("percent") or 10))
    elif action != "rollback" or not model:
        raise ValueError(action)
    return fields


@dataclass
class PendingActs:
    """Prepared acts waiting for their signature, each under a one-time id, for one session, for `ttl_s`."""

    ttl_s: float = ACT_TTL_S
    clock: Callable[[], float] = time.monotonic
    waiting: dict[str, PendingAct] = field(default_factory=dict)

    def prepare(self, session: str, event: Event, signer: str, signer_key: str, notice: str,
                now_ms: int) -> tuple[str, PendingAct]:
        """`event` (its value as a reader decodes it) prepared for `signer`'s key, under a new one-time id."""
        prepared = Event(event.record, prepare_act(event.value, signer, signer_key, now_ms), key=event.key,
                         id=event.id, subject=event.subject)
        act_id, pending = new_token(), PendingAct(session, prepared, self.clock() + self.ttl_s, notice)
        self.waiting[act_id] = pending
        while len(self.waiting) > PENDING_KEPT:
            del self.waiting[next(iter(self.waiting))]
        return act_id, pending

    def take(self, act_id: str, session: str) -> PendingAct | None:
        """The act prepared under `act_id` for this session, once, if not expired; else None."""
        pending = self.waiting.pop(act_id, None)
        if pending is None or not hmac.compare_digest(pending.session.encode(), session.encode()):
            return None
        return pending if pending.expires_at >= self.clock() else None
