"""Business KPIs against a model's deployment timeline, pure: the KPI before vs after each change of the
serving version (difference with a confidence interval), and per variant while two versions serve
side by side (difference, Welch's t statistic, p-value). Every comparison is Welch's two-sample t-test
on the KPI observations (one value per time window), so its interval does not assume equal variances."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

import numpy as np
from scipy import stats

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Comparison:
    label: str                  # what is compared, e.g. "v1 → v2" or "v2 challenger vs v1 champion"
    at: datetime | None         # the deployment change (before/after comparisons)
    n_base: int
    mean_base: float | None
    n_other: int
    mean_other: float | None
    difference: float | None    # other − base
    ci_low: float | None
    ci_high: float | None
    statistic: float | None     # Welch's t
    p_value: float | None

    @property
    def significant(self) -> bool:
        return self.p_value is not None and self.p_value < 1 - CONFIDENCE

    def as_dict(self) -> dict:
        return {**asdict(self), "significant": self.significant}


def compare(label: str, base: np.ndarray, other: np.ndarray, at: datetime | None = None) -> Comparison:
    """Welch's t-test of other against base, with the confidence interval of the difference in means."""
    n_base, n_other = len(base), len(other)
    means = (float(base.mean()) if n_base else None, float(other.mean()) if n_other else None)
    if n_base < 2 or n_other < 2:
        return Comparison(label, at, n_base, means[0], n_other, means[1], None, None, None, None, None)
    var_base, var_other = base.var(ddof=1) / n_base, other.var(ddof=1) / n_other
    difference = float(other.mean()) - float(base.mean())
    se = float(np.sqrt(var_base + var_other))
    test = stats.ttest_ind(other, base, equal_var=False)
    if se == 0:
        return Comparison(label, at, n_base, means[0], n_other, means[1], difference, difference, difference,
                          None, None)
    df = (var_base + var_other) ** 2 / (var_base ** 2 / (n_base - 1) + var_other ** 2 / (n_other - 1))
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, df)) * se
    return Comparison(label, at, n_base, means[0], n_other, means[1], difference, difference - half,
                      difference + half, float(test.statistic), float(test.pvalue))


def serving_changes(history: list[dict]) -> list[tuple[datetime, int | None, int]]:
    """(when, from version, to version) each time a different version became the champion."""
    changes: list[tuple[datetime, int | None, int]] = []
    current: int | None = None
    for change in sorted(history, key=lambda d: d["changed_at"]):
        champion = next((r["version"] for r in change["routes"] if r["variant"] == "champion"), None)
        if change["phase"] != "refused" and champion is not None and champion != current:
            changes.append((change["changed_at"], current, champion))
            current = champion
    return changes


def before_after(observations: list[dict], history: list[dict]) -> list[Comparison]:
    """For each change: the KPI between the previous change and it, against the KPI until the next one.
    Observations split by variant are left to `by_variant`; the rest (whole-traffic values) count here."""
    whole = [o for o in observations if "variant" not in o["dimensions"]]
    changes = serving_changes(history)
    bounds = [c[0] for c in changes] + [None]
    results = []
    for i, (at, before, after) in enumerate(changes):
        if before is None:
            continue
        start = bounds[i - 1]
        base = values(whole, lambda t: start <= t < at)
        other = values(whole, lambda t: at <= t and (bounds[i + 1] is None or t < bounds[i + 1]))
        results.append(compare(f"v{before} → v{after}", base, other, at))
    return results


def by_variant(observations: list[dict], history: list[dict]) -> list[Comparison]:
    """Each non-champion variant against the champion, over the observations that name their variant."""
    split = [o for o in observations if "variant" in o["dimensions"]]
    versions = variant_versions(history)
    champion = values(split, lambda t: True, variant="champion")
    results = []
    for variant in sorted({o["dimensions"]["variant"] for o in split} - {"champion"}):
        label = f"{variant}{versions.get(variant, '')} vs champion{versions.get('champion', '')}"
        results.append(compare(label, champion, values(split, lambda t: True, variant=variant)))
    return results


def variant_versions(history: list[dict]) -> dict[str, str]:
    """variant → " (vN)" from the last deployment that served more than one variant."""
    for change in sorted(history, key=lambda d: d["changed_at"], reverse=True):
        served = [r for r in change["routes"] if r["share"] > 0]
        if len(served) > 1:
            return {r["variant"]: f" (v{r['version']})" for r in served}
    return {}


def values(observations: list[dict], when, variant: str | None = None) -> np.ndarray:
    return np.array([o["value"] for o in observations if when(o["window_end"]) and
                     (variant is None or o["dimensions"].get("variant") == variant)], dtype=float)


def for_model(observations: list[dict], model: str, kpi: str | None) -> list[dict]:
    """The observations of this model's KPIs: named for the model or for no model at all."""
    return [o for o in observations if (kpi is None or o["name"] == kpi)
            and o["dimensions"].get("model", model) == model]
