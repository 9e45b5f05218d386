"""The feature-store screens, pure as the others (pages.py): each feature view with its versions, how fresh
they are, how far the featurizer is behind on their source, their drift and the model versions trained on them."""
from __future__ import annotations

from services.domain import canonical_view, view_subject, views_used

from .pages import aliases_of
from .view import ConsoleView

FEATURIZER = "featurizer"


def features(view: ConsoleView, services: list[dict], now_ms: int) -> list[dict]:
    """Each feature view by name: its newest version, how fresh and how far behind its source, its latest drift,
    the model versions trained on any of its versions."""
    names = sorted({name for name, _ in view.feature_views} | {r["view"] for r in view.refused_views})
    rows = []
    for name in names:
        found = feature_view(view, name, services, now_ms)
        newest = found["versions"][0] if found and found["versions"] else None
        rows.append({"view": name, "versions": len(found["versions"]) if found else 0, "newest": newest,
                     "refused": len(found["refused"]) if found else 0,
                     "models": sum(len(v["models"]) for v in found["versions"]) if found else 0})
    return rows


def feature_view(view: ConsoleView, name: str, services: list[dict], now_ms: int) -> dict | None:
    """One view's page: every version (newest first) with its definition, freshness (the newest value's age), the
    featurizer's lag on its source, its drift reports and alerts, and the model versions trained on it; and its
    definitions that did not parse, with the reason. None: no such view."""
    defined = sorted((d for (n, _), d in view.feature_views.items() if n == name),
                     key=lambda d: d["record"]["defined_at"], reverse=True)
    refused = [r for r in view.refused_views if r["view"] == name]
    if not defined and not refused:
        return None
    return {"view": name, "versions": [view_version(view, d, services, now_ms) for d in defined],
            "refused": refused}


def view_version(view: ConsoleView, defined: dict, services: list[dict], now_ms: int) -> dict:
    definition, record = defined["view"], defined["record"]
    subject = view_subject(definition.name, definition.version)
    held = view.feature_values.get((definition.name, definition.version))
    fresh = None
    if held is not None and held["event_time"] is not None:
        fresh = {"count": held["values"], "newest": held["event_time"], "computed_at": held["computed_at"],
                 "age_ms": now_ms - as_ms(held["event_time"])}
    drift = sorted((r for r in view.drift if r["model"] == subject), key=lambda r: r["window_end"])
    used = [{"model": e.model, "version": e.version, "status": e.status,
             "aliases": aliases_of(view, e.model, e.version), "trained_at": e.trained["trained_at"]}
            for (_, _), e in sorted(view.inventory.versions.items())
            if views_used(e.trained).get(definition.name) == definition.version]
    return {"version": definition.version, "subject": subject, "definition": canonical_view(definition),
            "defined_by": record.get("defined_by"), "defined_at": record.get("defined_at"),
            "owner": definition.owner, "description": definition.description,
            "source": definition.source_topic or f"dataset {definition.source_dataset}",
            "source_kind": definition.source_kind, "entity": definition.entity, "ttl_ms": definition.ttl_ms,
            "lateness_ms": definition.lateness_ms, "features": [
                {"name": f.name, "aggregate": f.aggregate, "field": f.field, "window_ms": f.window_ms,
                 "slide_ms": f.slide_ms, "age_ms": now_ms - as_ms(held["features"][f.name])
                 if held and f.name in held["features"] else None} for f in definition.features],
            "fresh": fresh, "lag": source_lag(services, definition.source_topic),
            "drift": drift[-10:][::-1], "latest": drift[-1] if drift else None,
            "alerts": [a for a in reversed(view.alerts) if a["model"] == subject][:20], "models": used}


def source_lag(services: list[dict], topic: str | None) -> dict | None:
    """How far the featurizer's consumer group is behind on a view's source topic, as `mlbus status` reads it
    (None: no featurizer running, or nothing known of that topic yet)."""
    rows = [r for r in services if r["service"] == FEATURIZER or r["service"].startswith(f"{FEATURIZER}-")]
    known = [r for r in rows if topic is not None and topic in (r.get("lag_by_topic") or {})]
    if not known:
        return None
    return {"topic": topic, "lag": sum(r["lag_by_topic"][topic] for r in known), "source": known[0]["lag_source"]}


def as_ms(value) -> int:
    return value if isinstance(value, int) else int(value.timestamp() * 1000)
