"""Inference requests for the insurance-claims sample (services/cli/sample_data.py)."""
from __future__ import annotations

from datetime import datetime, timezone

from services.bus import Event, Publisher, derive_id

NUMBERS = ("age", "tenure_months", "claim_amount", "prior_claims")
CATEGORIES = ("region", "channel", "vehicle")


def ask(publisher: Publisher, model: str, rows: list[dict], prefix: str, drop: str | None = None) -> list[str]:
    """One request per claim row (numbers in `features`, categories in `categories`, `drop` left out); the ids."""
    ids = []
    for i, row in enumerate(rows):
        request_id = f"{prefix}-{i:05d}"
        publisher.publish(Event("mlbus.InferenceRequest", key=f"claim-{row['id']}", id=derive_id(request_id), value={
            "request_id": request_id, "entity_id": f"claim-{row['id']}", "model": model,
            "features": {n: float(row[n]) for n in NUMBERS},
            "categories": {c: str(row[c]) for c in CATEGORIES if c != drop}, "sent_at": datetime.now(timezone.utc)}))
        ids.append(request_id)
    publisher.flush()
    return ids
