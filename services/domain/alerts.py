"""The one builder of Alert events (something a person must look at, with its evidence) and of training
requests (something a service or a person asks the trainer for)."""
from __future__ import annotations

import json
from datetime import datetime

from services.bus.envelope import Event, derive_id


def alert(kind: str, model: str, message: str, cause_id: str, now: datetime, *, severity: str = "warning",
          version: int | None = None, evidence: dict | None = None, alert_id: str | None = None) -> Event:
    """An Alert whose id derives from its cause and kind (or is given): the same cause alerts once."""
    alert_id = alert_id or derive_id(cause_id, kind)
    return Event("mlbus.Alert", key=model, id=alert_id, subject=model if version is None else f"{model}@{version}",
                 value={"alert_id": alert_id, "kind": kind, "severity": severity, "model": model, "version": version,
                        "message": message, "evidence_json": json.dumps(evidence or {}, sort_keys=True, default=str),
                        "cause_id": cause_id, "raised_at": now})


def training_request(request_id: str, model: str, reason: str, requested_by: str, now: datetime, *,
                     evidence: dict | None = None, batch_ids: list[str] | None = None,
                     reproduce_run_id: str | None = None) -> Event:
    """The one builder of TrainingRequested events (the trainer on new data, the drift-watcher, the CLI)."""
    return Event("mlbus.TrainingRequested", key=model, id=request_id, subject=model, value={
        "request_id": request_id, "model": model, "reason": reason, "requested_by": requested_by,
        "requested_at": now, "batch_ids": list(batch_ids or []),
        "evidence_json": json.dumps(evidence or {}, sort_keys=True), "reproduce_run_id": reproduce_run_id})
