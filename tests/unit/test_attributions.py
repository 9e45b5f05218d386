"""Attributions of one prediction add up, with their baseline, to the model's own output: exactly for linear
models (log-odds or the target's unit), by TreeSHAP for trees (a forest's probability to 1e-6); one-hot columns
are summed back to the feature the request carried; an ensemble gets the documented non-additive fallback."""
import math

import numpy as np
import pytest

from services.cli.sample_data import insurance_claims
from services.domain import Ensemble, member_record, profile_frame, snapshot_frame
from services.domain.attributions import attribution, reference_row
from services.trainer.training import build_model

FEATURES = ["age", "tenure_months", "claim_amount", "prior_claims", "region", "channel", "vehicle"]
CATEGORIES = ("region", "channel", "vehicle")


@pytest.fixture(scope="module")
def claims():
    frame = insurance_claims(600, seed=3)
    return snapshot_frame(frame, FEATURES, CATEGORIES), frame


def fitted(estimator: str, claims, target: str = "fraud", params: dict | None = None):
    x, frame = claims
    y = frame[target].astype(float) if target != "fraud" else frame[target]
    return build_model(estimator, params or {}, 0, FEATURES, CATEGORIES).fit(x, y)


def total(found: dict) -> float:
    return found["baseline"] + sum(found["contributions"].values())


@pytest.mark.parametrize("row", [0, 7, 123])
def test_a_logistic_regression_adds_up_to_its_log_odds_exactly(claims, row):
    model = fitted("LogisticRegression", claims, params={"max_iter": 1000})
    x = claims[0].iloc[[row]]
    found = attribution(model, x, "classification")
    assert found["unit"] == "log-odds" and found["explained_class"] == "yes" and found["additive"]
    assert abs(total(found) - model.decision_function(x)[0]) < 1e-9
    assert abs(1 / (1 + math.exp(-found["output"])) - model.predict_proba(x)[0][1]) < 1e-12
    assert set(found["contributions"]) == set(FEATURES)           # region_north … summed into region


@pytest.mark.parametrize("row", [0, 7, 123])
def test_a_random_forests_treeshap_adds_up_to_its_probability(claims, row):
    model = fitted("RandomForestClassifier", claims, params={"n_estimators": 25})
    x = claims[0].iloc[[row]]
    found = attribution(model, x, "classification")
    assert found["method"].startswith("TreeSHAP") and found["unit"] == "probability"
    assert abs(total(found) - model.predict_proba(x)[0][1]) < 1e-6


@pytest.mark.parametrize("estimator, unit", [("GradientBoostingClassifier", "log-odds"),
                                             ("DecisionTreeClassifier", "probability")])
def test_other_tree_classifiers_add_up_in_their_own_unit(claims, estimator, unit):
    model = fitted(estimator, claims)
    x = claims[0].iloc[[5]]
    found = attribution(model, x, "classification")
    assert found["unit"] == unit and abs(total(found) - found["output"]) < 1e-6
    expected = model.decision_function(x)[0] if unit == "log-odds" else model.predict_proba(x)[0][1]
    assert abs(found["output"] - expected) < 1e-9


@pytest.mark.parametrize("estimator", ["Ridge", "RandomForestRegressor"])
def test_regressors_add_up_to_the_prediction(claims, estimator):
    model = fitted(estimator, claims, target="claim_amount", params={"n_estimators": 10} if "Forest" in estimator else {})
    x = claims[0].iloc[[11]]
    found = attribution(model, x, "regression")
    assert found["unit"] == "target" and abs(total(found) - model.predict(x)[0]) < 1e-6


def test_an_ensemble_gets_the_documented_baseline_substitution(claims):
    members = [fitted("LogisticRegression", claims, params={"max_iter": 1000}), fitted("DecisionTreeClassifier", claims)]
    records = [member_record({"model": f"m{i}", "version": 1, "artifact_uri": "u", "artifact_sha256": "s",
                              "features": FEATURES, "categorical_features": list(CATEGORIES)}, 1.0) for i in range(2)]
    ensemble = Ensemble(records, members, "soft-vote")
    x, frame = claims
    profile = profile_frame(x)
    found = attribution(ensemble, x.iloc[[9]], "classification", profile)
    assert not found["additive"] and found["method"].startswith("baseline substitution")
    assert found["output"] == pytest.approx(ensemble.predict_proba(x.iloc[[9]])[0][1])
    reference = reference_row(x.iloc[[9]], profile)
    assert found["baseline"] == pytest.approx(ensemble.predict_proba(reference)[0][1])
    assert reference["channel"].iloc[0] == frame["channel"].mode()[0]
    assert reference["age"].iloc[0] == pytest.approx(np.quantile(frame["age"], 0.5))
