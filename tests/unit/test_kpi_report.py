"""KPI correlation, pure: a known effect of a deployment is recovered inside its interval; no effect, no
significance. Numbers agree with scipy's Welch t-test."""
from datetime import datetime, timedelta, timezone

import numpy as np
from scipy import stats

from services.domain import before_after, by_variant, for_model, serving_changes
from services.domain import kpi_compare as compare

START = datetime(2026, 11, 1, tzinfo=timezone.utc)


def deployment(minute: int, *routes: tuple[int, str, float], phase: str = "completed") -> dict:
    return {"changed_at": START + timedelta(minutes=minute), "phase": phase,
            "routes": [{"version": v, "variant": variant, "share": share} for v, variant, share in routes]}


def kpi(minute: float, value: float, **dimensions) -> dict:
    return {"name": "conversion", "value": value, "window_end": START + timedelta(minutes=minute),
            "dimensions": dimensions}


def test_welch_comparison_matches_scipy_and_its_interval_covers_the_difference():
    rng = np.random.default_rng(3)
    base, other = rng.normal(0.10, 0.01, 60), rng.normal(0.105, 0.012, 50)
    result = compare("x", base, other)
    expected = stats.ttest_ind(other, base, equal_var=False)
    interval = expected.confidence_interval(0.95)
    assert abs(result.statistic - expected.statistic) < 1e-9 and abs(result.p_value - expected.pvalue) < 1e-9
    assert abs(result.ci_low - interval.low) < 1e-9 and abs(result.ci_high - interval.high) < 1e-9


def test_a_plus_five_percent_challenger_is_recovered_and_no_effect_is_not_significant():
    rng = np.random.default_rng(11)
    history = [deployment(0, (1, "champion", 1.0)),
               deployment(100, (1, "champion", 0.5), (2, "challenger", 0.5), phase="started")]
    with_effect = [kpi(100 + i, rng.normal(0.100, 0.006), variant="champion") for i in range(80)] + \
                  [kpi(100 + i, rng.normal(0.105, 0.006), variant="challenger") for i in range(80)]
    [found] = by_variant(with_effect, history)
    assert found.label == "challenger (v2) vs champion (v1)" and found.significant
    assert found.ci_low <= 0.005 <= found.ci_high
    no_effect = [kpi(100 + i, rng.normal(0.100, 0.006), variant=v) for i in range(80)
                 for v in ("champion", "challenger")]
    [none] = by_variant(no_effect, history)
    assert not none.significant and none.ci_low <= 0 <= none.ci_high


def test_before_and_after_each_change_of_the_serving_version():
    rng = np.random.default_rng(5)
    history = [deployment(0, (1, "champion", 1.0)), deployment(60, (1, "champion", 0.9), (2, "canary", 0.1),
                                                                  phase="step"),
               deployment(120, (2, "champion", 1.0)), deployment(200, (3, "champion", 1.0), phase="refused")]
    observations = [kpi(m, rng.normal(50.0 if m < 120 else 55.0, 2.0)) for m in range(1, 240, 2)]
    assert [(v0, v1) for _, v0, v1 in serving_changes(history)] == [(None, 1), (1, 2)]
    [change] = before_after(observations, history)
    assert change.label == "v1 → v2" and change.n_base == 60 and change.n_other == 60
    assert change.significant and change.ci_low <= 5.0 <= change.ci_high


def test_too_few_observations_give_no_statistics_and_other_models_kpis_are_left_out():
    assert compare("x", np.array([1.0]), np.array([2.0, 3.0])).p_value is None
    observations = [kpi(1, 1.0), kpi(2, 2.0, model="other"), kpi(3, 3.0, model="mine")]
    assert [o["value"] for o in for_model(observations, "mine", None)] == [1.0, 3.0]
    assert for_model(observations, "mine", "revenue") == []
