"""Inference traffic built from the sample dataset's rows."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from services.bus import Event, Publisher, derive_id
from tests.support.datasets import good
from tests.support.polling import wait_until

FEATURES = [c for c in good(rows=5).columns if c not in ("id", "diagnosis")]


def send_requests(bus, model: str, count: int, prefix: str = "r", drop_feature: bool = False,
                  publisher: Publisher | None = None, scale: float = 1.0) -> list[str]:
    """`count` requests from the sample data's rows; scale != 1 multiplies every feature (drifted traffic)."""
    own = publisher or Publisher(bus, "shop-app")
    rows = good(rows=count if count <= 569 else count, seed=11).to_dict("records")
    ids = []
    for i, row in enumerate(rows):
        features = {f: float(row[f]) * scale for f in FEATURES if not (drop_feature and f == FEATURES[0])}
        request_id = f"{prefix}-{i:06d}"
        own.publish(Event("mlbus.InferenceRequest", key=f"customer-{i}", id=derive_id(request_id), value={
            "request_id": request_id, "entity_id": f"customer-{i}", "model": model, "features": features,
            "categories": {}, "sent_at": datetime.now(timezone.utc)}))
        ids.append(request_id)
    if publisher is None:
        own.flush()
    return ids


def routed(scorer_log: Path, deployment: dict, timeout: float = 60) -> None:
    """Wait until the scorer whose log this is routes by `deployment` (a DeploymentChanged value): its routing
    thread logs "routes changed" once the deployment serves. A deployment on the topic is not yet one the scorer
    routes by; requests sent in between are answered by the routes before it."""
    wanted = (f'"deployment_id": "{deployment["deployment_id"]}"', f'"phase": "{deployment["phase"]}"')

    def seen() -> bool:
        text = scorer_log.read_text(errors="replace") if scorer_log.exists() else ""
        return any('"routes changed"' in line and all(w in line for w in wanted) for line in text.splitlines())
    wait_until(seen, timeout=timeout, interval=0.2,
               message=f"the scorer to route by deployment {deployment['deployment_id']} ({deployment['phase']})")
