"""Feature values looked up at a time, one rule for training and serving: the newest value strictly before the
time, within the view's TTL, of the view's version; missing otherwise, with the reason. The properties: the
point-in-time join equals pandas.merge_asof (backward, exact matches excluded, tolerance = TTL), and no value from
the label's time or after it is ever used."""
from __future__ import annotations

import math

import pandas as pd
from hypothesis import given, settings, strategies as st

from services.domain.features_lookups import (EXPIRED, NO_VALUE, UNKNOWN, History, LabelRow, as_of_join,
                                              online_read)
from services.domain.features_windows import FeatureValue, SourceEvent, SourceSpan, aggregate
from tests.unit.features.test_windows import HOUR, MINUTE, TOPIC, view_of

VIEW = view_of({"name": "last_amount", "aggregate": "last", "field": "amount"},
               {"name": "spend_1h", "aggregate": "sum", "field": "amount", "window": "1h"}, ttl="1h")


def value(entity: str, at_ms: int, amount, feature: str = "last_amount", offset: int = 0,
          version: str = VIEW.version) -> FeatureValue:
    return FeatureValue(VIEW.name, version, feature, entity, at_ms, amount, None,
                        (SourceSpan(TOPIC, 0, offset, offset, 1),))


def look(history: list[FeatureValue], entity: str, at_ms: int, feature: str = "last_amount"):
    return History(history).look(VIEW, feature, entity, at_ms)


def test_a_value_is_seen_strictly_after_its_time_and_says_its_age_and_source():
    history = [value("c1", 10 * HOUR, 5.0, offset=4)]
    at_its_time = look(history, "c1", 10 * HOUR)
    assert (at_its_time.value, at_its_time.missing) == (None, NO_VALUE)
    assert at_its_time.reason == f"no value of purchases.last_amount (version {VIEW.version[:12]}) for 'c1' " \
                                 f"before {10 * HOUR}"
    after = look(history, "c1", 10 * HOUR + 1)
    assert (after.value, after.event_ms, after.age_ms, after.missing, after.reason) == (5.0, 10 * HOUR, 1, None, "")
    assert after.sources == (SourceSpan(TOPIC, 0, 4, 4, 1),) and after.view_version == VIEW.version


def test_a_value_as_old_as_the_ttl_is_used_and_one_a_millisecond_older_is_missing_with_the_reason():
    history = [value("c1", 10 * HOUR, 5.0)]
    assert look(history, "c1", 11 * HOUR).value == 5.0
    expired = look(history, "c1", 11 * HOUR + 1)
    assert (expired.value, expired.missing, expired.event_ms, expired.age_ms) == (None, EXPIRED, 10 * HOUR, HOUR + 1)
    assert expired.reason == f"the newest value, from {10 * HOUR}, is 3,600,001 ms old: past the TTL of 3,600,000 ms"


def test_the_newest_value_before_the_time_wins_and_of_two_at_one_time_the_later_offset():
    history = [value("c1", 10 * HOUR, 1.0, offset=9), value("c1", 9 * HOUR, 0.5, offset=1),
               value("c1", 10 * HOUR, 2.0, offset=7), value("c1", 12 * HOUR, 3.0, offset=10)]
    assert look(history, "c1", 11 * HOUR).value == 1.0
    assert look(list(reversed(history)), "c1", 11 * HOUR).value == 1.0
    assert look(history, "c1", 9 * HOUR + 30 * MINUTE).value == 0.5


def test_values_of_another_version_of_the_view_or_another_entity_are_not_used():
    history = [value("c1", 10 * HOUR, 1.0, version="0" * 64), value("c2", 10 * HOUR, 2.0)]
    assert look(history, "c1", 10 * HOUR + MINUTE).missing == NO_VALUE
    unknown = look(history, "c2", 11 * HOUR, feature="no_such")
    assert (unknown.missing, unknown.reason) == (UNKNOWN, "view 'purchases' has no feature 'no_such'")


def test_the_join_keeps_the_labels_order_and_the_features_asked_for_and_names_a_view_it_was_not_given():
    history = [value("c1", 10 * HOUR + 30 * MINUTE, 1.0), value("c1", 11 * HOUR, 7.0, feature="spend_1h"),
               value("c2", 10 * HOUR + MINUTE, 2.0)]
    labels = [LabelRow("c2", 10 * HOUR + 2 * MINUTE), LabelRow("c1", 11 * HOUR + MINUTE), LabelRow("c3", 11 * HOUR)]
    rows = as_of_join(labels, [VIEW], history)
    assert [row.label for row in rows] == labels
    assert [[(lk.feature, lk.value, lk.missing) for lk in row.lookups] for row in rows] == [
        [("last_amount", 2.0, None), ("spend_1h", None, NO_VALUE)],
        [("last_amount", 1.0, None), ("spend_1h", 7.0, None)],
        [("last_amount", None, NO_VALUE), ("spend_1h", None, NO_VALUE)]]
    [row] = as_of_join(labels[:1], [VIEW], history, wanted=[("other", "x"), ("purchases", "last_amount")])
    assert [(lk.view, lk.missing, lk.reason) for lk in row.lookups] == [
        ("other", UNKNOWN, "no view 'other' was given"), ("purchases", None, "")]


def test_an_online_read_gives_every_feature_of_the_view_with_its_age_or_why_it_is_missing():
    stored = [value("c1", 10 * HOUR, 1.0), value("c1", 9 * HOUR, 6.0, feature="spend_1h"),
              value("c1", 10 * HOUR + 30 * MINUTE, 99.0),          # stamped after `now`: a clock ahead of ours
              value("c2", 10 * HOUR + 5 * MINUTE, 2.0)]
    last, spend = online_read(VIEW, "c1", stored, now_ms=10 * HOUR + 10 * MINUTE)
    assert (last.value, last.age_ms, last.missing) == (1.0, 10 * MINUTE, None)
    assert (spend.value, spend.age_ms, spend.missing) == (None, HOUR + 10 * MINUTE, EXPIRED)
    assert [lk.missing for lk in online_read(VIEW, "c9", stored, now_ms=11 * HOUR)] == [NO_VALUE, NO_VALUE]


def test_a_purchase_at_the_labels_time_or_after_it_is_not_among_its_features():
    events = [SourceEvent("c1", at, {"amount": amount}, TOPIC, 0, offset) for offset, (at, amount) in
              enumerate([(10 * HOUR + MINUTE, 3.0), (11 * HOUR, 500.0), (11 * HOUR + MINUTE, 900.0)])]
    history = aggregate(VIEW, events).values
    at_11, just_after = as_of_join([LabelRow("c1", 11 * HOUR), LabelRow("c1", 11 * HOUR + 1)], [VIEW], history)
    # the 10:00-11:00 window's sum holds from 11:00, so it too is seen strictly after
    assert [(lk.feature, lk.value, lk.missing) for lk in at_11.lookups] == [("last_amount", 3.0, None),
                                                                            ("spend_1h", None, NO_VALUE)]
    assert [(lk.feature, lk.value) for lk in just_after.lookups] == [("last_amount", 500.0), ("spend_1h", 3.0)]


# The properties: a few entities' values at distinct times over a day, labels anywhere in it.
TTL_MS = {"1m": MINUTE, "30m": 30 * MINUTE, "2h": 2 * HOUR}
times = st.integers(0, 24 * HOUR) | st.integers(0, 24 * 60).map(lambda minutes: minutes * MINUTE)
histories = st.dictionaries(st.tuples(st.sampled_from(["a", "b", "c"]), times), st.floats(-1e6, 1e6), max_size=40)
label_rows = st.lists(st.tuples(st.sampled_from(["a", "b", "c", "d"]), times), min_size=1, max_size=30)


def history_of(found: dict, version: str) -> list[FeatureValue]:
    return [FeatureValue("purchases", version, "last_amount", entity, at, amount, None, ())
            for (entity, at), amount in found.items()]


@settings(max_examples=80, derandomize=True, deadline=None)
@given(found=histories, labels=label_rows, ttl=st.sampled_from(sorted(TTL_MS)))
def test_the_join_equals_pandas_merge_asof_backward_without_exact_matches_within_the_ttl(found, labels, ttl):
    view = view_of({"name": "last_amount", "aggregate": "last", "field": "amount"}, ttl=ttl)
    rows = as_of_join([LabelRow(e, t) for e, t in labels], [view], history_of(found, view.version))
    left = pd.DataFrame({"entity": [e for e, _ in labels], "time": [t for _, t in labels], "row": range(len(labels))})
    right = pd.DataFrame([(e, t, v) for (e, t), v in found.items()], columns=["entity", "time", "amount"]).astype(
        {"entity": str, "time": "int64", "amount": float})
    for frame in (left, right):
        frame["time"] = pd.to_datetime(frame["time"], unit="ms")
    merged = pd.merge_asof(left.sort_values("time"), right.sort_values("time"), on="time", by="entity",
                           direction="backward", allow_exact_matches=False,
                           tolerance=pd.Timedelta(milliseconds=TTL_MS[ttl])).sort_values("row")
    assert len(merged) == len(rows)
    for row, theirs in zip(rows, merged["amount"]):
        [ours] = row.lookups
        if math.isnan(theirs):
            assert ours.value is None and ours.missing in (NO_VALUE, EXPIRED)
        else:
            assert ours.value == theirs and ours.missing is None
            assert ours.event_ms < row.label.event_ms and 0 < ours.age_ms <= TTL_MS[ttl]


@settings(max_examples=60, derandomize=True, deadline=None)
@given(found=histories, labels=label_rows, later=st.lists(st.integers(0, 3 * HOUR), min_size=1, max_size=3))
def test_a_value_planted_at_or_after_a_labels_time_is_never_used(found, labels, later):
    view = view_of({"name": "last_amount", "aggregate": "last", "field": "amount"}, ttl="2h")
    honest = history_of(found, view.version)
    for entity, at in labels:
        planted = [FeatureValue("purchases", view.version, "last_amount", entity, at + delay, 1e12, None,
                                (SourceSpan(TOPIC, 0, 10 ** 9, 10 ** 9, 1),)) for delay in later]
        [row] = as_of_join([LabelRow(entity, at)], [view], honest + planted)
        [looked] = row.lookups
        assert looked.value != 1e12 and (looked.event_ms is None or looked.event_ms < at)
        assert [row] == as_of_join([LabelRow(entity, at)], [view], honest)     # as if it were not there
