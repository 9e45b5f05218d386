"""The scikit-learn estimators mlbus trains and serves: an allowlist shared by the trainer (what may be
fitted), the CLI (what a spec may name) and the deployer (what skops may load)."""
from __future__ import annotations

import importlib

ESTIMATORS = {
    "LogisticRegression": ("sklearn.linear_model", "classification"),
    "RandomForestClassifier": ("sklearn.ensemble", "classification"),
    "GradientBoostingClassifier": ("sklearn.ensemble", "classification"),
    "DecisionTreeClassifier": ("sklearn.tree", "classification"),
    "LinearRegression": ("sklearn.linear_model", "regression"),
    "Ridge": ("sklearn.linear_model", "regression"),
    "RandomForestRegressor": ("sklearn.ensemble", "regression"),
    "GradientBoostingRegressor": ("sklearn.ensemble", "regression"),
    "DecisionTreeRegressor": ("sklearn.tree", "regression"),
}
HIGHER_IS_BETTER = {"accuracy": True, "precision": True, "recall": True, "f1": True, "roc_auc": True,
                    "mae": False, "rmse": False, "r2": True}
METRICS = {"classification": ("accuracy", "precision", "recall", "f1", "roc_auc"),
           "regression": ("mae", "rmse", "r2")}


class EstimatorError(ValueError):
    """A spec names an estimator or metric mlbus does not allow."""


def check_spec(estimator: str, task: str, metric: str) -> None:
    if estimator not in ESTIMATORS:
        raise EstimatorError(f"estimator {estimator!r} is not allowed; choose one of {', '.join(ESTIMATORS)}")
    if ESTIMATORS[estimator][1] != task:
        raise EstimatorError(f"{estimator} is a {ESTIMATORS[estimator][1]} estimator, the spec says {task}")
    if metric not in METRICS[task]:
        raise EstimatorError(f"metric {metric!r} does not fit {task}; choose one of {', '.join(METRICS[task])}")


def estimator_class(name: str) -> type:
    module, _ = ESTIMATORS[name]
    return getattr(importlib.import_module(module), name)
