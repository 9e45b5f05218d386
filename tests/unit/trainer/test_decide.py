"""The trainer's pure decisions and its deterministic fit."""
import json
from datetime import datetime, timezone

from services.trainer.decide import (best_run, plan_training, reproduction_differences, requests_for_new_data)
from services.trainer.training import fit_and_evaluate, split
from services.trainer.view import TrainerView
from tests.support.datasets import good

NOW = datetime(2026, 11, 23, tzinfo=timezone.utc)
SPEC = {"model": "m", "dataset": "d", "target": "diagnosis", "features": ["mean_radius", "mean_texture"],
        "task": "classification", "estimator": "LogisticRegression", "hyperparameters_json": '{"max_iter": 500}',
        "grid_json": '{"C": [0.1, 1.0]}', "metric": "roc_auc", "test_size": 0.25, "cv_folds": 3, "seed": 7,
        "spec_sha256": "s", "defined_by": "t", "defined_at": NOW, "batches": "all"}


def validated(batch_id: str, passed: bool = True) -> dict:
    return {"validation_id": f"v-{batch_id}", "batch_id": batch_id, "dataset": "d", "uri": f"file:///{batch_id}.csv",
            "sha256": "00", "rows": 10, "passed": passed}


def view_with(*batches: dict) -> TrainerView:
    view = TrainerView()
    view.apply("mlbus.ModelSpecDefined", SPEC)
    for batch in batches:
        view.apply("mlbus.DataValidated", batch)
    return view


def test_a_passed_batch_requests_one_training_per_model_of_its_dataset():
    view = view_with()
    [request] = requests_for_new_data(view, validated("b1"), NOW)
    assert request.value["reason"] == "new-data" and request.value["model"] == "m"
    assert json.loads(request.value["evidence_json"])["batch_id"] == "b1"
    view.apply(request.record, request.value)
    assert requests_for_new_data(view, validated("b1"), NOW) == []           # redelivered: asked once
    assert requests_for_new_data(view, validated("b2", passed=False), NOW) == []


def test_a_plan_expands_the_grid_and_takes_the_next_version():
    view = view_with(validated("b1"), validated("b2"))
    view.apply("mlbus.ModelTrained", {"model": "m", "version": 3, "request_id": "old"})
    plan = plan_training(view, {"request_id": "r", "model": "m", "batch_ids": [], "reproduce_run_id": None})
    assert plan.version == 4 and [b["batch_id"] for b in plan.batches] == ["b1", "b2"]
    assert plan.grid == [{"max_iter": 500, "C": 0.1}, {"max_iter": 500, "C": 1.0}]
    assert len(set(plan.run_ids)) == 2


def test_plans_that_cannot_run_say_why():
    assert "no spec" in plan_training(TrainerView(), {"request_id": "r", "model": "x", "batch_ids": []})
    assert "no batch" in plan_training(view_with(), {"request_id": "r", "model": "m", "batch_ids": []})
    assert "not passed" in plan_training(view_with(validated("b1")), {"request_id": "r", "model": "m",
                                                                      "batch_ids": ["zz"]})


def test_latest_n_selects_the_newest_batches():
    view = view_with(validated("b1"), validated("b2"), validated("b3"))
    view.specs["m"] = {**SPEC, "batches": "latest:2"}
    plan = plan_training(view, {"request_id": "r", "model": "m", "batch_ids": []})
    assert [b["batch_id"] for b in plan.batches] == ["b2", "b3"]


def test_the_best_run_follows_the_metric_direction():
    results = [{"metrics": {"roc_auc": 0.9, "rmse": 2.0}, "cv_metrics": {"roc_auc": 0.8, "rmse": 3.0}},
               {"metrics": {"roc_auc": 0.8, "rmse": 1.0}, "cv_metrics": {"roc_auc": 0.9, "rmse": 1.0}}]
    assert best_run(results, "roc_auc") == 1 and best_run(results, "rmse") == 1


def test_folding_the_same_events_twice_changes_nothing():
    view = view_with(validated("b1"), validated("b1"))
    assert len(view.passed_batches["d"]) == 1


def test_a_fit_is_deterministic_for_the_same_data_params_and_seed():
    data = split(good(), SPEC["features"], "diagnosis", "classification", 0.25, seed=7)
    _, first = fit_and_evaluate(data, "RandomForestClassifier", {"n_estimators": 10}, "classification", "roc_auc", 3, 7)
    _, second = fit_and_evaluate(data, "RandomForestClassifier", {"n_estimators": 10}, "classification", "roc_auc", 3, 7)
    assert first["predictions_sha256"] == second["predictions_sha256"]
    assert first["metrics"] == second["metrics"] and first["cv_metrics"] == second["cv_metrics"]
    assert set(first["metrics"]) == {"accuracy", "precision", "recall", "f1", "roc_auc"}


def test_reproduction_differences_name_what_changed():
    original = {"predictions_sha256": "a", "metrics": {"f1": 0.9}, "artifact_sha256": "x"}
    assert reproduction_differences(original, {"predictions_sha256": "a", "metrics": {"f1": 0.9},
                                               "artifact_sha256": "x"}) == []
    differences = reproduction_differences(original, {"predictions_sha256": "b", "metrics": {"f1": 0.8},
                                                      "artifact_sha256": "y"})
    assert differences == ["holdout predictions differ", "f1: 0.9 then, 0.8 now", "artifact bytes differ (skops names its array files by object id)"]
