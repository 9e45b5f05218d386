"""A model's open window, as the small head the faust table keeps (rows live under their own keys):
when it opened, how many requests and predictions it holds, the outcomes scored so far. Pure."""
from __future__ import annotations

from services.domain import MISSING_GROUP, Monitoring


def new_head(seq: int = 0, nonce: str = "") -> dict:
    """offset: the last observation taken in (set by the app; a redelivered one at or below it is skipped);
    nonce: a random value (decide.ClosedWindow.nonce), given by the app."""
    return {"seq": seq, "start_ms": None, "end_ms": None, "rows": 0, "predictions": 0, "performance": {},
            "judged": 0, "offset": -1, "nonce": nonce}


def with_request(head: dict, at_ms: int) -> dict:
    start = head["start_ms"] if head["start_ms"] is not None else at_ms
    return {**head, "rows": head["rows"] + 1, "start_ms": start, "end_ms": max(at_ms, head["end_ms"] or at_ms)}


def with_prediction(head: dict) -> dict:
    return {**head, "predictions": head["predictions"] + 1}


def with_outcome(head: dict, version: int, variant: str, amount: float) -> dict:
    """amount: 1/0 for a right/wrong label, |error| for a value; summed per version and variant."""
    key = f"{version}|{variant}"
    total, outcomes = head["performance"].get(key, (0.0, 0))
    return {**head, "performance": {**head["performance"], key: [total + amount, outcomes + 1]}}


MAX_JUDGED = 20_000      # outcomes a window keeps for its fairness figures (the rest still count in performance)


def judged_entry(version: int, variant: str, groups: dict, truth, predicted) -> dict:
    """One outcome with its prediction and the request's sensitive attributes: a row of online fairness, kept under
    a key of its own (table.row_key, kind j); the head counts them in `judged`."""
    return {"version": version, "variant": variant, "groups": groups, "truth": truth, "predicted": predicted}


MAX_GROUP_CHARS = 64       # a group's name as kept (a sender chooses it; reports name at most 50 of them)


def groups_of(request: dict, attributes: set[str]) -> dict[str, str]:
    """A request's sensitive attributes as group names (a category, or a number as text); absent: (missing)."""
    found = {**{k: str(v) for k, v in (request["features"] or {}).items()}, **(request["categories"] or {})}
    return {a: found.get(a, MISSING_GROUP)[:MAX_GROUP_CHARS] for a in sorted(attributes)}


def due(head: dict, now_ms: int, config: Monitoring) -> bool:
    """Full, or open for window_seconds with at least min_rows requests."""
    if head["rows"] >= config.window_rows:
        return True
    opened = head["start_ms"]
    return opened is not None and head["rows"] >= max(config.min_rows, 1) and \
        now_ms - opened >= config.window_seconds * 1000


def outcome_amount(prediction_label: str | None, prediction_score: float | None, outcome: dict) -> float | None:
    """What one outcome adds to its version's performance, or None when it cannot be compared."""
    if outcome["label"] is not None and prediction_label is not None:
        return 1.0 if outcome["label"] == prediction_label else 0.0
    if outcome["value"] is not None and prediction_score is not None:
        return abs(outcome["value"] - prediction_score)
    return None
