"""The scorer's pure parts: which variant answers an entity, and the prediction records."""
from __future__ import annotations

import hashlib
from datetime import datetime

from services.bus import Event, derive_id


def bucket(entity_id: str) -> float:
    """A stable number in [0, 1) per entity: the same entity always lands in the same variant."""
    return int.from_bytes(hashlib.sha256(entity_id.encode()).digest()[:8], "big") / 2 ** 64


def assign(routes: list[dict], entity_id: str) -> tuple[dict | None, list[dict]]:
    """(the route whose answer is served, the shadow routes that score too)."""
    served = [r for r in routes if r["served"]]
    shadows = [r for r in routes if not r["served"]]
    point, start = bucket(entity_id), 0.0
    for candidate in (r for r in served if r["variant"] != "champion"):
        if start <= point < start + candidate["share"]:
            return candidate, shadows
        start += candidate["share"]
    champion = next((r for r in served if r["variant"] == "champion"), None)
    return champion, shadows


def prediction(request: dict, cause_id: str, route: dict | None, deployment_id: str | None, served: bool,
               label: str | None, score: float | None, probabilities: dict[str, float], now: datetime,
               error: str | None = None, cpu_ms: float = 0.0, members=()) -> Event:
    variant = route["variant"] if route else "none"
    prediction_id = derive_id(cause_id, "prediction", variant)
    latency_ms = max(0.0, (now - request["sent_at"]).total_seconds() * 1000)
    return Event("mlbus.Prediction", key=request["entity_id"], id=prediction_id, subject=request["request_id"], value={
        "prediction_id": prediction_id, "request_id": request["request_id"], "entity_id": request["entity_id"],
        "model": request["model"], "version": route["version"] if route else None, "variant": variant,
        "served": served, "label": label, "score": score, "probabilities": probabilities, "latency_ms": latency_ms,
        "cpu_ms": cpu_ms, "members": list(members),
        "deployment_id": deployment_id, "error": error, "predicted_at": now})
