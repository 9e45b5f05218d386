"""What each console screen shows, pure: the view (and what the caller measured) in, plain data out.
Templates only lay it out; every value from the bus reaches the page through Jinja2's escaping."""
from __future__ import annotations

from datetime import datetime, timezone

from services.bus.edge import content
from services.bus.projections.inventory import AWAITING, ModelVersion, approval_refusal
from services.domain import HIGHER_IS_BETTER

from .view import ConsoleView

APPROVER_ROLES = ("approver", "admin")
OPERATOR_ROLES = ("operator", "admin")
DECISIONS = ("approved", "rejected", "approval-refused")



def evidence(event: dict) -> dict:
    try:
        return content(event.get("evidence_json"))
    except ValueError:
        return {}


def aliases_of(view: ConsoleView, model: str, version: int) -> list[str]:
    return sorted(a for a, v in view.inventory.aliases.get(model, {}).items() if v == version)


def verdict_of(entry: ModelVersion) -> str:
    """The policy's (or a person's) last word on the version: the reason of its latest decision."""
    decided = [e for e in entry.history if e["kind"] in ("approved", "rejected")]
    return (f"{decided[-1]['kind']} by {decided[-1]['actor']}: {decided[-1]['reason']}" if decided
            else "awaiting a person")


def overview(view: ConsoleView, services: list[dict], verification: dict | None) -> dict:
    serving = {model: d for model, d in sorted(view.deployments.current.items())}
    live = {(m, r["version"]) for m, d in serving.items() for r in d["routes"]}
    alerts = [a for a in reversed(view.alerts) if a["severity"] != "info"
              and (a["model"] is None or a["version"] is None or (a["model"], a["version"]) in live)][:20]
    return {"services": services, "serving": serving, "alerts": alerts, "head": view.head,
            "verification": verification, "versions": len(view.inventory.versions),
            "awaiting": sum(1 for v in view.inventory.versions.values() if v.status == AWAITING)}


OPEN_UP_TO = 10            # a model with at most this many versions shows them opened on the models screen


def models(view: ConsoleView, only: str | None = None) -> list[dict]:
    """Each model (its champion, its newest version) with its versions — status, aliases, metric, verdict —
    listed when it has at most OPEN_UP_TO of them (or is `only`); the page fetches the others when opened."""
    by_model: dict[str, list[ModelVersion]] = {}
    for (model, _), entry in sorted(view.inventory.versions.items(), key=lambda kv: (kv[0][0], -kv[0][1])):
        if only in (None, model):
            by_model.setdefault(model, []).append(entry)
    shown = []
    for model, entries in by_model.items():
        listed = only is not None or len(entries) <= OPEN_UP_TO
        shown.append({"model": model, "count": len(entries), "open": len(entries) <= OPEN_UP_TO,
                      "newest": {"version": entries[0].version, "status": entries[0].status},
                      "champion": view.inventory.aliases.get(model, {}).get("champion"),
                      "awaiting": sum(e.status == AWAITING for e in entries),
                      "versions": [version_row(view, e) for e in entries] if listed else []})
    return shown


def version_row(view: ConsoleView, entry: ModelVersion) -> dict:
    metric = entry.trained["metric"]
    return {"model": entry.model, "version": entry.version, "status": entry.status,
            "aliases": aliases_of(view, entry.model, entry.version), "metric": metric,
            "value": entry.trained["metrics"].get(metric), "verdict": verdict_of(entry),
            "estimator": entry.trained["estimator"], "trained_at": entry.trained["trained_at"],
            "requested_by": entry.trained["requested_by"]}


def version_page(view: ConsoleView, model: str, version: int) -> dict | None:
    entry = view.inventory.version(model, version)
    if entry is None:
        return None
    trained = entry.trained
    deployments = [d for d in view.deployments.history.get(model, [])
                   if d["version"] == version or any(r["version"] == version for r in d["routes"])]
    drift = [r for r in view.drift if r["model"] == model and r["version"] == version]
    signed = [{"kind": e["kind"], "actor": e["actor"], "reason": e["reason"], "at": e["occurred_at"],
               "key": evidence(e).get("signer_key"), "policy_version": e["policy_version"]}
              for e in entry.history]
    return {"model": model, "version": version, "status": entry.status, "aliases": aliases_of(view, model, version),
            "trained": trained, "hyperparameters": content(trained["hyperparameters_json"]),
            "decisions": signed, "deployments": deployments, "drift": drift[-10:],
            "profile": trained.get("feature_profile") or [],
            "fairness": content(trained.get("fairness_json")),
            "importances": sorted((trained.get("importances") or {}).items(), key=lambda kv: -kv[1]),
            "lineage": lineage(view, entry, deployments, drift)}


def lineage(view: ConsoleView, entry: ModelVersion, deployments: list[dict], drift: list[dict]) -> dict:
    """The version's lineage as a layered graph: data batches → validations → training run → version →
    decisions → deployments → drift reports. Nodes carry a label (text) and a kind; edges join layers."""
    trained = entry.trained
    layers: list[list[dict]] = [
        [{"id": f"batch:{b['batch_id']}", "kind": "batch", "label": f"batch {b['batch_id'][:8]}",
          "detail": f"{view.batches.get(b['batch_id'], {}).get('dataset', '')} {b.get('rows', '')} rows"}
         for b in trained["batches"]],
        [{"id": f"validation:{b['batch_id']}", "kind": "validation",
          "label": "passed" if view.validations.get(b["batch_id"], {}).get("passed", True) else "FAILED",
          "detail": view.validations.get(b["batch_id"], {}).get("contract", "validation")}
         for b in trained["batches"]],
        [{"id": f"run:{trained['run_id']}", "kind": "run", "label": f"run {trained['run_id'][:8]}",
          "detail": trained["estimator"]}],
        [{"id": f"version:{entry.model}@{entry.version}", "kind": "version", "label": f"{entry.model} v{entry.version}",
          "detail": entry.status}],
        [{"id": f"decision:{e['event_id']}", "kind": "decision", "label": e["kind"], "detail": e["actor"]}
         for e in entry.history if e["kind"] in ("registered", *DECISIONS, "promoted", "retired")],
        [{"id": f"deployment:{d['deployment_id']}", "kind": "deployment", "label": f"{d['strategy']}",
          "detail": f"{d['deployment_id'][:8]} {d['phase']}"}
         for d in {d["deployment_id"]: d for d in deployments}.values()],
        [{"id": "drift", "kind": "drift", "label": f"{len(drift)} drift reports",
          "detail": f"last drift share {drift[-1]['drift_share']:.0%}" if drift else ""}] if drift else [],
    ]
    layers = [layer for layer in layers if layer]
    nodes, edges = [], []
    for x, layer in enumerate(layers):
        for y, node in enumerate(layer):
            nodes.append({**node, "x": 20 + x * 175, "y": 20 + y * 64})
        if x:
            sources = layers[x - 1]
            if layer[0]["kind"] == "deployment":      # a deployment follows from an approval
                sources = [n for n in sources if n["label"] == "approved"] or sources
            edges += [(a["id"], b["id"]) for a in sources for b in layer]
    where = {n["id"]: n for n in nodes}
    return {"nodes": nodes, "edges": [{"x1": where[a]["x"] + 150, "y1": where[a]["y"] + 22,
                                       "x2": where[b]["x"], "y2": where[b]["y"] + 22} for a, b in edges],
            "width": 20 + len(layers) * 175, "height": 40 + max(len(layer) for layer in layers) * 64}


def experiments(view: ConsoleView, model: str | None) -> dict:
    runs = sorted((r for r in view.runs if model in (None, r["model"])), key=lambda r: r["finished_at"] or 0)
    names = sorted({n for r in runs for n in r["metrics"]})
    cv = sorted({n for r in runs for n in (r["cv_metrics"] or {})})
    rows = [{"run_id": r["run_id"], "model": r["model"], "estimator": r["estimator"],
             "parameters": r["hyperparameters_json"], "metrics": r["metrics"], "cv": r["cv_metrics"] or {},
             "chosen": r["chosen"], "version": r["version"], "finished_at": r["finished_at"], "reason": r["reason"],
             "reproduces": r["reproduces_run_id"], "identical": r["identical"], "differences": r["differences"]}
            for r in runs]
    metric = next((r["metric"] for r in reversed(runs)), None)
    chart = {"$schema": "https://vega.github.io/schema/vega-lite/v5.json", "width": "container", "height": 220,
             "data": {"values": [{"run": r["run_id"][:8], "at": r["finished_at"].isoformat() if r["finished_at"]
                                  else None, "value": r["metrics"].get(metric), "model": r["model"],
                                  "version": f"v{r['version']}" if r["version"] else "not chosen"}
                                 for r in runs if metric in r["metrics"]]},
             "mark": {"type": "point", "filled": True, "size": 70},
             "encoding": {"x": {"field": "at", "type": "temporal", "title": "finished"},
                          "y": {"field": "value", "type": "quantitative", "title": metric,
                                "scale": {"zero": False}},
                          "color": {"field": "version", "type": "nominal"},
                          "tooltip": [{"field": "run"}, {"field": "version"}, {"field": "value"}]}}
    return {"model": model, "models": sorted({r["model"] for r in view.runs}), "runs": rows, "metrics": names,
            "cv_metrics": cv, "metric": metric, "chart": chart,
            "reproductions": [r for r in rows if r["reproduces"]]}


def policy_evidence(view: ConsoleView, entry: ModelVersion) -> dict:
    """What the policy compares for this version: its metrics against the thresholds and the champion."""
    policy = view.inventory.policy(entry.model)
    metrics = entry.trained["metrics"]
    champion = view.inventory.champion(entry.model)
    metric = policy["metric"] or entry.trained["metric"]
    checks = [{"metric": name, "value": metrics.get(name), "limit": limit,
               "higher_is_better": HIGHER_IS_BETTER.get(name, True),
               "meets": metrics.get(name) is not None and (metrics[name] >= limit if HIGHER_IS_BETTER.get(name, True)
                                                          else metrics[name] <= limit)}
              for name, limit in sorted(policy["thresholds"].items())]
    compared = None
    if champion is not None and champion.version != entry.version and metric in champion.trained["metrics"]:
        sign = 1 if HIGHER_IS_BETTER.get(metric, True) else -1
        compared = {"champion": champion.version, "metric": metric,
                    "champion_value": champion.trained["metrics"][metric],
                    "value": metrics.get(metric), "improvement": sign * (metrics.get(metric, float("nan"))
                                                                         - champion.trained["metrics"][metric]),
                    "needed": policy["min_improvement"]}
    return {"policy": policy, "checks": checks, "champion": compared}


def may_approve(view: ConsoleView, entry: ModelVersion, name: str, roles: tuple[str, ...]) -> str | None:
    """Why this person cannot approve or reject the version now (the registry's own rule, plus the role
    the broker's ACLs require), or None when they may."""
    if not set(roles) & set(APPROVER_ROLES):
        return f"{name} has no approver role (roles: {', '.join(roles) or 'none'})"
    return approval_refusal(entry, view.inventory.policy(entry.model), name)


def approvals(view: ConsoleView, name: str, roles: tuple[str, ...]) -> dict:
    waiting = [entry for _, entry in sorted(view.inventory.versions.items()) if entry.status == AWAITING]
    inbox = [{"model": e.model, "version": e.version, "trained": e.trained, "evidence": policy_evidence(view, e),
              "cannot": may_approve(view, e, name, roles),
              "pending": [a for a in view.attempts if a["model"] == e.model and a["version"] == e.version
                          and a["approval_id"] not in view.inventory.causes]}
             for e in waiting]
    refused = sorted((e for v in view.inventory.versions.values() for e in v.history
                      if e["kind"] == "approval-refused"),
                     key=lambda e: e["occurred_at"], reverse=True)
    decided = sorted((e for v in view.inventory.versions.values() for e in v.history if e["kind"] in DECISIONS[:2]),
                     key=lambda e: e["occurred_at"], reverse=True)
    return {"inbox": inbox, "refused": refused[:50], "decided": decided[:20]}


def gates(evidence_: dict) -> dict | None:
    """A deployment step's evidence as a table — one row per variant (traffic, errors, p99, online quality) —
    when it has that shape; None otherwise (the page shows it as JSON)."""
    if not evidence_ or not all(isinstance(v, dict) for v in evidence_.values()):
        return None
    columns = sorted({k for v in evidence_.values() for k in v})
    return {"columns": columns,
            "rows": [{"variant": variant, **values} for variant, values in sorted(evidence_.items())]}


def deployments(view: ConsoleView, roles: tuple[str, ...]) -> dict:
    shown = []
    for model, history in sorted(view.deployments.history.items()):
        current = view.deployments.current.get(model)
        changes = [dict(d, evidence=evidence(d)) for d in history]
        points = [{"at": d["changed_at"].isoformat(), "version": f"v{r['version']}", "variant": r["variant"],
                   "share": r["share"] * 100} for d in history if d["phase"] != "refused" for r in d["routes"]]
        chart = {"$schema": "https://vega.github.io/schema/vega-lite/v5.json", "width": "container", "height": 160,
                 "data": {"values": points}, "mark": {"type": "line", "interpolate": "step-after", "point": True},
                 "encoding": {"x": {"field": "at", "type": "temporal", "title": "time"},
                              "y": {"field": "share", "type": "quantitative", "title": "% of traffic"},
                              "color": {"field": "version", "type": "nominal"},
                              "tooltip": [{"field": "version"}, {"field": "variant"}, {"field": "share"},
                                          {"field": "at", "type": "temporal", "format": "%H:%M:%S"}]}}
        approved = [v for v in view.inventory.latest(model) if v.status == "approved"]
        measured = [r for r in view.drift if r["model"] == model and r.get("performance")]
        shown.append({"model": model, "current": current, "changes": list(reversed(changes))[:30], "chart": chart,
                      "in_progress": current is not None and current["phase"] in ("started", "step"),
                      "gates": evidence(current) if current else {},
                      "gate_table": gates(evidence(current)) if current else None,
                      "variants": {"window": measured[-1]["window_id"], "rows": measured[-1]["performance"]}
                      if measured else None,
                      "approved": [v.version for v in approved]})
    return {"models": shown, "may_operate": bool(set(roles) & set(OPERATOR_ROLES))}


def monitoring(view: ConsoleView, model: str | None, feature: str | None) -> dict:
    reports = sorted((r for r in view.drift if model in (None, r["model"])), key=lambda r: r["window_end"])
    models_ = sorted({r["model"] for r in view.drift})
    model = model or (models_[0] if models_ else None)
    reports = [r for r in reports if r["model"] == model]
    features = sorted({f["feature"] for r in reports for f in r["features"]})
    feature = feature if feature in features else (features[0] if features else None)
    series = [{"at": r["window_end"].isoformat(), "statistic": f["statistic"], "threshold": f["threshold"],
               "version": f"v{r['version']}"}
              for r in reports for f in r["features"] if f["feature"] == feature]
    chart = {"$schema": "https://vega.github.io/schema/vega-lite/v5.json", "width": "container", "height": 200,
             "data": {"values": series},
             "layer": [{"mark": {"type": "line", "point": True},
                        "encoding": {"x": {"field": "at", "type": "temporal", "title": "window closed"},
                                     "y": {"field": "statistic", "type": "quantitative", "title": feature},
                                     "color": {"field": "version", "type": "nominal"}}},
                       {"mark": {"type": "rule", "strokeDash": [4, 4], "color": "#c0392b"},
                        "encoding": {"y": {"aggregate": "max", "field": "threshold", "type": "quantitative"}}}]}
    latest = reports[-1] if reports else None
    distribution = None
    if latest and feature:
        distribution = next(filter(None, (distribution_chart(f) for f in latest["features"]
                                          if f["feature"] == feature)), None)
    alerts = [a for a in reversed(view.alerts) if a["model"] == model][:30]
    return {"model": model, "models": models_, "feature": feature, "features": features, "windows": reports[-30:][::-1],
            "latest": latest, "chart": chart, "distribution": distribution, "alerts": alerts}


def distribution_chart(found: dict) -> dict | None:
    """The training data's shares against the window's, bin by bin, when the report carries both."""
    bins, reference, current = found.get("bins") or [], found.get("reference") or [], found.get("current") or []
    if not bins or len(bins) != len(reference) or len(bins) != len(current):
        return None
    values = [{"bin": label, "order": i, "share": share, "data": which}
              for which, shares in (("training (reference)", reference), ("this window", current))
              for i, (label, share) in enumerate(zip(bins, shares))]
    return {"$schema": "https://vega.github.io/schema/vega-lite/v5.json", "width": "container", "height": 180,
            "data": {"values": values}, "mark": "bar",
            "encoding": {"x": {"field": "bin", "type": "ordinal", "sort": {"field": "order"}, "title": None},
                         "xOffset": {"field": "data"},
                         "y": {"field": "share", "type": "quantitative", "axis": {"format": "%"}, "title": "share"},
                         "color": {"field": "data", "type": "nominal", "title": None},
                         "tooltip": [{"field": "bin"}, {"field": "data"}, {"field": "share", "format": ".1%"}]}}


def kpis(view: ConsoleView, model: str | None, compare) -> dict:
    """Each KPI of the model over time with the serving changes marked, and `compare(observations, history)`
    (kpi_report's before/after and per-variant tests, passed in: it needs scipy)."""
    named = sorted({m for o in view.kpis for k, m in (o["dimensions"] or {}).items() if k == "model"}
                   | set(view.deployments.history))
    model = model or (named[0] if named else None)
    history = view.deployments.history.get(model, []) if model else []
    mine = [o for o in view.kpis if (o["dimensions"] or {}).get("model") in (None, model)]
    shown = []
    for name in sorted({o["name"] for o in mine}):
        observed = [o for o in mine if o["name"] == name]
        values = [{"at": o["window_end"].isoformat(), "value": o["value"],
                   "variant": (o["dimensions"] or {}).get("variant", "all")} for o in observed]
        marks = [{"at": d["changed_at"].isoformat(), "change": f"{d['strategy']} {d['phase']}"}
                 for d in history if d["phase"] in ("completed", "rolled-back", "started")]
        chart = {"$schema": "https://vega.github.io/schema/vega-lite/v5.json", "width": "container", "height": 200,
                 "layer": [{"data": {"values": values}, "mark": {"type": "line", "point": True},
                            "encoding": {"x": {"field": "at", "type": "temporal", "title": "window end"},
                                         "y": {"field": "value", "type": "quantitative", "title": name,
                                               "scale": {"zero": False}},
                                         "color": {"field": "variant", "type": "nominal"}}},
                           {"data": {"values": marks}, "mark": {"type": "rule", "color": "#888", "strokeDash": [2, 3]},
                            "encoding": {"x": {"field": "at", "type": "temporal"},
                                         "tooltip": [{"field": "change"}, {"field": "at"}]}}]}
        shown.append({"name": name, "observations": len(observed), "chart": chart, **compare(observed, history)})
    return {"model": model, "models": named, "kpis": shown}


def as_age(ms) -> str:
    """A duration in milliseconds as the page shows an age: 850 ms, 42 s, 7 min, 3.5 h, 2.0 d."""
    if ms is None:
        return "-"
    seconds = ms / 1000
    if abs(seconds) < 1:
        return f"{ms} ms"
    if abs(seconds) < 120:
        return f"{seconds:.0f} s"
    if abs(seconds) < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h" if abs(seconds) < 172_800 else f"{seconds / 86_400:.1f} d"


def as_time(value) -> str:
    """A datetime, or milliseconds since the epoch (signed heads), as the page shows times (UTC)."""
    if isinstance(value, int):
        value = datetime.fromtimestamp(value / 1000, timezone.utc)
    return (value.strftime("%Y-%m-%d %H:%M:%S") if isinstance(value, datetime)
            else ("-" if value is None else str(value)))
