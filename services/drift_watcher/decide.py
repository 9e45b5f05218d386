"""The drift-watcher's decisions, pure: a closed window → a drift report per serving version, the alerts it
raises, and whether sustained drift on the champion asks for a retraining (once per cool-down)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import pandas as pd

from services.bus.edge import content
from services.bus import Event, derive_id
from services.domain import (alert, FAIRNESS_METRICS, fairness_breach, group_fairness, groups_line, Monitoring,
                             training_request as training_request_event)

from .stats import bounded_labels, column_drift

SOURCE = "drift-watcher"


@dataclass(frozen=True)
class ClosedWindow:
    """What one window of a model's production traffic held when it closed."""

    model: str
    seq: int
    start_ms: int
    end_ms: int
    numeric: pd.DataFrame                 # one row per request, one column per numeric feature
    categorical: pd.DataFrame             # one row per request, one column per categorical feature
    predictions: pd.DataFrame             # version, variant, label, score: every prediction in the window
    performance: dict = field(default_factory=dict)   # "version|variant" → [sum, outcomes] (correct or |error|)
    judged: list = field(default_factory=list)        # outcomes with prediction and groups (windows.judged_entry)
    # A random value the window's head was made with, kept in the drift-watcher's own table (its changelog topic
    # no other principal may read): part of every output id, so that nobody can publish an output's id first
    # and have it skipped as already sent; a window closed again after a crash keeps it, and its ids.
    nonce: str = ""

    @property
    def id(self) -> str:
        return f"{self.model}/w{self.seq:06d}"


def drift_report(window: ClosedWindow, trained: dict, champion: bool, config: Monitoring) -> dict:
    """The DriftReport of one version: each feature against its training profile, and its predictions."""
    features = []
    for profile in trained["feature_profile"]:
        source = window.categorical if profile["kind"] == "categorical" else window.numeric
        if profile["name"] in source:
            features += column_drift(profile, source[profile["name"]].to_numpy(), config)
    drifted = sorted({f["feature"] for f in features if f["drifted"]})
    evaluated = {f["feature"] for f in features}
    share = len(drifted) / len(evaluated) if evaluated else 0.0
    version = trained["version"]
    return {"report_id": output_id(window.nonce, "drift-report", window.id, version), "model": window.model,
            "version": version, "window_id": window.id, "window_start": window.start_ms, "window_end": window.end_ms,
            "rows": len(window.numeric), "features": features, "prediction_drift": prediction_drift(window, trained,
                                                                                                   config),
            "drift_share": share, "dataset_drift": bool(evaluated) and share >= config.dataset_share,
            "created_at": window.end_ms, "performance": online_performance(window, trained),
            "fairness_json": json.dumps(online_fairness(window, trained), sort_keys=True),
            "alerting": alerting_features(features, len(evaluated), config), "champion": champion}


def prediction_drift(window: ClosedWindow, trained: dict, config: Monitoring) -> dict | None:
    reference = trained.get("prediction_profile")
    mine = window.predictions[window.predictions["version"] == trained["version"]] \
        if len(window.predictions) else window.predictions
    if reference is None or len(mine) == 0:
        return None
    values = mine["label"] if reference["kind"] == "categorical" else mine["score"]
    entries = column_drift(reference, values.to_numpy(), config)
    return entries[0] if entries else None


def alerting_features(features: list[dict], evaluated: int, config: Monitoring) -> list[str]:
    """Features whose drift survives a Bonferroni correction over the window's features (tests), or whose
    distance crossed its threshold: a chance flag in one of 30 features does not page anyone."""
    corrected = config.alert_alpha / max(evaluated, 1)
    return sorted({f["feature"] for f in features
                   if f["drifted"] and (f["p_value"] is None or f["p_value"] < corrected)})


def online_performance(window: ClosedWindow, trained: dict) -> list[dict]:
    classification = trained["task"] == "classification"
    metric = "accuracy" if classification else "mae"
    performance = []
    for key, (total, outcomes) in sorted(window.performance.items()):
        version, variant = key.split("|", 1)
        if int(version) == trained["version"] and outcomes:
            performance.append({"variant": variant, "metric": metric, "value": total / outcomes,
                                "outcomes": int(outcomes), "baseline": trained["metrics"].get(metric)})
    return performance


def online_fairness(window: ClosedWindow, trained: dict) -> dict:
    """The version's group fairness over the window's outcomes, per attribute it was measured on at training
    (same figures, same positive class, same minimum group size)."""
    at_training = content(trained.get("fairness_json"))
    rows = [j for j in window.judged if j["version"] == trained["version"]]
    if not rows or not at_training:
        return {}
    truth, predicted = [j["truth"] for j in rows], [j["predicted"] for j in rows]
    return {attribute: group_fairness(truth, predicted,
                                      bounded_labels([j["groups"].get(attribute) for j in rows],
                                                     set(report.get("groups", {}))),
                                      trained["task"], report["positive_class"], report["min_group_size"])
            for attribute, report in sorted(at_training.items())}


def output_id(nonce: str, *parts) -> str:
    """An output's id from its cause and the window's nonce (none: a head made before nonces, ids as then)."""
    return derive_id(*parts, nonce) if nonce else derive_id(*parts)


def report_event(report: dict) -> Event:
    return Event("mlbus.DriftReport", value=report, key=report["model"], id=report["report_id"],
                 subject=f"{report['model']}@{report['version']}")


def alerts(report: dict, config: Monitoring, fairness_limits: dict[str, float] | None = None,
           nonce: str = "") -> list[Event]:
    """Dataset drift (critical), significant drift in some features (warning), a performance drop (critical),
    group fairness beyond the policy's limits over the window's outcomes (critical); nonce: the window's."""
    where = f"{report['model']} v{report['version']} in window {report['window_id']}"
    drifted = sorted({f["feature"] for f in report["features"] if f["drifted"]})
    raised = []
    if report["dataset_drift"]:
        raised.append(("drift", "critical", f"dataset drift: {len(drifted)} features drifted {where}: "
                                            f"{', '.join(drifted[:10])}", {"features": drifted}))
    elif report["alerting"]:
        raised.append(("feature-drift", "warning", f"features drifted {where}: {', '.join(report['alerting'])}",
                       {"features": report["alerting"]}))
    for entry in report["performance"]:
        if performance_dropped(entry, config):
            raised.append(("performance", "critical", f"{entry['metric']} {entry['value']:.3f} on "
                                                      f"{entry['outcomes']} outcomes ({entry['variant']}) against "
                                                      f"{entry['baseline']:.3f} on the holdout, {where}", entry))
    fairness = content(report.get("fairness_json"))
    breach = fairness_breach(fairness, fairness_limits or {})
    if breach:
        name, attribute, value, limit = breach
        raised.append(("fairness", "critical", f"{name} for {attribute} is {value:.4g} over this window's outcomes, "
                                               f"the policy allows {'≥' if FAIRNESS_METRICS[name] else '≤'} {limit}: "
                                               f"{groups_line(fairness[attribute], name)}, {where}",
                       {"metric": name, "attribute": attribute, "value": value, "limit": limit,
                        "fairness": fairness[attribute]}))
    return [alert_event(report, kind, severity, message, evidence, nonce)
            for kind, severity, message, evidence in raised]


def performance_dropped(entry: dict, config: Monitoring) -> bool:
    if entry["baseline"] is None or entry["outcomes"] < config.min_outcomes:
        return False
    if entry["metric"] == "accuracy":
        return entry["value"] < entry["baseline"] - config.max_performance_drop
    return entry["value"] > entry["baseline"] * (1 + config.max_performance_drop)


def alert_event(report: dict, kind: str, severity: str, message: str, evidence: dict, nonce: str = "") -> Event:
    return alert(kind, report["model"], message, report["report_id"], report["created_at"], severity=severity,
                 version=report["version"], evidence={"report_id": report["report_id"], **evidence},
                 alert_id=output_id(nonce, report["report_id"], "alert", kind, evidence.get("variant", "")))


@dataclass(frozen=True)
class RetrainState:
    """Per model: the champion being watched, its run of drifted windows, the last drift-triggered request."""

    champion: int | None = None
    drifted_windows: tuple[str, ...] = ()        # report ids of the current run of drifted windows
    last_request_ms: int | None = None


def on_champion_report(state: RetrainState, report: dict, config: Monitoring,
                       nonce: str = "") -> tuple[RetrainState, Event | None, str]:
    """Sustained drift → one training request; within the cool-down the run is counted but nothing is sent.
    nonce: the window's (part of the request's id)."""
    run = state.drifted_windows if state.champion == report["version"] else ()
    run = run + (report["report_id"],) if report["dataset_drift"] else ()
    state = RetrainState(report["version"], run, state.last_request_ms)
    if len(run) < config.retrain_after:
        return state, None, "waiting" if run else "stable"
    now = report["window_end"]
    if state.last_request_ms is not None and now - state.last_request_ms < config.retrain_cooldown_seconds * 1000:
        return state, None, "cooling-down"
    return RetrainState(report["version"], (), now), training_request(report, run, nonce), "retrain"


def training_request(report: dict, run: tuple[str, ...], nonce: str = "") -> Event:
    request_id = output_id(nonce, "drift-retrain", report["window_id"], report["version"])   # reprocessing: same id
    drifted = sorted({f["feature"] for f in report["features"] if f["drifted"]})
    evidence = {"report_ids": list(run), "window_id": report["window_id"], "version": report["version"],
                "drift_share": report["drift_share"], "features": drifted}
    return training_request_event(request_id, report["model"], "drift", SOURCE, report["window_end"], evidence=evidence)


def as_frame(rows: list[dict]) -> pd.DataFrame:
    """Rows of name → value as a frame (NaN where a row lacks a name)."""
    return pd.DataFrame.from_records(rows) if rows else pd.DataFrame()
