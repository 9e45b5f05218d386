"""Answers from audit.log, pure: why a prediction was what it was, the state at a moment, the history.

Input is the decoded audit log (services/domain/audited.Audited, in sequence order); every answer names
the audit sequence numbers it stands on, so it can be checked against the verified chain."""
from __future__ import annotations

from datetime import datetime, timedelta

from services.bus.projections.deployments import Deployments
from services.bus.projections.inventory import INVENTORY_RECORDS, Inventory, inventory_from

from .audit import EPOCH
from .audited import Audited, place

TRAFFIC = ("mlbus.InferenceRequest", "mlbus.Prediction", "mlbus.Outcome", "mlbus.KpiObserved",
           "mlbus.SchemaDefinition", "mlbus.DriftReport")
DRIFT_ALERTS = ("drift", "feature-drift", "performance")


class Index:
    """The decoded log grouped once by what explain looks things up by (thousands of explanations stay fast)."""

    KEYS = {"mlbus.Prediction": ("request_id",), "mlbus.InferenceRequest": ("request_id",),
            "mlbus.DeploymentChanged": ("deployment_id",), "mlbus.ModelTrained": ("model", "version"),
            "mlbus.TrainingRun": ("run_id",), "mlbus.ModelLifecycle": ("model", "version"),
            "mlbus.ApprovalSubmitted": ("model", "version"), "mlbus.DataValidated": ("batch_id",),
            "mlbus.PromotionPolicyDefined": ("model",), "mlbus.Alert": ("model", "version"),
            "mlbus.BatchScored": ("scoring_id",), "mlbus.FeatureViewDefined": ("view", "version")}

    def __init__(self, events: list[Audited]):
        self.found: dict[tuple, list[Audited]] = {}
        for event in events:
            fields = self.KEYS.get(event.record or "")
            if fields and event.value is not None:
                key = (event.record, *(event.value.get(f) for f in fields))
                self.found.setdefault(key, []).append(event)

    def of(self, record: str, *key) -> list[Audited]:
        return self.found.get((record, *key), [])


def value_of(event: Audited) -> dict:
    """The value of a record the answers look at: decoded by its schema (bytes no schema reads are only counted)."""
    if event.value is None:
        raise ValueError(f"audit record #{event.place} on {event.topic} was not decoded")
    return event.value


BULKY = ("feature_profile", "prediction_profile", "profile")     # column profiles: evidence, not explanation


def cited(event: Audited | None) -> dict | None:
    """The event's fields (column profiles left out) with the audit sequence number it stands on."""
    if event is None:
        return None
    # A sharded log's sequences count per shard: the shard and the place (`k:sequence`) name the record; a v1
    # log's answers stay as they were.
    where = {"audit_shard": event.shard, "audit_place": event.place} if event.sharded else {}
    found = {"audit_sequence": event.sequence, **where, "at": event.at,
             **{k: v for k, v in (event.shown() or {}).items() if k not in BULKY}}
    if event.personal:
        found["personal_data"] = event.personal
    if event.erasure:
        found["erased"] = erased(event.erasure)
        if event.sharded:
            found["erased"] |= {"audit_shard": event.erasure_shard,
                                "audit_place": place(event.erasure_shard, event.erasure.audit_sequence, True)}
    return found


def erased(erasure) -> dict:
    """What `audit forget` recorded about a subject's personal data being erased."""
    return {"subject": erasure.subject, "at": EPOCH + timedelta(milliseconds=erasure.at_ms), "by": erasure.by,
            "reason": erasure.reason, "audit_sequence": erasure.audit_sequence}


def explain(index: Index, request_id: str) -> dict | None:
    """The whole chain behind one request's answer, or None when audit.log has no prediction for it."""
    predictions = index.of("mlbus.Prediction", request_id)
    served = next((p for p in predictions if value_of(p)["served"]), None)
    if served is None:
        return None
    p = value_of(served)
    model, version = p["model"], p["version"]
    request = next(iter(index.of("mlbus.InferenceRequest", request_id)), None)
    deployment = [d for d in index.of("mlbus.DeploymentChanged", p["deployment_id"]) if d.at <= served.at]
    trained = next(iter(index.of("mlbus.ModelTrained", model, version)), None)
    batches = [b["batch_id"] for b in value_of(trained)["batches"]] if trained else []
    runs = index.of("mlbus.TrainingRun", value_of(trained)["run_id"]) if trained else []
    alerts = [a for a in index.of("mlbus.Alert", model, version)
              if value_of(a)["kind"] in DRIFT_ALERTS and a.at >= served.at]
    policies = [e for e in index.of("mlbus.PromotionPolicyDefined", model) if e.at <= served.at]
    return {"request_id": request_id, "prediction": cited(served), "request": cited(request),
            "shadow_predictions": [cited(x) for x in predictions if not value_of(x)["served"]],
            "deployment": cited(deployment[-1]) if deployment else None,
            "model_version": cited(trained), "training_run": cited(runs[0]) if runs else None,
            "data": [cited(v) for b in batches for v in index.of("mlbus.DataValidated", b)],
            "decisions": [cited(e) for e in index.of("mlbus.ModelLifecycle", model, version)],
            "approvals": [cited(a) for a in index.of("mlbus.ApprovalSubmitted", model, version)],
            "policy": cited(policies[-1]) if policies else None, "later_drift_alerts": [cited(a) for a in alerts],
            "ensemble_members": ensemble_members(index, value_of(trained) if trained else {}, p),
            "feature_views": feature_views(index, p)}


def feature_views(index: Index, prediction: dict) -> list[dict]:
    """The definitions (features.views) of the view versions the scorer looked features up in for a prediction."""
    looked = prediction.get("lookups")
    named = sorted({(x["view"], x["version"]) for x in looked}) if isinstance(looked, list) else []
    return [{"view": view, "version": version,
             "definition": cited(next(iter(index.of("mlbus.FeatureViewDefined", view, version)), None))}
            for view, version in named]


def ensemble_members(index: Index, trained: dict, prediction: dict) -> list[dict]:
    """An ensemble version's members: pinned version and artifact hash, weight, what each answered this
    request, and the member's own ModelTrained record (empty for a single estimator)."""
    answers = {(m["model"], m["version"]): m for m in prediction.get("members") or []}
    return [{**{k: m[k] for k in ("model", "version", "artifact_sha256")}, "weight": m["weight"],
             "answered": answers.get((m["model"], m["version"])),
             "model_version": cited(next(iter(index.of("mlbus.ModelTrained", m["model"], m["version"])), None))}
            for m in trained.get("members") or []]


def explain_scoring(index: Index, scoring_id: str) -> dict | None:
    """Offline predictions (`mlbus score --batch`): the scoring act and the version behind it, or None."""
    found = index.of("mlbus.BatchScored", scoring_id)
    if not found:
        return None
    scoring = found[0]
    model, version = value_of(scoring)["model"], value_of(scoring)["version"]
    trained = next(iter(index.of("mlbus.ModelTrained", model, version)), None)
    batches = [b["batch_id"] for b in value_of(trained)["batches"]] if trained else []
    policies = [e for e in index.of("mlbus.PromotionPolicyDefined", model) if e.at <= scoring.at]
    return {"scoring_id": scoring_id, "batch_scoring": cited(scoring), "model_version": cited(trained),
            "training_run": cited(next(iter(index.of("mlbus.TrainingRun", value_of(trained)["run_id"])), None))
            if trained else None,
            "data": [cited(v) for b in batches for v in index.of("mlbus.DataValidated", b)],
            "decisions": [cited(e) for e in index.of("mlbus.ModelLifecycle", model, version) if e.at <= scoring.at],
            "approvals": [cited(a) for a in index.of("mlbus.ApprovalSubmitted", model, version)],
            "policy": cited(policies[-1]) if policies else None}


STATE_RECORDS = (*INVENTORY_RECORDS, "mlbus.DeploymentChanged", "mlbus.Alert")     # what state_at folds


def state_at(events: list[Audited], until: datetime) -> tuple[Inventory, Deployments, list[dict]]:
    """The inventory, the deployments and the open drift alerts as the services had them at `until`:
    the same folds the services run, over what audit.log holds up to then (in the registry's order:
    policies, versions, decisions — a rebuild does not depend on how topics interleaved)."""
    before = [(e.record, e.value) for e in events if e.at <= until and e.record is not None and e.value is not None]
    inventory, deployments = inventory_from(before), Deployments()
    for record, value in before:
        deployments.apply(record, value)
    serving = {(m, r["version"]) for m, d in deployments.current.items() for r in d["routes"]}
    alerts = [value for record, value in before if record == "mlbus.Alert" and value["kind"] in DRIFT_ALERTS
              and (value["model"], value["version"]) in serving]
    return inventory, deployments, alerts


def timeline(events: list[Audited], model: str | None) -> list[tuple[Audited | None, str]]:
    """Decisions one per line; traffic between them summed up ("… 300 predictions")."""
    lines: list[tuple[Audited | None, str]] = []
    traffic: dict[str, int] = {}
    for event in events:
        if model and (event.value or {}).get("model", model) != model:
            continue
        if event.record in TRAFFIC or event.record is None or is_notice(event):
            name = "info alert" if is_notice(event) else (event.record or f"{event.topic} message").removeprefix(
                "mlbus.")
            traffic[name] = traffic.get(name, 0) + 1
            continue
        if traffic:
            lines.append((None, "… " + ", ".join(f"{n} {k}" for k, n in traffic.items())))
            traffic = {}
        lines.append((event, summary(event)))
    if traffic:
        lines.append((None, "… " + ", ".join(f"{n} {k}" for k, n in traffic.items())))
    return lines


def is_notice(event: Audited) -> bool:
    """An informational alert (e.g. a user service's triage notes) is traffic, not a decision."""
    return event.record == "mlbus.Alert" and value_of(event)["severity"] == "info"


def summary(event: Audited) -> str:
    v = value_of(event)
    name = (event.record or "").removeprefix("mlbus.")       # decisions only: records a schema read
    details = {
        "DataBatch": lambda: f"batch {v['batch_id'][:8]} of {v['dataset']}: {v.get('rows')} rows",
        "DataValidated": lambda: f"batch {v['batch_id'][:8]} {'passed' if v['passed'] else 'FAILED'}",
        "ModelSpecDefined": lambda: f"spec of {v['model']} ({v['estimator']}, metric {v['metric']})",
        "TrainingRequested": lambda: f"train {v['model']}: {v['reason']}",
        "ModelTrained": lambda: f"{v['model']} v{v['version']} trained, {v['metric']} "
                                f"{v['metrics'].get(v['metric'], float('nan')):.4f}",
        "TrainingRun": lambda: f"run {v['run_id'][:8]} of {v['model']}",
        "PromotionPolicyDefined": lambda: f"policy of {v['model']}",
        "ApprovalSubmitted": lambda: f"{v['decision']} of {v['model']} v{v['version']}: {v.get('reason', '')}",
        "ModelLifecycle": lambda: f"{v['model']} v{v['version']} {v['kind']}: {v.get('reason', '')}",
        "DeploymentRequested": lambda: f"deploy {v['model']} v{v['version']} ({v['strategy']}) {v['action']}",
        "DeploymentChanged": lambda: f"{v['model']} {v['phase']} {v['strategy']}: " + " ".join(
            f"v{r['version']}:{r['share']:.0%}" for r in v["routes"]),
        "Alert": lambda: f"[{v['severity']}] {v['kind']}: {v['message']}",
        "BatchScored": lambda: f"{v['input_rows']} rows scored offline by {v['model']} v{v['version']} "
                               f"for {v['requested_by']}",
    }
    return f"{name}: {details[name]()}" if name in details else name
