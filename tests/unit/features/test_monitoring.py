"""Training/serving skew, pure: online values against the offline store's of the same key (view, version, feature,
entity, event time) — a different value or one missing offline is a mismatch, one the offline store has not reached
yet is pending — and the model versions a ModelTrained says use a view."""
from __future__ import annotations

import json

from hypothesis import given, strategies as st

from services.domain.features_monitoring import positions_of, same, skew, views_used
from services.domain.features_windows import FeatureValue, SourceSpan

TOPIC = "business.events"


def value(entity: str, at_ms: int, amount, feature: str = "spend_1h", offset: int = 0, partition: int = 0,
          version: str = "a" * 64) -> FeatureValue:
    return FeatureValue("purchases", version, feature, entity, at_ms, amount, None,
                        (SourceSpan(TOPIC, partition, offset, offset, 1),))


def test_the_same_values_online_and_offline_are_no_skew():
    offline = [value("c1", 1000, 5.0, offset=1), value("c2", 1000, 2.5, offset=2), value("c1", 2000, True, "vip", 3)]
    found = skew(list(reversed(offline)), offline)
    assert (found.compared, found.mismatches, found.pending) == (3, (), ())


def test_a_value_that_differs_and_one_missing_offline_are_the_mismatches_with_what_each_side_holds():
    offline = [value("c1", 1000, 5.0, offset=1), value("c2", 1000, 2.5, offset=2)]
    online = [value("c1", 1000, 5.5, offset=1), value("c3", 1000, 1.0, offset=2), value("c2", 1000, 2.5, offset=2)]
    found = skew(online, offline)
    assert found.compared == 3
    assert [(m.entity, m.reason, m.online, m.offline) for m in found.mismatches] == [
        ("c1", "value-differs", 5.5, 5.0), ("c3", "missing-offline", 1.0, None)]
    assert found.mismatches[0].as_dict()["event_ms"] == 1000


def test_an_online_value_past_what_the_offline_store_read_is_pending_not_missing():
    offline = [value("c1", 1000, 5.0, offset=4)]
    online = [value("c2", 2000, 1.0, offset=9), value("c3", 2000, 1.0, offset=3, partition=1)]
    found = skew(online, offline)
    assert found.compared == 0 and found.mismatches == () and len(found.pending) == 2
    assert positions_of(offline) == {(TOPIC, 0): 4}
    assert skew(online, offline, {(TOPIC, 0): 9, (TOPIC, 1): 3}).mismatches[1].reason == "missing-offline"


def test_an_empty_offline_store_holds_everything_pending():
    assert len(skew([value("c1", 1000, 5.0)], []).pending) == 1


def test_a_value_of_another_event_time_or_version_is_not_the_same_value():
    offline = [value("c1", 1000, 5.0, offset=1)]
    assert skew([value("c1", 999, 5.0, offset=1)], offline).mismatches[0].reason == "missing-offline"
    assert skew([value("c1", 1000, 5.0, offset=1, version="b" * 64)], offline, {(TOPIC, 0): 1}).mismatches


def test_kinds_matter_and_floats_compare_within_a_relative_tolerance():
    assert same(0.1 + 0.2, 0.3) and same(3, 3.0) and same(float("nan"), float("nan")) and same(None, None)
    assert not same(True, 1) and not same(1, True) and not same("1", 1) and not same(1.0, 1.001)
    assert not same(None, 0) and same("x", "x") and not same(float("inf"), 1e308)


@given(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=300)),
       st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=300)))
def test_whatever_two_values_hold_the_check_answers_and_its_evidence_is_json(online, offline):
    found = skew([value("c" * 500, 1000, online, offset=1)], [value("c" * 500, 1000, offline, offset=1)])
    assert found.compared == 1
    for mismatch in found.mismatches:
        json.dumps(mismatch.as_dict(), allow_nan=False)
        assert len(mismatch.as_dict()["entity"]) <= 161


def test_the_views_a_model_version_was_trained_on_are_read_from_its_record_and_garbage_is_none():
    trained = {"feature_views_json": json.dumps({"entity": "customer_id", "time": "at",
                                                 "views": {"purchases": "a" * 64}, "columns": ["purchases__x"]})}
    assert views_used(trained) == {"purchases": "a" * 64}
    for garbage in (None, "", "[1]", '{"views": [1]}', '{"views": {"x": 3}}', "{nope", "1" * 10):
        assert views_used({"feature_views_json": garbage}) == {}, garbage
    assert views_used({}) == {}
