"""Group fairness of a version's predictions, per sensitive attribute, with fairlearn's MetricFrame — the same
figures at training (on the holdout) and online (per drift window, once outcomes arrive).

Classification with two classes (the positive class is the second in sorted order, as for ROC-AUC): per group
its row count, selection rate (share predicted positive), true and false positive rates and accuracy; across
the groups, demographic-parity difference (largest minus smallest selection rate) and ratio (smallest over
largest), and equalized-odds difference (the larger of the TPR and FPR differences) — fairlearn's own
definitions. More than two classes: per-group accuracy and the accuracy difference. Regression: per-group MAE
and mean prediction, and their differences.

Groups with fewer than `min_group_size` rows are *reported* (their figures are in `groups`) but not *judged*:
the differences and ratios are taken over the other groups only, and with fewer than two such groups there are
none — so a policy's fairness thresholds judge nothing rather than judge noise.
"""
from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import pandas as pd

MIN_GROUP_SIZE = 30
# fairness figure → True when higher is fairer (a policy's threshold is then a minimum, else a maximum)
FAIRNESS_METRICS = {"demographic_parity_difference": False, "demographic_parity_ratio": True,
                    "equalized_odds_difference": False, "accuracy_difference": False, "mae_difference": False,
                    "mean_prediction_difference": False}
MISSING_GROUP = "(missing)"


def _metrics(task: str, binary: bool) -> dict:
    from fairlearn.metrics import count, false_positive_rate, selection_rate, true_positive_rate
    from sklearn.metrics import accuracy_score, mean_absolute_error
    if task != "classification":
        return {"count": count, "mae": mean_absolute_error,
                "mean_prediction": lambda y_true, y_pred: float(np.mean(y_pred))}
    if not binary:
        return {"count": count, "accuracy": accuracy_score}
    return {"count": count, "selection_rate": selection_rate, "true_positive_rate": true_positive_rate,
            "false_positive_rate": false_positive_rate, "accuracy": accuracy_score}


def positive_class(classes: list[str] | None) -> str | None:
    """The class a selection rate counts: the second of two (as ROC-AUC takes it); None for more or none."""
    return str(classes[1]) if classes is not None and len(classes) == 2 else None


def group_fairness(y_true, y_pred, groups, task: str, positive: str | None = None,
                   min_group_size: int = MIN_GROUP_SIZE) -> dict:
    """One sensitive attribute's report: {positive_class, min_group_size, groups: {group: {figure: value}},
    judged_groups, and the across-group figures of FAIRNESS_METRICS that apply}. `positive`: a two-class
    classifier's positive class (None: more than two classes, or regression)."""
    from fairlearn.metrics import MetricFrame
    import warnings
    groups = pd.Series(np.asarray(groups, dtype=object)).fillna(MISSING_GROUP).astype(str).to_numpy()
    by = functools.partial(pd.Series, name="group")   # as a Series: fairlearn squeezes an array of one row to none
    binary = task == "classification" and positive is not None
    if task == "classification":
        y_true, y_pred = np.asarray(y_true).astype(str), np.asarray(y_pred).astype(str)
        if binary:
            y_true, y_pred = (y_true == positive).astype(int), (y_pred == positive).astype(int)
    else:
        y_true, y_pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    metrics = _metrics(task, binary)
    with warnings.catch_warnings():                 # a group without positives: its TPR is NaN, and said so
        warnings.simplefilter("ignore")
        frame = MetricFrame(metrics=metrics, y_true=y_true, y_pred=y_pred, sensitive_features=by(groups))
        by_group = frame.by_group
        judged = sorted(str(g) for g in by_group.index if by_group.loc[g, "count"] >= min_group_size)
        report: dict[str, Any] = {
            "positive_class": positive, "min_group_size": min_group_size, "judged_groups": judged,
            "groups": {str(g): {k: _plain(v) for k, v in row.items()} for g, row in by_group.iterrows()}}
        if len(judged) < 2:
            return report
        kept = np.isin(groups, judged)
        fair = MetricFrame(metrics=metrics, y_true=y_true[kept], y_pred=y_pred[kept],
                           sensitive_features=by(groups[kept]))
        difference, ratio = fair.difference(method="between_groups"), fair.ratio(method="between_groups")
    if binary:
        report.update(demographic_parity_difference=_plain(difference["selection_rate"]),
                      demographic_parity_ratio=_plain(ratio["selection_rate"]),
                      equalized_odds_difference=_plain(max(difference["true_positive_rate"],
                                                           difference["false_positive_rate"])))
    if task == "classification":
        report["accuracy_difference"] = _plain(difference["accuracy"])
    else:
        report.update(mae_difference=_plain(difference["mae"]),
                      mean_prediction_difference=_plain(difference["mean_prediction"]))
    return report


def fairness_report(y_true, y_pred, sensitive: pd.DataFrame | None, task: str, classes: list[str] | None,
                    min_group_size: int = MIN_GROUP_SIZE) -> dict:
    """{attribute: group_fairness(...)} for every column of `sensitive` (aligned with y_true, y_pred)."""
    if sensitive is None or sensitive.empty:
        return {}
    return {name: group_fairness(y_true, y_pred, sensitive[name].to_numpy(), task, positive_class(classes),
                                 min_group_size) for name in sensitive.columns}


def fairness_breach(report: dict, thresholds: dict[str, float]) -> tuple[str, str, float, float] | None:
    """The first (metric, attribute, value, limit) whose figure is beyond the threshold, or None; a figure that
    was not judged (too few groups large enough) is not a breach."""
    for name, limit in sorted(thresholds.items()):
        for attribute, figures in sorted(report.items()):
            value = figures.get(name)
            if value is None:
                continue
            if (value < limit) if FAIRNESS_METRICS.get(name, False) else (value > limit):
                return name, attribute, value, limit
    return None


def groups_line(figures: dict, name: str) -> str:
    """The per-group figures behind an across-group one, e.g. 'F 0.12 (140 rows), M 0.43 (160 rows)'."""
    per_group = {"demographic_parity_difference": "selection_rate", "demographic_parity_ratio": "selection_rate",
                 "equalized_odds_difference": ("true_positive_rate", "false_positive_rate"),
                 "accuracy_difference": "accuracy", "mae_difference": "mae",
                 "mean_prediction_difference": "mean_prediction"}.get(name, name)
    shown = per_group if isinstance(per_group, tuple) else (per_group,)
    return ", ".join(f"{group} " + "/".join(_fmt(values.get(s)) for s in shown) + f" ({int(values['count'])} rows)"
                     for group, values in sorted(figures["groups"].items()))


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _plain(value) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value
