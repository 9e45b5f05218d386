"""Feature views watched like a model's inputs, pure: values in windows of event time per view version, closed once
event time has passed them and the clock has settled, judged against the training profile of a model version
trained on the view (or the first window), reports named `view.NAME.VERSION`, alerts, the skew alert — and hostile
values skipped with their reason, never raised."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import numpy as np
import pandas as pd

from services.bus.edge import check_record
from services.domain import Monitoring, profile_column
from services.domain.features_monitoring import skew
from services.domain.features_views import parse_views
from services.domain.features_windows import FeatureValue, SourceSpan
from services.domain.features_serving import AHEAD_OF_CLOCK_MS
from services.drift_watcher.feature_views import (MAX_VALUES, OPEN_WINDOWS, SETTLE_MS, FeatureWatch,
                                                  first_profile, skew_alert, subject, view_alerts)

CONFIG = Monitoring(window_seconds=60, min_rows=30)
MINUTE = 60_000
NOW = 10 ** 12
[VIEW] = parse_views({"views": [{
    "name": "purchases", "entity": "customer_id", "source": {"topic": "business.events"}, "ttl": "1d",
    "owner": "ana", "features": [{"name": "last_amount", "aggregate": "last", "field": "amount"},
                                 {"name": "spend_1m", "aggregate": "sum", "field": "amount", "window": "1m"},
                                 {"name": "last_country", "aggregate": "last", "field": "country"}]}]})
RNG = np.random.default_rng(3)


def value(entity: str, at_ms: int, amount, feature: str = "last_amount", offset: int = 0,
          version: str = VIEW.version, view: str = VIEW.name) -> FeatureValue:
    return FeatureValue(view, version, feature, entity, at_ms, amount, None,
                        (SourceSpan("business.events", 0, offset, offset, 1),))


def watch() -> FeatureWatch:
    found = FeatureWatch(CONFIG)
    found.define(VIEW)
    return found


def fill(found: FeatureWatch, start_ms: int, amounts, feature: str = "last_amount") -> None:
    for i, amount in enumerate(amounts):
        assert found.add(value(f"c{i}", start_ms + i % 50_000, amount, feature), NOW) is None


def closed_all(found: FeatureWatch, newest_ms: int):
    """Event time moved past every open window (a value at newest_ms), and the clock settled: the windows closed,
    but for those holding only such a value."""
    found.add(value("tick", newest_ms, 0.0), NOW)
    assert found.close(NOW) == []                        # event time passed them: not yet closed by the clock
    return [w for w in found.close(NOW + SETTLE_MS) if sum(w.counted.values()) > 1]


def trained_on(view_version: str, feature: str, values) -> dict:
    return {"model": "churn", "version": 3, "trained_at": datetime(2026, 12, 1, tzinfo=timezone.utc),
            "feature_views_json": json.dumps({"views": {VIEW.name: view_version}, "entity": "customer_id",
                                              "time": "at", "columns": [f"{VIEW.name}__{feature}"]}),
            "feature_profile": [profile_column(f"{VIEW.name}__{feature}", pd.Series(values), 1000)]}


def test_the_first_window_is_the_reference_and_a_shifted_one_drifts_with_a_critical_alert():
    found = watch()
    fill(found, 0, RNG.normal(10, 1, 200))
    [first] = closed_all(found, MINUTE)
    assert first.id == f"view.purchases.{VIEW.version[:16]}/0" and first.counted == {"last_amount": 200}
    assert found.report(first, []) is None                # the reference: nothing to judge it against
    fill(found, 2 * MINUTE, RNG.normal(10, 1, 200))
    [same] = closed_all(found, 3 * MINUTE)
    report = found.report(same, [])
    assert report["model"] == subject(VIEW.name, VIEW.version) and report["version"] == 0
    assert not report["dataset_drift"] and view_alerts(report) == []
    fill(found, 4 * MINUTE, RNG.normal(14, 1, 200))
    [shifted] = closed_all(found, 5 * MINUTE)
    report = found.report(shifted, [], nonce="n")
    assert report["dataset_drift"] and [f["feature"] for f in report["features"]] == ["last_amount"]
    assert report["window_start"] == 4 * MINUTE and report["window_end"] == 5 * MINUTE and not report["champion"]
    [raised] = view_alerts(report, "n")
    assert raised.value["kind"] == "view-drift" and raised.value["severity"] == "critical"
    assert raised.value["model"] == report["model"] and raised.value["version"] is None
    check_record("mlbus.DriftReport", report, edge=True)              # every reader's edge takes it (a name)
    check_record("mlbus.Alert", raised.value, edge=True)
    assert found.report(shifted, [], nonce="n")["report_id"] == report["report_id"]   # closed again: same id
    assert found.report(shifted, [], nonce="m")["report_id"] != report["report_id"]


def test_a_model_trained_on_the_view_version_gives_the_reference_of_its_column():
    found = watch()
    fill(found, 0, RNG.normal(10, 1, 200))
    [window] = closed_all(found, MINUTE)
    trained = [trained_on(VIEW.version, "last_amount", RNG.normal(0, 1, 300))]
    report = found.report(window, trained)
    assert report["dataset_drift"] and report["features"][0]["feature"] == "last_amount"
    other = [trained_on("b" * 64, "last_amount", RNG.normal(0, 1, 300))]    # another version of the view
    assert found.report(window, other) is None


def test_a_window_stays_open_until_event_time_passed_it_and_the_clock_settled():
    found = watch()
    fill(found, 0, RNG.normal(0, 1, 50))
    assert found.close(NOW + 10 * SETTLE_MS) == []        # event time has not passed its end
    found.add(value("x", MINUTE - 1, 1.0), NOW)
    assert found.close(NOW + 10 * SETTLE_MS) == []
    found.add(value("x", MINUTE, 1.0), NOW)
    assert found.close(NOW) == [] and found.close(NOW + SETTLE_MS - 1) == []
    [closed] = found.close(NOW + SETTLE_MS)
    assert closed.start_ms == 0 and closed.counted["last_amount"] == 51
    assert found.add(value("late", 5, 1.0), NOW) == "late: its window was closed"


def test_more_open_windows_than_kept_close_the_oldest_at_once():
    found = watch()
    for i in range(OPEN_WINDOWS + 1):
        assert found.add(value("c", i * MINUTE, 1.0), NOW) is None
    [oldest] = found.close(NOW)
    assert oldest.start_ms == 0


def test_a_window_keeps_at_most_max_values_per_feature_and_counts_the_rest():
    found = watch()
    for i in range(MAX_VALUES + 10):
        found.add(value(f"c{i}", 5, 1.0), NOW)
    [window] = closed_all(found, MINUTE)
    assert len(window.values["last_amount"]) == MAX_VALUES and window.counted["last_amount"] == MAX_VALUES + 10


def test_hostile_values_are_skipped_with_their_reason():
    found = watch()
    reasons = [found.add(v, NOW) for v in (
        value("c", 5, 1.0, view="nobody"), value("c", 5, 1.0, version="f" * 64),
        value("c", 5, 1.0, feature="not_defined"), value("c", NOW + AHEAD_OF_CLOCK_MS + 1, 1.0),
        value("c", 5, None, feature="spend_1m"), value("c", 5, "lots", feature="spend_1m"),
        value("c", 5, True, feature="spend_1m"))]
    assert reasons == ["no signed definition of its view version", "no signed definition of its view version",
                       "a feature its view does not define", "an event time more than an hour past the clock plus its view's lateness",
                       "no value (an empty window's mean, min or max)", "a str where sum gives numbers",
                       "a bool where sum gives numbers"]
    assert found.watched[(VIEW.name, VIEW.version)].windows == {}


def test_huge_infinite_and_mixed_values_are_judged_or_left_out_never_raised():
    found = watch()
    huge = [1e308, -1e308, float("inf"), float("nan")] * 20 + list(RNG.normal(0, 1, 40))
    fill(found, 0, huge)
    fill(found, 0, ["FR", 3, True, "x" * 10_000] * 10, feature="last_country")
    [window] = closed_all(found, MINUTE)
    assert found.report(window, []) is None               # the first window: references made, nothing judged
    fill(found, 2 * MINUTE, huge)
    fill(found, 2 * MINUTE, ["DE", 4, False, "y" * 10_000] * 10, feature="last_country")
    [window] = closed_all(found, 3 * MINUTE)
    report = found.report(window, [trained_on(VIEW.version, "last_amount", RNG.normal(0, 1, 60))])
    assert {f["feature"] for f in report["features"]} == {"last_amount", "last_country"}
    assert all(np.isfinite(f["statistic"]) for f in report["features"])
    assert first_profile("f", [1e308, -1e308])["name"] == "f"


def test_skew_alerts_once_per_set_of_mismatches_and_not_when_there_is_none():
    offline = [value("c1", 1000, 5.0, offset=1)]
    assert skew_alert(VIEW.name, VIEW.version, skew([value("c1", 1000, 5.0, offset=1)], offline), NOW) is None
    found = skew([value("c1", 1000, 6.0, offset=1)], offline)
    raised = skew_alert(VIEW.name, VIEW.version, found, NOW, "n")
    assert raised.value["kind"] == "feature-skew" and raised.value["severity"] == "critical"
    assert raised.value["model"] == subject(VIEW.name, VIEW.version)
    assert "1 of 1 online values differ" in raised.value["message"]
    check_record("mlbus.Alert", raised.value, edge=True)
    evidence = json.loads(raised.value["evidence_json"])
    assert evidence["mismatches"][0]["online"] == 6.0 and evidence["reasons"] == {"value-differs": 1}
    assert skew_alert(VIEW.name, VIEW.version, found, NOW + 1, "n").id == raised.id
    other = skew([value("c1", 1000, 7.0, offset=1), value("c2", 1000, 1.0, offset=1)], offline)
    assert skew_alert(VIEW.name, VIEW.version, other, NOW, "n").id != raised.id


def test_the_feature_series_fit_in_one_registry_and_the_nonce_is_the_keys_own():
    from prometheus_client import CollectorRegistry
    from services.drift_watcher.app import WindowMetrics
    from services.drift_watcher.feature_watching import FeatureMetrics, feature_nonce
    registry = CollectorRegistry()
    WindowMetrics(registry)
    FeatureMetrics(registry)                              # no name taken twice
    signer = type("Signer", (), {"private_key": b"k" * 32})()
    assert feature_nonce(signer) == feature_nonce(signer) != feature_nonce(None) == ""
    assert len(feature_nonce(signer)) == 32
