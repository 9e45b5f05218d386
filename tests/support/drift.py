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


def publish_version(publisher: Publisher, model: str, version: int, monitoring: str, author: Identity) -> None:
    """A spec with its monitoring block (signed by `author`, a data scientist: nobody folds an unsigned one), a
    trained version with its profiles, and a deployment serving it."""
    labels = pd.Series(["yes", "no"] * 100)
    spec = {"model": model, "dataset": "synthetic", "target": "label", "features": FEATURES, "task": "classification",
            "estimator": "LogisticRegression", "metric": "accuracy", "spec_sha256": "0" * 64,
            "defined_by": author.name, "defined_at": NOW, "monitoring_json": monitoring}
    publisher.publish(Event("mlbus.ModelSpecDefined", key=model, id=derive_id(model, "spec"),
                            value=signed(publisher.bus, author, "mlbus.ModelSpecDefined", spec)))
    publisher.publish(Event("mlbus.ModelTrained", key=model, id=derive_id(model, version, "trained"), value={
        "model": model, "version": version, "run_id": f"run-{version}", "request_id": f"req-{version}",
        "reason": "manual", "requested_by": "test", "task": "classification", "estimator": "LogisticRegression",
        "hyperparameters_json": "{}", "features": FEATURES, "target": "label", "metric": "accuracy",
        "metrics": {"accuracy": 0.9}, "batches": [], "code_version": "test", "environment": {}, "seed": 0,
        "duration_ms": 1, "artifact_uri": "none", "artifact_sha256": "0" * 64, "trained_at": NOW,
        "feature_profile": profile_frame(training_frame(), reference=True),
        "prediction_profile": profile_column("prediction", labels)}))
    publisher.publish(Event("mlbus.DeploymentChanged", key=model, id=derive_id(model, version, "deployed"), value={
        "deployment_id": f"dep-{version}", "model": model, "strategy": "replace", "phase": "completed",
        "routes": [{"version": version, "variant": "champion", "share": 1.0, "served": True}], "reason": "test",
        "actor": "test", "cause_id": "c", "changed_at": NOW, "version": version}))
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
