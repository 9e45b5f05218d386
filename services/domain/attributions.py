"""Why one prediction: feature attributions that add up, with the baseline, to the model's own output.

- Linear models (LogisticRegression, LinearRegression, Ridge): exact. The pipeline's preparation (imputation,
  scaling, category encoding) turns the request into the estimator's inputs z; each input's contribution is
  coef·z, the baseline the intercept — for a classifier in log-odds of the explained class (the second class of
  two; the predicted class of more), for a regressor in the target's unit. A standardised number's z is 0 at the
  training mean, so its contribution is relative to the mean; a category's is relative to no category (one-hot)
  or to code 0 (ordinal).
- Tree models (random forest, gradient boosting, decision tree): TreeSHAP (the `shap` package,
  path-dependent: the trees' own training cover is the background), exact Shapley values. The baseline is the
  model's mean output over its training data — a probability for forests and single trees, log-odds for
  gradient-boosted classifiers, the target's unit for regressors.
- Anything else (ensembles): a documented fallback, *baseline substitution*: the baseline is the output for a
  row with every feature at its training reference (median of a number, most frequent category, from the
  version's recorded profile), and a feature's attribution is how far the output moves from the actual
  prediction when that feature alone is set to its reference. These do not add up (interactions), and say so.

Attributions of one-hot columns are summed back to the feature the request carried (`region`, not
`region_north`)."""
from __future__ import annotations

import numpy as np
import pandas as pd

LINEAR = ("LogisticRegression", "LinearRegression", "Ridge")
TREES = ("RandomForestClassifier", "GradientBoostingClassifier", "DecisionTreeClassifier", "RandomForestRegressor",
         "GradientBoostingRegressor", "DecisionTreeRegressor")


def attribution(model, row: pd.DataFrame, task: str, profile: list[dict] | None = None) -> dict:
    """{method, unit, explained_class, baseline, output, contributions: {feature: value}, additive}."""
    estimator = model.steps[-1][1] if hasattr(model, "steps") else model
    kind = type(estimator).__name__
    if kind in LINEAR:
        return _linear(model, estimator, row, task)
    if kind in TREES:
        return _tree_shap(model, estimator, row, task)
    return _substitution(model, row, task, profile or [])


def _inputs(model, row: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """The estimator's input for the row, and for each of its columns the request's feature it came from."""
    prepare = model[:-1]
    z = np.asarray(prepare.transform(row), dtype=float)
    return z, origins(prepare, list(row.columns))


def origins(prepare, features: list[str]) -> list[str]:
    """Per output column of the preparation steps, the input feature it derives from (one-hot columns → their
    feature)."""
    from sklearn.compose import ColumnTransformer
    step = prepare.steps[0][1] if hasattr(prepare, "steps") and prepare.steps else prepare
    if not isinstance(step, ColumnTransformer):
        return list(features)
    found: list[str] = []
    for name, transformer, columns in step.transformers_:
        if name == "remainder" or transformer == "drop":
            continue
        if hasattr(transformer, "categories_") and type(transformer).__name__ == "OneHotEncoder":
            found += [c for c, categories in zip(columns, transformer.categories_) for _ in categories]
        else:
            found += list(columns)
    return found


def _explained_class(estimator, row_z: np.ndarray, task: str) -> tuple[int | None, str | None]:
    if task != "classification":
        return None, None
    classes = list(estimator.classes_)
    index = 1 if len(classes) == 2 else int(np.argmax(estimator.predict_proba(row_z)[0]))
    return index, str(classes[index])


def _grouped(values: np.ndarray, sources: list[str]) -> dict[str, float]:
    found: dict[str, float] = {}
    for value, source in zip(values, sources):
        found[source] = found.get(source, 0.0) + float(value)
    return found


def _linear(model, estimator, row: pd.DataFrame, task: str) -> dict:
    z, sources = _inputs(model, row)
    index, label = _explained_class(estimator, z, task)
    coef = np.atleast_2d(estimator.coef_)
    intercept = np.atleast_1d(estimator.intercept_)
    line = 0 if coef.shape[0] == 1 else index          # binary: one row, for the second class
    contributions = coef[line] * z[0]
    output = float(estimator.decision_function(z)[0] if task == "classification" and coef.shape[0] == 1
                   else (estimator.decision_function(z)[0][line] if task == "classification"
                         else estimator.predict(z)[0]))
    return {"method": "exact (linear: coefficient × prepared input)", "unit": "log-odds" if task == "classification"
            else "target", "explained_class": label, "baseline": float(intercept[line]), "output": output,
            "contributions": _grouped(contributions, sources), "additive": True}


def _tree_shap(model, estimator, row: pd.DataFrame, task: str) -> dict:
    import shap
    z, sources = _inputs(model, row)
    explainer = shap.TreeExplainer(estimator)
    values = np.asarray(explainer.shap_values(z))
    expected = np.atleast_1d(explainer.expected_value)
    index, label = _explained_class(estimator, z, task)
    if values.ndim == 3:                         # (rows, inputs, classes): probabilities per class
        values, baseline, unit = values[0, :, index], float(expected[index]), "probability"
        output = float(estimator.predict_proba(z)[0][index])
    elif task == "classification":              # gradient boosting, two classes: log-odds of the second
        values, baseline, unit = values[0], float(expected[0]), "log-odds"
        output = float(estimator.decision_function(z)[0])
    else:
        values, baseline, unit = values[0], float(expected[0]), "target"
        output = float(estimator.predict(z)[0])
    return {"method": "TreeSHAP (shap, path-dependent)", "unit": unit, "explained_class": label,
            "baseline": baseline, "output": output, "contributions": _grouped(values, sources), "additive": True}


def reference_row(row: pd.DataFrame, profile: list[dict]) -> pd.DataFrame:
    """The row with every feature at its training reference: median of a number, most frequent category."""
    by_name = {p["name"]: p for p in profile}
    reference = row.copy()
    for name in row.columns:
        column = by_name.get(name)
        if column is None:
            continue
        if column.get("kind") == "categorical" and column.get("categories"):
            reference[name] = max(column["categories"], key=column["categories"].get)
        elif column.get("quantiles", {}).get("p50") is not None:
            reference[name] = column["quantiles"]["p50"]
    return reference


def _substitution(model, row: pd.DataFrame, task: str, profile: list[dict]) -> dict:
    def output(frame: pd.DataFrame) -> tuple[float, str | None]:
        if task != "classification":
            return float(model.predict(frame)[0]), None
        probabilities = model.predict_proba(frame)[0]
        index = 1 if len(probabilities) == 2 else int(np.argmax(model.predict_proba(row)[0]))
        return float(probabilities[index]), str(model.classes_[index])

    actual, label = output(row)
    reference = reference_row(row, profile)
    contributions = {}
    for name in row.columns:
        moved = row.copy()
        moved[name] = reference[name].to_numpy()
        contributions[name] = actual - output(moved)[0]
    return {"method": "baseline substitution (model-agnostic; not additive)", "explained_class": label,
            "unit": "probability" if task == "classification" else "target", "baseline": output(reference)[0],
            "output": actual, "contributions": contributions, "additive": False}
