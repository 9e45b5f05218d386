"""Drift statistics of one column: production values in a window against the version's training profile.

Numeric: KS test for small references, normalised Wasserstein distance plus PSI for large ones.
Categorical: chi² test for small references, Jensen-Shannon distance for large ones. Each function is
vectorised over the window's values (numpy/scipy); the loop is over columns, never over rows.
"""
from __future__ import annotations

import numpy as np
from scipy import stats
from scipy.spatial import distance

from services.domain import Monitoring

PSI_EMPTY_SHARE = 1e-4       # an empty bin counts as this share, so PSI stays finite (as Evidently does)
MIN_SCALE = 1e-3             # Wasserstein is divided by the reference's spread, never by (almost) zero


def column_drift(profile: dict, current: np.ndarray, config: Monitoring) -> list[dict]:
    """FeatureDrift entries (one per method) for one column, the first with both distributions side by side;
    [] when either side has no values."""
    if profile["kind"] == "numeric":
        values = np.asarray(current, dtype=float)
        values = values[np.isfinite(values)]
        entries, shown = numeric_drift(profile, values, config), numeric_distributions(profile, values)
    elif profile["kind"] == "categorical":
        values = np.asarray([v for v in current if v is not None], dtype=str)
        entries, shown = categorical_drift(profile, values, config), categorical_distributions(profile, values)
    else:
        return []
    return [{**entries[0], **shown}, *entries[1:]] if entries else []


def numeric_distributions(profile: dict, current: np.ndarray) -> dict:
    """The training histogram's shares and the window's over the same bins (outer bins open-ended)."""
    edges, counts = np.asarray(profile["histogram_edges"], dtype=float), np.asarray(profile["histogram_counts"])
    if len(edges) < 2 or counts.sum() == 0 or len(current) == 0:
        return {}
    produced = np.bincount(np.searchsorted(edges[1:-1], current, side="right"), minlength=len(counts))
    labels = [f"< {edges[1]:.4g}"] + [f"{a:.4g} – {b:.4g}" for a, b in zip(edges[1:-2], edges[2:-1])] \
        + [f"≥ {edges[-2]:.4g}"]
    return {"bins": labels if len(counts) > 1 else ["all"], "reference": (counts / counts.sum()).tolist(),
            "current": (produced / len(current)).tolist()}


MAX_LABELS = 50           # distinct production values a report names; the rest are counted as OTHER
MAX_LABEL_CHARS = 64
OTHER = "(other)"


def bounded_labels(values, keep: set | None = None) -> list[str]:
    """Category values or group names as a report names them: at most MAX_LABEL_CHARS each, and besides those in
    `keep` (the training's) only the MAX_LABELS most frequent; the rest are OTHER. A sender chooses these
    values: unbounded, a report outgrows what its topic takes."""
    labels = [str(v)[:MAX_LABEL_CHARS] for v in values]
    keep = {str(k)[:MAX_LABEL_CHARS] for k in keep or ()}
    counts: dict[str, int] = {}
    for label in labels:
        if label not in keep:
            counts[label] = counts.get(label, 0) + 1
    named = keep | set(sorted(counts, key=lambda label: -counts[label])[:MAX_LABELS])
    return [label if label in named else OTHER for label in labels]


def categorical_distributions(profile: dict, current: np.ndarray) -> dict:
    reference_counts = profile["categories"]
    if not reference_counts or len(current) == 0:
        return {}
    current = np.asarray(bounded_labels(current.tolist(), set(reference_counts)), dtype=object)
    seen, counts = np.unique(current, return_counts=True)
    produced = dict(zip(seen.tolist(), counts.tolist()))
    categories = sorted(set(reference_counts) | set(produced))
    total = sum(reference_counts.values())
    return {"bins": categories, "reference": [reference_counts.get(c, 0) / total for c in categories],
            "current": [produced.get(c, 0) / len(current) for c in categories]}


def numeric_drift(profile: dict, current: np.ndarray, config: Monitoring) -> list[dict]:
    reference = np.asarray(profile["sample"], dtype=float)
    if len(current) == 0 or len(reference) == 0:
        return []
    name = profile["name"]
    if profile["count"] <= config.small_reference:
        statistic, p_value = ks_test(reference, current)
        return [drift_entry(name, "ks", statistic, config.p_value, p_value < config.p_value, p_value)]
    scaled = normalised_wasserstein(reference, current)
    psi = population_stability(np.asarray(profile["histogram_edges"]), np.asarray(profile["histogram_counts"]),
                               current)
    psi_level = "drift" if psi >= config.psi_drift else "warn" if psi >= config.psi_warn else "ok"
    return [drift_entry(name, "wasserstein", scaled, config.distance, scaled > config.distance),
            {**drift_entry(name, "psi", psi, config.psi_drift, psi_level == "drift"), "level": psi_level}]


def categorical_drift(profile: dict, current: np.ndarray, config: Monitoring) -> list[dict]:
    reference_counts = profile["categories"]
    if len(current) == 0 or not reference_counts:
        return []
    seen, current_counts = np.unique(current, return_counts=True)
    categories = sorted(set(reference_counts) | set(seen.tolist()))
    reference = np.array([reference_counts.get(c, 0) for c in categories], dtype=float)
    produced = np.zeros(len(categories))
    produced[np.searchsorted(categories, seen)] = current_counts
    name = profile["name"]
    if reference.sum() <= config.small_reference:
        statistic, p_value = chi2_test(reference, produced)
        return [drift_entry(name, "chi2", statistic, config.p_value, p_value < config.p_value, p_value)]
    js = float(distance.jensenshannon(reference / reference.sum(), produced / produced.sum()))
    return [drift_entry(name, "jensenshannon", js, config.distance, js > config.distance)]


def ks_test(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    result = stats.ks_2samp(reference, current)
    return float(result.statistic), float(result.pvalue)


def normalised_wasserstein(reference: np.ndarray, current: np.ndarray) -> float:
    """Earth mover's distance in units of the reference's standard deviation (Evidently's normed form)."""
    return float(stats.wasserstein_distance(reference, current) / max(float(np.std(reference)), MIN_SCALE))


def population_stability(edges: np.ndarray, reference_counts: np.ndarray, current: np.ndarray) -> float:
    """PSI over the reference's histogram bins, the outer bins open-ended so no production value is lost."""
    if len(edges) < 2 or reference_counts.sum() == 0:
        return 0.0
    inner = edges[1:-1]
    current_counts = np.bincount(np.searchsorted(inner, current, side="right"), minlength=len(reference_counts))
    expected = np.maximum(reference_counts / reference_counts.sum(), PSI_EMPTY_SHARE)
    actual = np.maximum(current_counts / len(current), PSI_EMPTY_SHARE)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def chi2_test(reference_counts: np.ndarray, current_counts: np.ndarray) -> tuple[float, float]:
    """Chi² test of independence on the 2×k table (reference, production) × category."""
    if len(reference_counts) < 2:
        return 0.0, 1.0
    statistic, p_value, _, _ = stats.chi2_contingency(np.vstack([reference_counts, current_counts]))
    return float(statistic), float(p_value)


def drift_entry(feature: str, method: str, statistic: float, threshold: float, drifted: bool,
                p_value: float | None = None) -> dict:
    return {"feature": feature, "method": method, "statistic": float(statistic), "threshold": float(threshold),
            "p_value": p_value, "drifted": bool(drifted), "level": "drift" if drifted else "ok"}
