"""The scikit-learn estimators mlbus trains and serves: an allowlist shared by the trainer (what may be
fitted), the CLI (what a spec may name) and the deployer (what skops may load)."""
from __future__ import annotations

import importlib

from services.bus.edge import content
from sklearn.model_selection import ParameterGrid

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


MAX_CV_FOLDS = 50
MAX_GRID_POINTS = 500      # runs one spec may ask for: a grid's size is a product, and each point is a training


def check_hyperparameters(estimator: str, candidates: list[dict]) -> None:
    """Every candidate set of hyperparameters through the estimator's own parameter validation (names, types,
    ranges) — the check scikit-learn would make at fit time, made when the spec is defined."""
    for params in candidates:
        model = estimator_class(estimator)()
        try:
            model.set_params(**params)
            model._validate_params()        # scikit-learn's constraint check, as fit() runs it
        except (ValueError, TypeError) as error:
            raise EstimatorError(f"hyperparameters {params}: {error}") from None


def check_split(test_size: float, cv_folds: int) -> None:
    if not 0.0 < test_size < 1.0:
        raise EstimatorError(f"test_size must lie strictly between 0 and 1, not {test_size}")
    if cv_folds != 0 and not 2 <= cv_folds <= MAX_CV_FOLDS:
        raise EstimatorError(f"cv_folds must be 0 (no cross-validation) or 2..{MAX_CV_FOLDS}, not {cv_folds}")


def spec_problem(spec: dict) -> str | None:
    """Why a (verified) spec cannot be trained, whatever the data: the CLI checks the same before sending."""
    from .ensembles import ensemble_problem, is_ensemble
    if (compute := spec.get("compute")) not in (None, *COMPUTES):
        return f"compute {compute!r} is not one of {', '.join(COMPUTES)} (or left out: the trainer's choice)"
    if is_ensemble(spec):
        if spec.get("feature_views_json") is not None:
            return "an ensemble's features are its members': feature_views does not apply"
        if compute == "dask":
            return "an ensemble combines its members' fitted models in the trainer: compute: dask does not apply"
        if spec["task"] not in METRICS or spec["metric"] not in METRICS[spec["task"]]:
            return f"metric {spec['metric']!r} does not fit task {spec['task']!r}"
        try:
            check_split(spec["test_size"], spec["cv_folds"])
            return ensemble_problem(content(spec.get("ensemble_json")), spec["task"])
        except EstimatorError as error:
            return str(error)
        except (ValueError, TypeError, AttributeError) as error:
            return f"ensemble settings unusable: {type(error).__name__}: {error}"
    try:
        check_spec(spec["estimator"], spec["task"], spec["metric"])
        check_split(spec["test_size"], spec["cv_folds"])
        check_hyperparameters(spec["estimator"], candidates(spec))
    except EstimatorError as error:
        return str(error)
    except (ValueError, TypeError, AttributeError) as error:       # hyperparameters or grid that are not JSON maps
        return f"hyperparameters or grid unusable: {type(error).__name__}: {error}"
    views = spec.get("feature_views_json")
    if views is not None and (problem := feature_views_problem(views, spec["target"])):
        return problem
    if (not spec["features"] and views is None) or spec["target"] in spec["features"]:
        return "features must be a non-empty list without the target (empty only with feature_views)"
    if spec.get("encoding", "onehot") not in ENCODINGS:
        return f"encoding {spec.get('encoding')!r} is not one of {', '.join(ENCODINGS)}"
    strays = [f for f in spec.get("categorical_features", []) if f not in spec["features"]]
    if strays:
        return f"categorical features that are not features: {', '.join(strays[:5])}"
    return None


def feature_views_problem(views_json: str, target: str) -> str | None:
    """Why a spec's feature_views block is unusable (features_training.settings_problem), or None."""
    from .features_training import FeatureSetRefused, parse_settings
    try:
        settings = parse_settings(views_json)
    except FeatureSetRefused as error:
        return str(error)
    if settings is not None and target in (settings.entity, settings.time):
        return f"the target {target!r} cannot be feature_views' entity or time column"
    return None


ENCODINGS = ("onehot", "ordinal")      # how a pipeline encodes categories (training.build_model)
COMPUTES = ("local", "dask")           # where a spec may have its grid run (left out: dask if the trainer has one)


def candidates(spec: dict) -> list[dict]:
    """The hyperparameter sets a spec trains: its base merged with each point of its grid."""
    base = content(spec["hyperparameters_json"])
    grid = ParameterGrid(content(spec["grid_json"]) or {})
    if len(grid) > MAX_GRID_POINTS:                     # counted without making them
        raise EstimatorError(f"the grid has {len(grid):,} points, more than {MAX_GRID_POINTS}")
    return [{**base, **point} for point in grid]
