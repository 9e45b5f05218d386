"""Drift statistics agree with scipy.stats on the same data, and pick the method the reference size calls for."""
import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial import distance

from services.domain.monitoring import Monitoring
from services.domain.profile import profile_column
from services.drift_watcher.stats import (chi2_test, column_drift, ks_test, normalised_wasserstein,
                                          population_stability)

RNG = np.random.default_rng(42)
CONFIG = Monitoring()


def reference_profile(values, name="x"):
    return profile_column(name, pd.Series(values), sample_size=1000)


def test_ks_matches_scipy_to_1e9():
    reference, current = RNG.normal(0, 1, 400), RNG.normal(0.2, 1.1, 150)
    statistic, p_value = ks_test(np.sort(reference), current)
    expected = stats.ks_2samp(reference, current)
    assert abs(statistic - expected.statistic) < 1e-9 and abs(p_value - expected.pvalue) < 1e-9


def test_a_small_reference_is_judged_with_ks_on_the_whole_training_column():
    reference = RNG.normal(0, 1, 400)
    current = RNG.normal(0, 1, 200)
    [entry] = column_drift(reference_profile(reference), current, CONFIG)
    expected = stats.ks_2samp(reference, current)
    assert entry["method"] == "ks" and abs(entry["p_value"] - expected.pvalue) < 1e-9
    assert entry["drifted"] == (expected.pvalue < 0.05)


def test_normalised_wasserstein_matches_scipy_divided_by_the_reference_spread():
    reference, current = RNG.gamma(2.0, 1.0, 3000), RNG.gamma(2.5, 1.0, 500)
    expected = stats.wasserstein_distance(reference, current) / np.std(reference)
    assert abs(normalised_wasserstein(reference, current) - expected) < 1e-9


def test_a_large_reference_gets_wasserstein_and_psi_on_its_sample_and_histogram():
    reference = RNG.normal(0, 1, 5000)
    profile = reference_profile(reference)
    assert profile["count"] == 5000 and len(profile["sample"]) == 1000
    same = column_drift(profile, RNG.normal(0, 1, 500), CONFIG)
    shifted = column_drift(profile, RNG.normal(1.0, 1, 500), CONFIG)
    assert [e["method"] for e in same] == ["wasserstein", "psi"]
    assert not any(e["drifted"] for e in same)
    assert all(e["drifted"] for e in shifted) and shifted[1]["level"] == "drift"
    sample = np.asarray(profile["sample"])       # the statistic is computed on the stored sample
    current = RNG.normal(0.3, 1, 400)
    [w, _] = column_drift(profile, current, CONFIG)
    assert abs(w["statistic"] - stats.wasserstein_distance(sample, current) / np.std(sample)) < 1e-9


def test_psi_by_hand_on_the_reference_bins_with_open_outer_bins():
    edges = np.array([0.0, 1.0, 2.0, 3.0])
    reference_counts = np.array([50, 30, 20])
    current = np.array([-5.0, 0.5, 1.5, 1.5, 2.5, 9.0])     # -5 falls in the first bin, 9 in the last
    expected_share = np.array([0.5, 0.3, 0.2])
    actual_share = np.array([2, 2, 2]) / 6
    expected = np.sum((actual_share - expected_share) * np.log(actual_share / expected_share))
    assert abs(population_stability(edges, reference_counts, current) - expected) < 1e-12


def test_chi2_matches_scipy_chi2_contingency_to_1e9():
    reference, current = np.array([120.0, 60.0, 20.0]), np.array([30.0, 40.0, 10.0])
    statistic, p_value = chi2_test(reference, current)
    expected = stats.chi2_contingency(np.vstack([reference, current]))
    assert abs(statistic - expected.statistic) < 1e-9 and abs(p_value - expected.pvalue) < 1e-9


def test_categorical_columns_use_chi2_when_small_and_jensen_shannon_when_large():
    small = profile_column("colour", pd.Series(["red"] * 60 + ["blue"] * 40))
    [entry] = column_drift(small, np.array(["red"] * 20 + ["blue"] * 60 + ["green"] * 5), CONFIG)
    expected = stats.chi2_contingency(np.array([[40, 0, 60], [60, 5, 20]]))      # blue, green, red
    assert entry["method"] == "chi2" and entry["drifted"]
    assert abs(entry["statistic"] - expected.statistic) < 1e-9 and abs(entry["p_value"] - expected.pvalue) < 1e-9
    large = profile_column("colour", pd.Series(["red"] * 3000 + ["blue"] * 2000))
    [entry] = column_drift(large, np.array(["red"] * 50 + ["blue"] * 50), CONFIG)
    expected_js = distance.jensenshannon([0.4, 0.6], [0.5, 0.5])
    assert entry["method"] == "jensenshannon" and abs(entry["statistic"] - expected_js) < 1e-9
    assert not entry["drifted"]


def test_missing_and_non_finite_production_values_are_left_out_and_empty_windows_give_nothing():
    profile = reference_profile(RNG.normal(0, 1, 300))
    values = np.array([np.nan, np.inf, 0.1, -0.2, 0.3])
    [entry] = column_drift(profile, values, CONFIG)
    assert abs(entry["statistic"] - stats.ks_2samp(profile["sample"], [0.1, -0.2, 0.3]).statistic) < 1e-12
    assert column_drift(profile, np.array([np.nan]), CONFIG) == []


def test_the_reference_sample_is_seeded_and_sorted():
    values = pd.Series(RNG.normal(0, 1, 4000))
    first, second = profile_column("x", values, 500)["sample"], profile_column("x", values, 500)["sample"]
    assert first == second and first == sorted(first) and len(first) == 500
    assert profile_column("x", values)["sample"] == []          # a batch profile carries no sample


def test_the_first_entry_of_a_column_carries_both_distributions_over_the_training_bins():
    reference, current = RNG.normal(0, 1, 5000), np.concatenate([RNG.normal(3, 1, 300), [-50.0, 50.0]])
    profile = reference_profile(reference)
    first, second = column_drift(profile, current, CONFIG)                  # wasserstein, then psi
    counts = np.asarray(profile["histogram_counts"])
    assert len(first["bins"]) == len(first["reference"]) == len(first["current"]) == len(counts)
    assert np.allclose(first["reference"], counts / counts.sum())
    assert abs(sum(first["current"]) - 1) < 1e-9                           # outer bins open: nothing lost
    assert first["bins"][0].startswith("<") and first["bins"][-1].startswith("≥")
    assert first["current"][-1] > first["reference"][-1]                   # the shift shows in the top bin
    assert "bins" not in second


def test_categories_are_compared_share_by_share_including_new_ones():
    profile = reference_profile(["a"] * 60 + ["b"] * 40)
    [entry] = column_drift(profile, np.array(["a", "c", "c", "b"]), CONFIG)
    assert entry["bins"] == ["a", "b", "c"]
    assert entry["reference"] == [0.6, 0.4, 0.0] and entry["current"] == [0.25, 0.25, 0.5]
