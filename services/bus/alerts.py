"""The one builder of Alert events: something a person must look at, with its evidence."""
from __future__ import annotations

import json
from datetime import datetime

from .envelope import Event, derive_id


def alert(kind: str, model: str, message: str, cause_id: str, now: datetime, *, severity: str = "warning",
          version: int | None = None, evidence: dict | None = None) -> Event:
    """An Alert whose id derives from its cause and kind: the same cause alerts once."""
    alert_id = derive_id(cause_id, kind)
    return Event("mlbus.Alert", key=model, id=alert_id, subject=model if version is None else f"{model}@{version}",
                 value={"alert_id": alert_id, "kind": kind, "severity": severity, "model": model, "version": version,
                        "message": message, "evidence_json": json.dumps(evidence or {}, sort_keys=True, default=str),
                        "cause_id": cause_id, "raised_at": now})
