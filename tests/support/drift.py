"""Synthetic monitoring scenarios: a trained version with a known training profile, its deployment,
and production traffic (requests with the predictions a scorer would have made) drawn from it."""
from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pandas as pd

from services.bus import Event, Publisher, derive_id
from services.bus.identity import Identity
from services.cli.acts import signed
from services.domain.profile import profile_frame, profile_column

FEATURES = [f"f{i}" for i in range(8)]
NOW = datetime(2026, 11, 23, tzinfo=timezone.utc)


def training_frame(rows: int = 400, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({f: rng.normal(10.0 * i, 1.0 + i / 4, rows) for i, f in enumerate(FEATURES)})


def production(rows: int, seed: int, shift: dict[str, float] | None = None) -> pd.DataFrame:
    """Rows from the training distribution; `shift` moves features by that many of their standard deviations."""
    frame = training_frame(rows, seed)
    for feature, sigmas in (shift or {}).items():
        frame[feature] += sigmas * (1.0 + FEATURES.index(feature) / 4)
    return frame


def version_values(model: str, version: int, monitoring: str, defined_by: str, fairness_json: str = "{}") -> list:
    """(record, id, value) of a spec with its monitoring block, a trained version with its profiles (and the
    fairness it was measured on, by attribute), and a deployment serving it."""
    labels = pd.Series(["yes", "no"] * 100)
    spec = {"model": model, "dataset": "synthetic", "target": "label", "features": FEATURES, "task": "classification",
            "estimator": "LogisticRegression", "metric": "accuracy", "spec_sha256": "0" * 64,
            "defined_by": defined_by, "defined_at": NOW, "monitoring_json": monitoring}
    trained = {
        "model": model, "version": version, "run_id": f"run-{version}", "request_id": f"req-{version}",
        "reason": "manual", "requested_by": "test", "task": "classification", "estimator": "LogisticRegression",
        "hyperparameters_json": "{}", "features": FEATURES, "target": "label", "metric": "accuracy",
        "metrics": {"accuracy": 0.9}, "batches": [], "code_version": "test", "environment": {}, "seed": 0,
        "duration_ms": 1, "artifact_uri": "none", "artifact_sha256": "0" * 64, "trained_at": NOW,
        "feature_profile": profile_frame(training_frame(), reference=True),
        "prediction_profile": profile_column("prediction", labels), "fairness_json": fairness_json}
    deployed = {
        "deployment_id": f"dep-{version}", "model": model, "strategy": "replace", "phase": "completed",
        "routes": [{"version": version, "variant": "champion", "share": 1.0, "served": True}], "reason": "test",
        "actor": "test", "cause_id": "c", "changed_at": NOW, "version": version}
    return [("mlbus.ModelSpecDefined", derive_id(model, "spec"), spec),
            ("mlbus.ModelTrained", derive_id(model, version, "trained"), trained),
            ("mlbus.DeploymentChanged", derive_id(model, version, "deployed"), deployed)]


def publish_version(publisher: Publisher, model: str, version: int, monitoring: str, author: Identity) -> None:
    """version_values published, the spec signed by `author`, a data scientist: nobody folds an unsigned one."""
    for record, event_id, value in version_values(model, version, monitoring, author.name):
        if record == "mlbus.ModelSpecDefined":
            value = signed(publisher.bus, author, record, value)
        publisher.publish(Event(record, key=model, id=event_id, value=value))
    publisher.flush()


def send_traffic(publisher: Publisher, model: str, version: int, frame: pd.DataFrame, prefix: str) -> list[str]:
    """Each row as an InferenceRequest and the champion's Prediction for it."""
    ids = []
    for i, row in enumerate(frame.to_dict("records")):
        request_id = f"{prefix}-{i:06d}"
        entity = f"entity-{i % 97}"
        publisher.publish(Event("mlbus.InferenceRequest", key=entity, id=derive_id(request_id), value={
            "request_id": request_id, "entity_id": entity, "model": model, "features": row, "categories": {},
            "sent_at": NOW}))
        publisher.publish(Event("mlbus.Prediction", key=entity, id=derive_id(request_id, "p"), value={
            "prediction_id": derive_id(request_id, "p"), "request_id": request_id, "entity_id": entity,
            "model": model, "version": version, "variant": "champion", "served": True,
            "label": "yes" if i % 2 else "no", "score": 0.8, "probabilities": {}, "latency_ms": 1.0,
            "deployment_id": f"dep-{version}", "error": None, "predicted_at": NOW}))
        ids.append(request_id)
    publisher.flush()
    return ids
