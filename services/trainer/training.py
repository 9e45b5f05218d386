"""Fitting and evaluating one grid point with scikit-learn: split with the seed, fit, holdout metrics,
cross-validation. Deterministic for a given frame, parameters and seed."""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn import metrics as skm
from sklearn.impute import SimpleImputer
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.compose import ColumnTransformer
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from sklearn.linear_model import LinearRegression, LogisticRegression

from services.domain import (Ensemble, check_members, estimator_class, fairness_report, HIGHER_IS_BETTER,
                             profile_column, REFERENCE_SAMPLE, snapshot_frame, stack_inputs)

CV_SCORING = {"accuracy": "accuracy", "precision": "precision_macro", "recall": "recall_macro", "f1": "f1_macro",
              "roc_auc": "roc_auc_ovr", "mae": "neg_mean_absolute_error", "rmse": "neg_root_mean_squared_error",
              "r2": "r2"}


@dataclass(frozen=True)
class Split:
    x_train: pd.DataFrame
    x_test: pd.DataFrame
    y_train: pd.Series
    y_test: pd.Series
    categorical: tuple[str, ...] = ()      # the columns that are categories (the others are numbers)
    sensitive_test: pd.DataFrame | None = None     # the holdout rows' sensitive attributes (fairness is per group)


def split(frame: pd.DataFrame, features: list[str], target: str, task: str, test_size: float, seed: int,
          categorical: tuple[str, ...] = (), sensitive: tuple[str, ...] = ()) -> Split:
    x, y = snapshot_frame(frame, features, categorical), frame[target]      # as serving will shape it
    stratify = y if task == "classification" and y.value_counts().min() >= 2 else None
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=test_size, random_state=seed, stratify=stratify)
    groups = frame.loc[x_test.index, list(sensitive)].astype("string").astype(object) if sensitive else None
    return Split(x_train, x_test, y_train, y_test, tuple(categorical), groups)


def build_model(estimator: str, params: dict, seed: int, features: list[str] | None = None,
                categorical: tuple[str, ...] = (), encoding: str = "onehot") -> Pipeline:
    """Numbers: impute (median) → scale; categories: one-hot (an unseen one is all zeros) or ordinal (-1);
    then the estimator, with a seed for every estimator that takes one. The encoding is part of the saved
    pipeline, so serving applies the same transformation."""
    model = estimator_class(estimator)()
    if "random_state" in model.get_params():
        params = {"random_state": seed, **params}
    model.set_params(**params)
    numbers = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    if not categorical:
        return Pipeline([*numbers.steps, ("model", model)])
    encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=False) if encoding == "onehot" else \
        OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)
    numeric = [f for f in features if f not in categorical]
    prepare = ColumnTransformer([("numbers", numbers, numeric), ("categories", encoder, list(categorical))])
    return Pipeline([("prepare", prepare), ("model", model)])


def fit_and_evaluate(data: Split, estimator: str, params: dict, task: str, metric: str, cv_folds: int,
                     seed: int, encoding: str = "onehot") -> tuple[Pipeline, dict]:
    started, cpu_started = time.perf_counter(), time.process_time()
    model = build_model(estimator, params, seed, list(data.x_train.columns), data.categorical,
                        encoding).fit(data.x_train, data.y_train)
    cv_metrics = cross_validated(data, estimator, params, task, metric, cv_folds, seed, encoding)
    return model, evaluated(model, data, task, cv_metrics, started, cpu_started)


def evaluated(model, data: Split, task: str, cv_metrics: dict, started: float, cpu_started: float) -> dict:
    """A fitted model's holdout metrics, prediction hash and profile, and what the fit cost since `started`."""
    predictions = model.predict(data.x_test)
    probabilities = model.predict_proba(data.x_test) if task == "classification" else None
    holdout = classification_metrics(data.y_test, predictions, probabilities, model.classes_) \
        if task == "classification" else regression_metrics(data.y_test, predictions)
    classes = [str(c) for c in model.classes_] if task == "classification" else None
    return {"metrics": holdout, "cv_metrics": cv_metrics,
            "fairness": fairness_report(data.y_test, predictions, data.sensitive_test, task, classes),
            "predictions_sha256": predictions_hash(predictions, probabilities),
            "prediction_profile": prediction_profile(predictions, task),
            "duration_ms": int((time.perf_counter() - started) * 1000),
            "cpu_seconds": time.process_time() - cpu_started}


def fit_ensemble(data: Split, members: list[dict], fitted: list[object], method: str, task: str, metric: str,
                 cv_folds: int, seed: int) -> tuple[Ensemble, dict]:
    """Combine fitted members: soft-vote/average need no fit; stack fits its final estimator on the members'
    outputs over the training rows (cross-validated there). Judged on the holdout like any version."""
    started, cpu_started = time.perf_counter(), time.process_time()
    check_members(members, fitted, task)
    ensemble, cv_metrics = Ensemble(members, fitted, method), {}
    if method == "stack":
        inputs = stack_inputs(ensemble.member_outputs(data.x_train))
        ensemble.final = final_estimator(task).fit(inputs, data.y_train)
        if cv_folds >= 2:
            cv_metrics = cv_summary(final_estimator(task), inputs, data.y_train, task, metric, cv_folds, seed)
    return ensemble, evaluated(ensemble, data, task, cv_metrics, started, cpu_started)


def final_estimator(task: str):
    return LogisticRegression(max_iter=1000) if task == "classification" else LinearRegression()


def prediction_profile(predictions: np.ndarray, task: str) -> dict:
    """What the version predicts on the holdout: the baseline of prediction drift in production."""
    values = pd.Series(predictions)
    return profile_column("prediction", values.astype(str) if task == "classification" else values, REFERENCE_SAMPLE)


def classification_metrics(y_true, predicted, probabilities, classes) -> dict:
    result = {"accuracy": skm.accuracy_score(y_true, predicted),
              "precision": skm.precision_score(y_true, predicted, average="macro", zero_division=0),
              "recall": skm.recall_score(y_true, predicted, average="macro", zero_division=0),
              "f1": skm.f1_score(y_true, predicted, average="macro", zero_division=0)}
    if len(classes) == 2:
        result["roc_auc"] = skm.roc_auc_score(y_true == classes[1], probabilities[:, 1])
    elif len(classes) > 2:
        result["roc_auc"] = skm.roc_auc_score(y_true, probabilities, multi_class="ovr", labels=classes)
    return {k: float(v) for k, v in result.items()}


def regression_metrics(y_true, predicted) -> dict:
    return {"mae": float(skm.mean_absolute_error(y_true, predicted)),
            "rmse": float(np.sqrt(skm.mean_squared_error(y_true, predicted))),
            "r2": float(skm.r2_score(y_true, predicted))}


def cross_validated(data: Split, estimator: str, params: dict, task: str, metric: str, folds: int,
                    seed: int, encoding: str = "onehot") -> dict:
    if folds < 2:
        return {}
    model = build_model(estimator, params, seed, list(data.x_train.columns), data.categorical, encoding)
    return cv_summary(model, data.x_train, data.y_train, task, metric, folds, seed)


def cv_summary(model, x, y, task: str, metric: str, folds: int, seed: int) -> dict:
    """The metric's mean and standard deviation over `folds` shuffled (stratified) folds."""
    splitter = (StratifiedKFold if task == "classification" else KFold)(folds, shuffle=True, random_state=seed)
    scores = cross_val_score(model, x, y, scoring=CV_SCORING[metric], cv=splitter)
    scores = -scores if CV_SCORING[metric].startswith("neg_") else scores
    return {metric: float(scores.mean()), f"{metric}_std": float(scores.std())}


def predictions_hash(predictions: np.ndarray, probabilities: np.ndarray | None) -> str:
    digest = hashlib.sha256(np.asarray(predictions).astype(str).astype(bytes).tobytes())
    if probabilities is not None:
        digest.update(np.ascontiguousarray(probabilities, dtype=np.float64).tobytes())
    return digest.hexdigest()


IMPORTANCE_ROWS = 20_000      # holdout rows permutation importance uses (each feature × repeat re-scores them)


def permutation_importances(model, data: Split, task: str, metric: str, seed: int,
                            repeats: int = 5) -> dict[str, float]:
    """Global importance of each feature (a column as the request carries it; a category column as one): how much
    the spec's metric on the holdout worsens, on average over `repeats` shuffles with the seed, when that column's
    values are shuffled — the breaking of its link to the target. Any servable model (ensembles too)."""
    rng = np.random.default_rng(seed)
    x_test, y_test = data.x_test.iloc[:IMPORTANCE_ROWS], data.y_test.iloc[:IMPORTANCE_ROWS]   # a random split already

    def score(x: pd.DataFrame) -> float:
        if task != "classification":
            return regression_metrics(y_test, model.predict(x))[metric]
        probabilities = model.predict_proba(x)
        predicted = model.classes_[probabilities.argmax(axis=1)]
        return classification_metrics(y_test, predicted, probabilities, model.classes_)[metric]

    sign = 1 if HIGHER_IS_BETTER[metric] else -1
    base, importances = score(x_test), {}
    for column in x_test.columns:
        drops = []
        for _ in range(repeats):
            shuffled = x_test.copy()
            shuffled[column] = rng.permutation(shuffled[column].to_numpy())
            drops.append(sign * (base - score(shuffled)))
        importances[column] = float(np.mean(drops))
    return importances
