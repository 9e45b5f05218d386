"""The trainer's handler with in-memory ports: what it does with specs and data it cannot train on."""
import math
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest

from services.trainer.decide import Provenance
from services.trainer.handlers import Trainer
from services.trainer.view import TrainerView
from tests.support.handlers import accept, received

NOW = datetime(2026, 11, 27, tzinfo=timezone.utc)
SPEC = {"model": "m", "dataset": "d", "target": "y", "features": ["a", "b"], "task": "classification",
        "estimator": "LogisticRegression", "metric": "accuracy", "test_size": 0.25, "cv_folds": 0,
        "hyperparameters_json": "{}", "grid_json": "{}", "seed": 1, "batches": "all", "spec_sha256": "s",
        "defined_by": "cli:dana", "monitoring_json": "{}"}
BATCH = {"batch_id": "b1", "dataset": "d", "passed": True, "uri": "file:///d/b1.csv", "sha256": "0" * 64, "rows": 40}


def trainer(frame: pd.DataFrame, tmp_path) -> Trainer:
    view = TrainerView()
    view.apply("mlbus.ModelSpecDefined", SPEC)
    view.apply("mlbus.DataValidated", BATCH)
    return Trainer(view, tmp_path, Provenance("0", None, {}), accept, lambda batches: frame.copy(),
                   clock=lambda: NOW)


def request(request_id: str = "r1") -> dict:
    return {"request_id": request_id, "model": "m", "reason": "manual", "requested_by": "cli:dana",
            "requested_at": NOW, "batch_ids": [], "evidence_json": "{}", "reproduce_run_id": None}


def frame(**columns) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    base = {"a": rng.normal(size=40), "b": rng.normal(size=40), "y": ["p", "q"] * 20}
    return pd.DataFrame({**base, **columns})


def test_sound_data_trains_a_version(tmp_path):
    events = trainer(frame(), tmp_path)(received("mlbus.TrainingRequested", request()))
    assert [e.record for e in events][-1] == "mlbus.ModelTrained"


@pytest.mark.parametrize("columns, says", [
    ({"b": [math.inf] * 40}, "infinity"),
    ({"b": ["text"] * 40}, "could not convert"),
    ({"b": None}, "KeyError"),
])
def test_data_the_estimator_cannot_use_is_a_training_refused_alert_not_a_crash(tmp_path, columns, says):
    data = frame().drop(columns="b") if columns["b"] is None else frame(**columns)
    handler = trainer(data, tmp_path)
    [refused] = handler(received("mlbus.TrainingRequested", request()))
    assert refused.record == "mlbus.Alert" and refused.value["kind"] == "training-refused"
    assert says in refused.value["message"]
    assert handler(received("mlbus.TrainingRequested", request())) == []       # handled: not tried again


def test_a_spec_with_a_hyperparameter_the_estimator_rejects_is_refused_and_not_folded(tmp_path):
    handler = trainer(frame(), tmp_path)
    [refused] = handler(received("mlbus.ModelSpecDefined", {**SPEC, "hyperparameters_json": '{"C": -1}'}))
    assert refused.value["kind"] == "spec-refused" and "'C' parameter" in refused.value["message"]
    assert handler.view.specs["m"]["hyperparameters_json"] == "{}"


def test_a_request_whose_signature_fails_marks_no_id_handled_so_it_cannot_pre_empt_the_real_one(tmp_path):
    from services.bus.signing import Verdict
    from services.trainer.adapters import counted
    real = trainer(frame(), tmp_path)
    refuse = real.verify

    def verify(message, roles):
        return Verdict(refusal="unsigned") if not message.value.get("signature") else refuse(message, roles)
    real.verify = verify
    [alerted] = real(received("mlbus.TrainingRequested", {**request("predicted"), "requested_by": "drift-watcher",
                                                          "reason": "drift"}))
    assert alerted.value["kind"] == "training-refused" and "predicted" not in real.view.handled_requests
    real.view.apply(alerted.record, alerted.value)             # read back at a restart: still marks nothing
    assert "predicted" not in real.view.handled_requests
    events = real(received("mlbus.TrainingRequested", {**request("predicted"), "signature": "s"}, offset=1))
    assert events[-1].record == "mlbus.ModelTrained"
    forged_alert = received("mlbus.Alert", {**alerted.value, "evidence_json": "{}"}, offset=2)
    assert not counted(forged_alert, verify)                     # an alert the trainer did not sign is not folded
