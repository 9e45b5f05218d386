"""The drift-watcher's pure decisions: reports, alerts, sustained drift → one retraining per cool-down,
window heads and the monitoring settings of a spec."""
import json

import numpy as np
import pandas as pd
import pytest

from services.bus import BadInput
from services.domain.monitoring import Monitoring, monitoring_from_json, monitoring_json, parse_monitoring
from services.domain.profile import profile_column
from services.drift_watcher.decide import (ClosedWindow, RetrainState, alerts, drift_report, on_champion_report)
from services.domain.fairness import group_fairness
from services.drift_watcher.windows import (due, groups_of, judged_entry, new_head, outcome_amount, with_outcome,
                                             with_request)

RNG = np.random.default_rng(7)
FEATURES = [f"f{i}" for i in range(6)]
TRAINING = pd.DataFrame({f: RNG.normal(0, 1, 400) for f in FEATURES})
TRAINED = {"model": "m", "version": 2, "task": "classification", "metrics": {"accuracy": 0.9},
           "feature_profile": [profile_column(f, TRAINING[f], 1000) for f in FEATURES],
           "prediction_profile": profile_column("prediction", pd.Series(["a"] * 200 + ["b"] * 200))}
CONFIG = Monitoring(retrain_after=2, retrain_cooldown_seconds=600)


def window(seq=0, shift=(), rows=200, predictions=None, performance=None) -> ClosedWindow:
    frame = pd.DataFrame({f: RNG.normal(3.0 if f in shift else 0.0, 1, rows) for f in FEATURES})
    return ClosedWindow("m", seq, 1_000 * seq, 1_000 * seq + 999, frame, pd.DataFrame(),
                        predictions if predictions is not None else pd.DataFrame(), performance or {})


def test_a_stable_window_reports_every_feature_and_no_dataset_drift():
    report = drift_report(window(), TRAINED, champion=True, config=CONFIG)
    assert sorted(f["feature"] for f in report["features"]) == FEATURES
    assert report["rows"] == 200 and not report["dataset_drift"] and report["champion"]
    assert report["window_id"] == "m/w000000" and report["prediction_drift"] is None


def test_two_shifted_features_are_named_and_raise_a_feature_drift_alert_not_a_dataset_one():
    report = drift_report(window(shift=("f1", "f4")), TRAINED, champion=True, config=CONFIG)
    assert report["alerting"] == ["f1", "f4"] and not report["dataset_drift"]
    [alert] = alerts(report, CONFIG)
    assert alert.value["kind"] == "feature-drift" and "f1, f4" in alert.value["message"]
    assert json.loads(alert.value["evidence_json"])["report_id"] == report["report_id"]


def test_most_features_shifted_is_dataset_drift_and_a_critical_alert():
    report = drift_report(window(shift=("f0", "f1", "f2", "f3")), TRAINED, champion=True, config=CONFIG)
    assert report["dataset_drift"] and report["drift_share"] >= 4 / 6
    assert [a.value["severity"] for a in alerts(report, CONFIG)] == ["critical"]


def test_prediction_drift_and_online_performance_of_the_reported_version_only():
    predictions = pd.DataFrame({"version": [2] * 100 + [3] * 50, "variant": ["champion"] * 100 + ["canary"] * 50,
                                "label": ["a"] * 90 + ["b"] * 10 + ["b"] * 50, "score": [0.9] * 150})
    performance = {"2|champion": [20.0, 40], "3|canary": [9.0, 10]}
    report = drift_report(window(predictions=predictions, performance=performance), TRAINED, True, CONFIG)
    assert report["prediction_drift"]["method"] == "chi2" and report["prediction_drift"]["drifted"]
    assert report["performance"] == [{"variant": "champion", "metric": "accuracy", "value": 0.5, "outcomes": 40,
                                      "baseline": 0.9}]
    kinds = [a.value["kind"] for a in alerts(report, CONFIG)]
    assert "performance" in kinds


def test_sustained_drift_asks_once_and_the_cool_down_holds_while_drift_continues():
    drifted = [drift_report(window(seq, shift=FEATURES), TRAINED, True, CONFIG) for seq in range(6)]
    state, decisions, requests = RetrainState(), [], []
    for report in drifted:
        state, request, decision = on_champion_report(state, report, CONFIG)
        decisions.append(decision)
        requests += [request] if request else []
    assert decisions == ["waiting", "retrain", "waiting", "cooling-down", "cooling-down", "cooling-down"]
    [request] = requests
    assert request.value["reason"] == "drift" and request.value["requested_by"] == "drift-watcher"
    assert json.loads(request.value["evidence_json"])["report_ids"] == [r["report_id"] for r in drifted[:2]]


def test_the_same_window_reprocessed_asks_with_the_same_request_id():
    reports = [drift_report(window(seq, shift=FEATURES), TRAINED, True, CONFIG) for seq in range(2)]
    first = on_champion_report(on_champion_report(RetrainState(), reports[0], CONFIG)[0], reports[1], CONFIG)[1]
    again = on_champion_report(on_champion_report(RetrainState(), reports[0], CONFIG)[0], reports[1], CONFIG)[1]
    assert first.id == again.id == first.value["request_id"]


def test_after_the_cool_down_sustained_drift_asks_again_and_a_new_champion_starts_a_new_run():
    config = Monitoring(retrain_after=1, retrain_cooldown_seconds=1)
    reports = [drift_report(window(seq * 5, shift=FEATURES), TRAINED, True, config) for seq in range(2)]
    state, first, _ = on_champion_report(RetrainState(), reports[0], config)
    _, second, decision = on_champion_report(state, reports[1], config)      # 5 s later: cool-down over
    assert first and second and decision == "retrain" and first.id != second.id
    state = RetrainState(champion=1, drifted_windows=("x", "y"))
    assert on_champion_report(state, {**reports[0], "dataset_drift": False}, CONFIG)[0].drifted_windows == ()


def test_window_heads_close_when_full_or_due_by_time_with_enough_rows():
    config = Monitoring(window_rows=3, window_seconds=10, min_rows=2)
    head = with_request(new_head(), 1_000)
    assert not due(head, 60_000, config)                 # one row: waits for more, however long
    head = with_request(head, 2_000)
    assert not due(head, 5_000, config) and due(head, 11_000, config)
    assert due(with_request(head, 3_000), 3_000, config)
    head = with_outcome(with_outcome(head, 2, "champion", 1.0), 2, "champion", 0.0)
    assert head["performance"] == {"2|champion": [1.0, 2]}


def test_outcomes_compare_labels_or_values():
    assert outcome_amount("a", 0.9, {"label": "a", "value": None}) == 1.0
    assert outcome_amount("a", 0.9, {"label": "b", "value": None}) == 0.0
    assert outcome_amount(None, 2.5, {"label": None, "value": 4.0}) == 1.5
    assert outcome_amount("a", 0.9, {"label": None, "value": None}) is None


def test_monitoring_settings_from_a_spec_with_clear_errors():
    config = parse_monitoring({"window_rows": 100, "p_value": 0.01})
    assert config.window_rows == 100 and config.p_value == 0.01 and config.psi_drift == 0.2
    assert monitoring_from_json(monitoring_json(config)) == config
    with pytest.raises(BadInput, match="unknown settings \\['windowrows'\\]"):
        parse_monitoring({"windowrows": 100})
    with pytest.raises(BadInput, match="p_value must be a number"):
        parse_monitoring({"p_value": "low"})
    with pytest.raises(BadInput, match="window_rows ≥ 2"):
        parse_monitoring({"window_rows": 1})


def judged_outcomes(rows: int, f_selected: float, seed: int = 0) -> list[dict]:
    """Outcomes of v2 whose predictions select group F at `f_selected` and group M at 0.5."""
    rng = np.random.default_rng(seed)
    found = []
    for group in rng.choice(["F", "M"], rows):
        predicted = "yes" if rng.random() < (f_selected if group == "F" else 0.5) else "no"
        found.append(judged_entry(2, "champion", {"sex": str(group)}, str(rng.choice(["yes", "no"])), predicted))
    return found


FAIR_AT_TRAINING = {**TRAINED, "fairness_json": json.dumps({"sex": {"positive_class": "yes", "min_group_size": 30}})}


def test_online_fairness_is_the_training_figures_over_the_windows_outcomes_and_alerts_past_the_policy():
    judged = judged_outcomes(400, f_selected=0.1) + [{**j, "version": 3} for j in judged_outcomes(50, 0.5, 1)]
    report = drift_report(ClosedWindow("m", 0, 0, 999, TRAINING.head(10), pd.DataFrame(), pd.DataFrame(), {}, judged),
                          FAIR_AT_TRAINING, True, CONFIG)
    online = json.loads(report["fairness_json"])["sex"]
    mine = [j for j in judged if j["version"] == 2]
    truth, predicted = [j["truth"] for j in mine], [j["predicted"] for j in mine]
    expected = group_fairness(truth, predicted, [j["groups"]["sex"] for j in mine], "classification", "yes")
    assert online == json.loads(json.dumps(expected)) and online["demographic_parity_difference"] > 0.3
    [fairness] = [a for a in alerts(report, CONFIG, {"demographic_parity_difference": 0.1})
                  if a.value["kind"] == "fairness"]
    assert fairness.value["severity"] == "critical" and "demographic_parity_difference for sex is" in \
        fairness.value["message"] and "F 0." in fairness.value["message"]
    assert not [a for a in alerts(report, CONFIG, {}) if a.value["kind"] == "fairness"]       # no limit, no alert


def test_a_fair_window_or_a_version_without_sensitive_attributes_raises_no_fairness_alert():
    fair = drift_report(ClosedWindow("m", 0, 0, 999, TRAINING.head(10), pd.DataFrame(), pd.DataFrame(), {},
                                     judged_outcomes(600, f_selected=0.5, seed=4)), FAIR_AT_TRAINING, True, CONFIG)
    assert json.loads(fair["fairness_json"])["sex"]["demographic_parity_difference"] < 0.1
    assert not [a for a in alerts(fair, CONFIG, {"demographic_parity_difference": 0.1}) if a.value["kind"] == "fairness"]
    plain = drift_report(ClosedWindow("m", 0, 0, 999, TRAINING.head(10), pd.DataFrame(), pd.DataFrame(), {},
                                      judged_outcomes(100, 0.1)), TRAINED, True, CONFIG)
    assert plain["fairness_json"] == "{}"


def test_a_requests_groups_are_its_sensitive_attributes_missing_ones_named():
    request = {"features": {"age": 41.0}, "categories": {"sex": "F", "region": "north"}}
    assert groups_of(request, {"sex", "age", "nationality"}) == {"age": "41.0", "nationality": "(missing)", "sex": "F"}


def test_output_ids_hold_the_windows_nonce_so_no_other_principal_can_send_them_first():
    """`app` may write alerts: were the ids derived from what it can know (model, window number, version), it could
    publish them first and the drift-watcher would skip its own outputs as already sent. With the window's nonce
    (kept in its own table) they cannot be guessed, and a window closed again after a crash gets the same ids."""
    def outputs(nonce: str) -> list[str]:
        drifted = window(3, shift=FEATURES)
        windows = [ClosedWindow(**{**vars(w), "nonce": nonce}) for w in (window(2, shift=FEATURES), drifted)]
        reports = [drift_report(w, TRAINED, True, CONFIG) for w in windows]
        state = on_champion_report(RetrainState(), reports[0], CONFIG, nonce)[0]
        request = on_champion_report(state, reports[1], CONFIG, nonce)[1]
        return [reports[1]["report_id"], *(a.id for a in alerts(reports[1], CONFIG, nonce=nonce)), request.id]
    guessed = outputs("")                               # what anyone can derive from public fields
    first, again, other = outputs("n1"), outputs("n1"), outputs("n2")
    assert len(first) == 3 and first == again                          # closed again after a crash: the same ids
    assert not set(first) & set(guessed) and not set(first) & set(other)


def test_an_alert_with_a_reports_id_does_not_count_as_that_report_sent():
    from services.drift_watcher.app import Emitted
    emitted = Emitted()
    emitted.apply("mlbus.Alert", {"alert_id": "r-1"})                  # e.g. app's alert, squatting an id
    assert ("mlbus.DriftReport", "r-1") not in emitted.ids and ("mlbus.Alert", "r-1") in emitted.ids


def test_a_new_head_keeps_its_nonce_as_requests_come():
    head = with_request(new_head(4, "n4"), 1_000)
    assert head["nonce"] == "n4" and head["seq"] == 4
