"""The scorer's pure parts: a classifier's label taken from its probabilities must equal predict() for every
classifier mlbus allows; the delivery mode setting."""
import numpy as np
import pandas as pd
import pytest

from services.bus import ConfigError
from services.domain.estimators import ESTIMATORS, estimator_class
from services.bus.settings import Settings
from services.domain import predict
from services.scorer.scorer import DELIVERY

CLASSIFIERS = [name for name, (_, task) in ESTIMATORS.items() if task == "classification"]


@pytest.mark.parametrize("name", CLASSIFIERS)
@pytest.mark.parametrize("classes", [2, 3])
def test_label_from_probabilities_equals_predict(name, classes):
    rng = np.random.default_rng(1)
    features = pd.DataFrame(rng.normal(size=(400, 5)), columns=[f"f{i}" for i in range(5)])
    target = np.digitize(features["f0"] + features["f1"], np.linspace(-1, 1, classes - 1)).astype(str)
    model = estimator_class(name)().fit(features, target)
    labels, probabilities, class_names = predict(model, features, "classification")
    assert (labels == model.predict(features)).all()
    assert probabilities.shape == (400, classes) and class_names == sorted(set(target))


def test_regression_has_no_probabilities():
    features = pd.DataFrame({"x": [0.0, 1.0, 2.0]})
    model = estimator_class("LinearRegression")().fit(features, [0.0, 2.0, 4.0])
    labels, probabilities, class_names = predict(model, features, "regression")
    assert np.allclose(labels, [0.0, 2.0, 4.0]) and probabilities is None and class_names == []


def test_delivery_mode_defaults_to_exactly_once_and_refuses_unknown_modes():
    assert DELIVERY[Settings.from_env({}).services.scorer_delivery] is True
    assert DELIVERY[Settings.from_env({"MLBUS_SCORER_DELIVERY": "at-least-once"}).services.scorer_delivery] is False
    with pytest.raises(ConfigError, match="exactly-once, at-least-once"):
        Settings.from_env({"MLBUS_SCORER_DELIVERY": "best-effort"})


@pytest.mark.parametrize("name, text", [("MLBUS_POISON_BUDGET", "0"), ("MLBUS_CANARY_INTERVAL_S", "-1"),
                                        ("MLBUS_AUDIT_CHECKPOINT_EVERY", "many"), ("MLBUS_MAX_SNAPSHOT_BYTES", "1e9")])
def test_settings_refuse_impossible_numbers_by_name(name, text):
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: text})
