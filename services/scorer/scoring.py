"""The scorer's pure parts: which variant answers an entity, and the prediction records."""
from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

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


def arrival(broker_ms: int, stamped_by_broker: bool, received_at: datetime) -> datetime:
    """When mlbus first saw a request, by its own clocks: the broker's LogAppendTime (inference.requests is stamped
    so), else when the scorer took it in. Never the client's `sent_at` or its CreateTime: a client that
    back- or future-dates them would move the latency that canary gates and SLOs judge."""
    if not stamped_by_broker:
        return received_at
    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=broker_ms)


def prediction(request: dict, cause_id: str, route: dict | None, deployment_id: str | None, served: bool,
               label: str | None, score: float | None, probabilities: dict[str, float], now: datetime,
               error: str | None = None, cpu_ms: float = 0.0, members=(), arrived: datetime | None = None,
               lookups=()) -> Event:
    """arrived: when mlbus first saw the request (arrival()); the latency runs from then to now. lookups: the
    FeatureLookup records of the features looked up for it."""
    variant = route["variant"] if route else "none"
    prediction_id = derive_id(cause_id, "prediction", variant)
    latency_ms = max(0.0, (now - (arrived or now)).total_seconds() * 1000)
    return Event("mlbus.Prediction", key=request["entity_id"], id=prediction_id, subject=request["request_id"], value={
        "prediction_id": prediction_id, "request_id": request["request_id"], "entity_id": request["entity_id"],
        "model": request["model"], "version": route["version"] if route else None, "variant": variant,
        "served": served, "label": label, "score": score, "probabilities": probabilities, "latency_ms": latency_ms,
        "cpu_ms": cpu_ms, "members": list(members), "lookups": list(lookups),
        "deployment_id": deployment_id, "error": error, "predicted_at": now})
