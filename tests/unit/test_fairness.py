"""Fairness: the figures are fairlearn's own (to 1e-9), small groups are reported not judged, a policy's fairness
thresholds reject a version naming the metric and the groups, and the trainer records the figures and the
global importances for a planted bias — and not for the same data without it."""
import collections
import json
from datetime import datetime, timezone

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from fairlearn.metrics import (MetricFrame, demographic_parity_difference, demographic_parity_ratio,
                               equalized_odds_difference, selection_rate)

from services.bus.projections.inventory import Inventory
from services.cli.sample_data import loan_applications
from services.domain.fairness import fairness_breach, group_fairness
from services.registry.decide import on_trained
from services.trainer.decide import Provenance
from services.trainer.handlers import Trainer
from services.trainer.view import TrainerView
from tests.support.handlers import accept, received

NOW = datetime(2026, 11, 27, tzinfo=timezone.utc)


def predictions(seed: int, rows: int = 600):
    rng = np.random.default_rng(seed)
    groups = rng.choice(["F", "M", "X"], rows, p=[0.46, 0.5, 0.04])
    truth = rng.choice(["no", "yes"], rows)
    predicted = np.where(rng.random(rows) < np.where(groups == "F", 0.25, 0.5), "yes", "no")
    return truth, predicted, groups


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_figures_are_fairlearns_own_over_the_groups_large_enough(seed):
    truth, predicted, groups = predictions(seed)
    report = group_fairness(truth, predicted, groups, "classification", "yes", min_group_size=40)
    judged = groups != "X"                                  # ~24 rows: reported, not judged
    y_true, y_pred = (truth == "yes").astype(int)[judged], (predicted == "yes").astype(int)[judged]
    assert report["judged_groups"] == ["F", "M"] and report["groups"]["X"]["count"] < 40
    assert abs(report["demographic_parity_difference"]
               - demographic_parity_difference(y_true, y_pred, sensitive_features=groups[judged])) < 1e-9
    assert abs(report["demographic_parity_ratio"]
               - demographic_parity_ratio(y_true, y_pred, sensitive_features=groups[judged])) < 1e-9
    assert abs(report["equalized_odds_difference"]
               - equalized_odds_difference(y_true, y_pred, sensitive_features=groups[judged])) < 1e-9
    rates = MetricFrame(metrics=selection_rate, y_true=(truth == "yes").astype(int),
                        y_pred=(predicted == "yes").astype(int), sensitive_features=groups).by_group
    assert all(abs(report["groups"][g]["selection_rate"] - rates[g]) < 1e-9 for g in "FMX")


def test_with_fewer_than_two_groups_large_enough_nothing_is_judged():
    truth, predicted, groups = predictions(0, rows=60)
    report = group_fairness(truth, predicted, groups, "classification", "yes", min_group_size=40)
    assert "demographic_parity_difference" not in report and set(report["groups"]) == {"F", "M", "X"}
    assert fairness_breach({"sex": report}, {"demographic_parity_difference": 0.0}) is None


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.tuples(st.sampled_from(["yes", "no"]), st.sampled_from(["yes", "no"]),
                               st.sampled_from(["a", "b", None])), min_size=1, max_size=12),
       task=st.sampled_from(["binary", "multiclass", "regression"]), min_group_size=st.integers(1, 4))
def test_any_number_of_rows_from_one_is_reported_group_by_group(rows, task, min_group_size):
    """The drift-watcher judges a window's outcomes as they come: one outcome with its groups is a window's
    whole fairness (fairlearn squeezed an array of one row to none and raised, closing no window after it)."""
    truth, predicted, groups = (list(column) for column in zip(*rows))
    if task == "regression":
        truth, predicted = [float(t == "yes") for t in truth], [0.5 if p == "yes" else 0.0 for p in predicted]
    report = group_fairness(truth, predicted, groups, "regression" if task == "regression" else "classification",
                            "yes" if task == "binary" else None, min_group_size)
    sizes = collections.Counter("(missing)" if g is None else g for g in groups)
    assert {g: figures["count"] for g, figures in report["groups"].items()} == sizes
    assert report["judged_groups"] == sorted(g for g, n in sizes.items() if n >= min_group_size)


def test_regression_and_multiclass_report_the_figures_that_apply():
    groups = np.array(["a", "b"] * 50)
    regression = group_fairness(np.arange(100.0), np.arange(100.0) + np.where(groups == "a", 1.0, 3.0), groups,
                                "regression")
    assert regression["mae_difference"] == pytest.approx(2.0) and "demographic_parity_difference" not in regression
    three = group_fairness(np.array(["x", "y", "z"] * 40), np.array(["x"] * 120), np.array(["a", "b", "c"] * 40),
                           "classification")
    assert "accuracy_difference" in three and "selection_rate" not in three["groups"]["a"]


POLICY = {"model": "loan", "policy_version": 1, "thresholds": {}, "metric": "roc_auc", "min_improvement": 0.0,
          "human_approval": False, "approvers": [], "four_eyes": True,
          "fairness": {"demographic_parity_difference": 0.1, "demographic_parity_ratio": 0.8}}


def version(fairness: dict) -> dict:
    return {"model": "loan", "version": 1, "run_id": "r1", "metrics": {"roc_auc": 0.8}, "metric": "roc_auc",
            "artifact_sha256": "a" * 64, "requested_by": "trainer", "fairness_json": json.dumps(fairness)}


def test_a_policy_rejects_a_version_beyond_a_fairness_threshold_naming_metric_and_groups():
    truth, predicted, groups = predictions(0)
    report = {"sex": group_fairness(truth, predicted, groups, "classification", "yes")}
    inventory = Inventory()
    inventory.apply("mlbus.PromotionPolicyDefined", POLICY)
    trained = version(report)
    inventory.apply("mlbus.ModelTrained", trained)
    registered, rejected = on_trained(inventory, trained, "c1", NOW)
    assert rejected.value["kind"] == "rejected"
    reason = rejected.value["reason"]
    assert reason.startswith("demographic_parity_difference for sex is") and "≤ 0.1" in reason
    assert "F 0." in reason and "M 0." in reason and "rows)" in reason
    assert json.loads(rejected.value["evidence_json"])["fairness"]["sex"]["judged_groups"] == ["F", "M"]   # X: 24 rows


def test_a_version_within_the_thresholds_or_without_a_report_passes():
    rng = np.random.default_rng(3)
    groups, truth = rng.choice(["F", "M"], 2000), rng.choice(["no", "yes"], 2000)
    fair = {"sex": group_fairness(truth, truth, groups, "classification", "yes")}
    for report in (fair, {}):
        inventory = Inventory()
        inventory.apply("mlbus.PromotionPolicyDefined", POLICY)
        trained = version(report)
        inventory.apply("mlbus.ModelTrained", trained)
        assert [e.value["kind"] for e in on_trained(inventory, trained, "c1", NOW)] == ["registered", "approved"]


SPEC = {"model": "loan", "dataset": "loans", "target": "approved", "task": "classification",
        "features": ["income", "debt_ratio", "years_employed", "loan_amount", "sex"], "categorical_features": ["sex"],
        "sensitive_features": ["sex"], "estimator": "LogisticRegression", "metric": "roc_auc", "test_size": 0.3,
        "cv_folds": 0, "hyperparameters_json": '{"max_iter": 1000}', "grid_json": "{}", "seed": 3, "batches": "all",
        "spec_sha256": "s", "defined_by": "cli:dana", "monitoring_json": "{}"}


@pytest.mark.parametrize("bias, unfair", [(1.5, True), (0.0, False)])
def test_the_trainer_records_fairness_per_group_and_importances(tmp_path, bias, unfair):
    view = TrainerView()
    view.apply("mlbus.ModelSpecDefined", SPEC)
    view.apply("mlbus.DataValidated", {"batch_id": "b1", "dataset": "loans", "passed": True, "uri": "file:///x.csv",
                                       "sha256": "0" * 64, "rows": 3000})
    frame = loan_applications(3000, seed=1, bias=bias)
    handler = Trainer(view, tmp_path, Provenance("0", None, {}), accept, lambda batches: frame.copy(), clock=lambda: NOW)
    *runs, trained = handler(received("mlbus.TrainingRequested", {
        "request_id": "r1", "model": "loan", "reason": "manual", "requested_by": "cli:dana", "requested_at": NOW,
        "batch_ids": [], "evidence_json": "{}", "reproduce_run_id": None}))
    report = json.loads(trained.value["fairness_json"])["sex"]
    assert report["positive_class"] == "yes" and report["judged_groups"] == ["F", "M"]
    assert (report["demographic_parity_difference"] > 0.1) is unfair
    assert json.loads(runs[0].value["fairness_json"]) == {"sex": report}
    importances = trained.value["importances"]
    assert set(importances) == set(SPEC["features"]) and importances["income"] > 0.01
    assert (importances["sex"] > 0.01) is unfair
