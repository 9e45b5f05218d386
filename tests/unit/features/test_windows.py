"""A view's values from its events, in event time: tumbling and sliding windows, the quiet window after a busy one,
out-of-order events within the lateness, late events and redeliveries dropped with reasons, offsets carried. The
properties check the windows against pandas, computed plainly here."""
from __future__ import annotations

import contextlib
import math
from fractions import Fraction

import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from services.domain.features_views import parse_views
from services.domain.features_windows import (Numbers, SourceEvent, SourceSpan, Windows, aggregate, source_event,
                                             summary)

MINUTE, HOUR = 60_000, 3_600_000
TOPIC = "shop.purchases"


def view_of(*features: dict, lateness: str = "0s", ttl: str = "1d"):
    [view] = parse_views({"views": [{"name": "purchases", "entity": "customer_id", "source": {"topic": TOPIC},
                                     "lateness": lateness, "ttl": ttl, "owner": "ana", "features": list(features)}]})
    return view


def windowed(aggregate_name: str, window: str, slide: str | None = None, field: str | None = "amount") -> dict:
    feature = {"name": f"{aggregate_name}_{window}", "aggregate": aggregate_name, "window": window}
    return feature | ({"slide": slide} if slide else {}) | ({"field": field} if field else {})


def events(*timed: tuple, partition: int = 0) -> list[SourceEvent]:
    """(entity, event_ms, amount) in arrival order, at offsets 0, 1, 2 ... of one partition."""
    return [SourceEvent(entity, at, {"amount": amount}, TOPIC, partition, offset)
            for offset, (entity, at, amount) in enumerate(timed)]


def values_of(result, feature: str) -> list[tuple]:
    return [(v.entity, v.window_start_ms, v.event_ms, v.value) for v in result.values if v.feature == feature]


def test_a_tumbling_sum_holds_from_each_windows_end_and_a_quiet_window_after_a_busy_one_is_zero():
    # c2's event first: the watermark is the view's, not an entity's (c2 at 10:00 after c1 at 13:00 would be late)
    view = view_of(windowed("sum", "1h"))
    result = aggregate(view, events(("c2", 10 * HOUR, 2.0), ("c1", 10 * HOUR + 5 * MINUTE, 3.0),
                                    ("c1", 10 * HOUR + 50 * MINUTE, 4.5), ("c1", 13 * HOUR, 1.0)))
    assert values_of(result, "sum_1h") == [
        ("c1", 10 * HOUR, 11 * HOUR, 7.5), ("c1", 11 * HOUR, 12 * HOUR, 0.0),        # the quiet hour after
        ("c1", 13 * HOUR, 14 * HOUR, 1.0), ("c1", 14 * HOUR, 15 * HOUR, 0.0),
        ("c2", 10 * HOUR, 11 * HOUR, 2.0), ("c2", 11 * HOUR, 12 * HOUR, 0.0)]
    assert result.dropped == () and result.watermark_ms == 13 * HOUR


def test_a_sliding_window_counts_an_event_in_every_window_that_holds_it():
    view = view_of(windowed("count", "1h", "15m", field=None), windowed("mean", "1h", "30m"),
                   windowed("min", "30m", "10m"), windowed("max", "30m", "10m"))
    result = aggregate(view, events(("c1", 10 * HOUR + 5 * MINUTE, 3.0), ("c1", 10 * HOUR + 20 * MINUTE, -1.0)))
    counts = [(start, value) for _, start, _, value in values_of(result, "count_1h")]
    assert counts == [(9 * HOUR + 15 * MINUTE, 1), (9 * HOUR + 30 * MINUTE, 2), (9 * HOUR + 45 * MINUTE, 2),
                      (10 * HOUR, 2), (10 * HOUR + 15 * MINUTE, 1), (10 * HOUR + 30 * MINUTE, 0)]
    assert [value for *_, value in values_of(result, "mean_1h")] == [1.0, 1.0, None]     # 9:30 and 10:00 hold both
    assert [value for *_, value in values_of(result, "min_30m")] == [3.0, 3.0, -1.0, -1.0, -1.0, None]
    assert [value for *_, value in values_of(result, "max_30m")] == [3.0, 3.0, 3.0, -1.0, -1.0, None]


def test_an_event_within_the_lateness_counts_and_one_past_it_is_dropped_with_its_reason():
    arrivals = (("c1", 10 * HOUR + 50 * MINUTE, 1.0), ("c1", 11 * HOUR + 10 * MINUTE, 2.0),
                ("c1", 10 * HOUR + 55 * MINUTE, 4.0))                  # 15 minutes behind the newest
    features = (windowed("sum", "1h"), {"name": "last_amount", "aggregate": "last", "field": "amount"})
    on_time = aggregate(view_of(*features, lateness="20m"), events(*arrivals))
    # known from its end plus the lateness: 11:20
    assert values_of(on_time, "sum_1h")[0] == ("c1", 10 * HOUR, 11 * HOUR + 20 * MINUTE, 5.0) and on_time.dropped == ()
    assert len(values_of(on_time, "last_amount")) == 3
    late = aggregate(view_of(*features, lateness="10m"), events(*arrivals))
    assert values_of(late, "sum_1h")[0] == ("c1", 10 * HOUR, 11 * HOUR + 10 * MINUTE, 1.0)
    assert [(d.feature, d.reason) for d in late.dropped] == [
        ("sum_1h", f"1 of its windows closed at the watermark {11 * HOUR}"),
        ("last_amount", f"its time is before the watermark {11 * HOUR}")]
    assert [v for *_, v in values_of(late, "last_amount")] == [1.0, 2.0]
    assert late.dropped[0].event.event_ms == 10 * HOUR + 55 * MINUTE


def test_a_sliding_event_too_late_for_some_windows_still_counts_in_the_open_ones():
    view = view_of(windowed("count", "1h", "30m", field=None))
    result = aggregate(view, events(("c1", 11 * HOUR, 1.0), ("c1", 10 * HOUR + 40 * MINUTE, 1.0)))
    assert result.dropped[0].reason == f"1 of its windows closed at the watermark {11 * HOUR}"
    assert [(start, value) for _, start, _, value in values_of(result, "count_1h")] == [   # 10:00-11:00 closed
        (10 * HOUR + 30 * MINUTE, 2), (11 * HOUR, 1), (11 * HOUR + 30 * MINUTE, 0)]


def test_a_message_delivered_twice_counts_once():
    view = view_of(windowed("sum", "1h"))
    [first, second] = events(("c1", 10 * HOUR, 3.0), ("c1", 10 * HOUR + MINUTE, 4.0))
    result = aggregate(view, [first, second, first, second])
    assert values_of(result, "sum_1h")[0][-1] == 7.0
    assert [d.reason for d in result.dropped] == [f"offset 0 of {TOPIC}[0] is not past 1: delivered again",
                                                  f"offset 1 of {TOPIC}[0] is not past 1: delivered again"]


@pytest.mark.parametrize("event, says", [
    (SourceEvent("", 0, {}, TOPIC, 0, 0), "entity ''"),
    (SourceEvent("c\x00", 0, {}, TOPIC, 0, 0), "is not text of 1 to 256 printable"),
    (SourceEvent("c" * 257, 0, {}, TOPIC, 0, 0), "is not text of 1 to 256"),
    (SourceEvent(7, 0, {}, TOPIC, 0, 0), "entity '7'"),                                 # type: ignore[arg-type]
    (SourceEvent("c1", -1, {}, TOPIC, 0, 0), "event time -1 is not epoch milliseconds"),
    (SourceEvent("c1", True, {}, TOPIC, 0, 0), "event time True"),
    (SourceEvent("c1", 1.5, {}, TOPIC, 0, 0), "event time 1.5"),                       # type: ignore[arg-type]
    (SourceEvent("c1", 10 ** 30, {}, TOPIC, 0, 0), "is not epoch milliseconds"),
    (SourceEvent("c1", 0, [("amount", 1)], TOPIC, 0, 0), "values are not a mapping"),  # type: ignore[arg-type]
    (SourceEvent("c1", 0, {}, TOPIC, "0", 0), "its place"),                             # type: ignore[arg-type]
    (SourceEvent("c1", 0, {}, TOPIC, 0, -3), "its place"),
    ({"entity": "c1"}, "not a source event: dict"),
])
def test_an_unusable_event_is_dropped_with_its_reason_and_nothing_else_happens(event, says):
    view = view_of(windowed("sum", "1h"), {"name": "last_amount", "aggregate": "last", "field": "amount"})
    result = aggregate(view, [event])
    assert result.values == () and result.watermark_ms is None
    [dropped] = result.dropped
    assert dropped.feature is None and says in dropped.reason


def test_a_field_without_a_number_is_dropped_for_the_features_that_need_one_only():
    view = view_of(windowed("sum", "1h"), windowed("count", "1h", field=None),
                   {"name": "last_amount", "aggregate": "last", "field": "amount"})
    result = aggregate(view, [SourceEvent("c1", 10 * HOUR, {"amount": "12"}, TOPIC, 0, 0),
                              SourceEvent("c1", 10 * HOUR + 1, {"amount": float("nan")}, TOPIC, 0, 1),
                              SourceEvent("c1", 10 * HOUR + 2, {"amount": 10 ** 400}, TOPIC, 0, 2),
                              SourceEvent("c1", 10 * HOUR + 3, {}, TOPIC, 0, 3)])
    assert [(d.event.offset, d.feature) for d in result.dropped] == [
        (0, "sum_1h"), (1, "sum_1h"), (1, "last_amount"), (2, "sum_1h"), (2, "last_amount"), (3, "sum_1h"),
        (3, "last_amount")]
    assert values_of(result, "count_1h")[0][-1] == 4 and values_of(result, "sum_1h") == []
    assert [v for *_, v in values_of(result, "last_amount")] == ["12"]


def test_each_value_carries_the_offsets_it_came_from_by_partition():
    view = view_of(windowed("sum", "1h"), {"name": "last_amount", "aggregate": "last", "field": "amount"})
    arrivals = [SourceEvent("c1", 10 * HOUR + i, {"amount": 1.0}, TOPIC, partition, offset)
                for i, (partition, offset) in enumerate([(1, 7), (0, 3), (1, 9), (0, 4), (1, 12)])]
    result = aggregate(view, arrivals)
    [window, _quiet] = [v for v in result.values if v.feature == "sum_1h"]
    assert window.sources == (SourceSpan(TOPIC, 0, 3, 4, 2), SourceSpan(TOPIC, 1, 7, 12, 3))
    assert _quiet.sources == ()
    lasts = [v.sources for v in result.values if v.feature == "last_amount"]
    assert lasts[0] == (SourceSpan(TOPIC, 1, 7, 7, 1),) and len(lasts) == 5


def test_a_stream_emits_a_window_when_the_watermark_passes_its_end_and_the_rest_when_the_source_ends():
    view = view_of(windowed("sum", "1h"), lateness="10m")
    arrivals = events(("c1", 10 * HOUR, 1.0), ("c1", 11 * HOUR + 5 * MINUTE, 2.0), ("c1", 11 * HOUR + 10 * MINUTE, 4.0))
    windows = Windows(view)
    emitted = [[v.event_ms for v in windows.add(event)] for event in arrivals]
    # 11:10 less 10 minutes of lateness reaches 11:00; the value is known from 11:10 (its end plus the lateness)
    assert emitted == [[], [], [11 * HOUR + 10 * MINUTE]]
    assert aggregate(view, arrivals, final=False).values == tuple(v for v in aggregate(view, arrivals).values
                                                                 if v.event_ms <= 11 * HOUR + 10 * MINUTE)
    assert [(v.event_ms, v.value) for v in windows.close()] == [(12 * HOUR + 10 * MINUTE, 6.0),
                                                               (13 * HOUR + 10 * MINUTE, 0.0)]
    assert windows.close() == []


# The properties: events of a few entities over six hours, arriving out of order by less than the lateness.
WINDOWS = [("1h", None), ("1h", "15m"), ("30m", "10m"), ("45m", "20m"), ("7m", None)]
DURATION_MS = {"1h": HOUR, "15m": 15 * MINUTE, "30m": 30 * MINUTE, "10m": 10 * MINUTE, "45m": 45 * MINUTE,
               "20m": 20 * MINUTE, "7m": 7 * MINUTE}
LATENESS = {"0s": 0, "5m": 5 * MINUTE, "30m": 30 * MINUTE}

times = st.integers(0, 6 * HOUR) | st.integers(0, 6 * 60).map(lambda minutes: minutes * MINUTE)   # on the edges too
timed_events = st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), times,
                                  st.floats(-1e6, 1e6, allow_nan=False) | st.integers(-1000, 1000).map(float),
                                  st.floats(0, 1, exclude_max=True)), min_size=1, max_size=40)


def arrived(timed: list[tuple], lateness_ms: int) -> list[SourceEvent]:
    """The events in an arrival order where none is later than the lateness: sorted by time plus a delay under it,
    so every event seen before one is less than the lateness newer; offsets in arrival order, two partitions."""
    order = sorted(timed, key=lambda e: e[1] + e[3] * lateness_ms)
    return [SourceEvent(entity, at, {"amount": amount}, TOPIC, i % 2, i) for i, (entity, at, amount, _) in
            enumerate(order)]


def pandas_windows(frame: pd.DataFrame, window_ms: int, slide_ms: int) -> pd.DataFrame:
    """Every window [start, start + window) on the slide's grid from before the first event to after the last, per
    entity: each event paired with each start (a cross join), kept where the window holds it, grouped by entity and
    start, then every (entity, start) of the grid; kept: the non-empty windows and each one after a non-empty one."""
    first = (frame["time"].min() - window_ms) // slide_ms * slide_ms
    starts = pd.DataFrame({"start": range(first, frame["time"].max() + slide_ms + 1, slide_ms)})
    pairs = frame.merge(starts, how="cross")
    inside = pairs[(pairs["time"] >= pairs["start"]) & (pairs["time"] < pairs["start"] + window_ms)]
    stats = inside.groupby(["entity", "start"])["amount"].agg(["count", "sum", "mean", "min", "max"])
    grid = pd.MultiIndex.from_product([sorted(frame["entity"].unique()), starts["start"]], names=["entity", "start"])
    table = stats.reindex(grid).fillna({"count": 0, "sum": 0.0}).reset_index()
    before = table.groupby("entity")["count"].shift(1, fill_value=0)
    return table[(table["count"] > 0) | (before > 0)]


def same(ours, theirs) -> bool:
    if ours is None or (isinstance(theirs, float) and math.isnan(theirs)):
        return ours is None and math.isnan(theirs)
    return math.isclose(ours, theirs, rel_tol=1e-9, abs_tol=1e-6)


@settings(max_examples=60, derandomize=True, deadline=None)
@given(timed=timed_events, window=st.sampled_from(WINDOWS), lateness=st.sampled_from(sorted(LATENESS)))
def test_windowed_values_equal_pandas_computing_the_same_windows(timed, window, lateness):
    size, slide = window
    view = view_of(*(windowed(name, size, slide, field=None if name == "count" else "amount")
                     for name in ("count", "sum", "mean", "min", "max")), lateness=lateness)
    result = aggregate(view, arrived(timed, LATENESS[lateness]))
    assert result.dropped == ()
    frame = pd.DataFrame([(e, t, a) for e, t, a, _ in timed], columns=["entity", "time", "amount"])
    expected = pandas_windows(frame, DURATION_MS[size], DURATION_MS[slide or size])
    for name in ("count", "sum", "mean", "min", "max"):
        ours = {(v.entity, v.window_start_ms): v for v in result.values if v.feature == f"{name}_{size}"}
        assert sorted(ours) == sorted(zip(expected["entity"], expected["start"])), name
        for entity, start, theirs in zip(expected["entity"], expected["start"], expected[name]):
            value = ours[(entity, start)]
            assert value.event_ms == start + DURATION_MS[size] + LATENESS[lateness]    # known from then
            assert same(value.value, theirs), (name, entity, start, value.value, theirs)


@settings(max_examples=40, derandomize=True, deadline=None)
@given(timed=timed_events, size=st.sampled_from(["1h", "7m", "45m"]))
def test_tumbling_windows_equal_pandas_resample_from_the_epoch(timed, size):
    view = view_of(*(windowed(name, size, field=None if name == "count" else "amount")
                     for name in ("count", "sum", "mean", "min", "max")))
    result = aggregate(view, arrived(timed, 0))
    frame = pd.DataFrame([(e, t, a) for e, t, a, _ in timed], columns=["entity", "time", "amount"])
    frame["time"] = pd.to_datetime(frame["time"], unit="ms")
    resampled = frame.set_index("time").groupby("entity")["amount"].resample(
        f"{DURATION_MS[size]}ms", origin="epoch").agg(["count", "sum", "mean", "min", "max"]).reset_index()
    busy = resampled[resampled["count"] > 0]
    for name in ("count", "sum", "mean", "min", "max"):
        ours = {(v.entity, v.window_start_ms): v.value for v in result.values if v.feature == f"{name}_{size}"
                and v.sources}
        starts = (busy["time"] - pd.Timestamp(0)) // pd.Timedelta(milliseconds=1)
        assert sorted(ours) == sorted(zip(busy["entity"], starts))
        for entity, start, theirs in zip(busy["entity"], starts, busy[name]):
            assert same(ours[(entity, start)], theirs)


@settings(max_examples=40, derandomize=True, deadline=None)
@given(timed=timed_events, lateness=st.sampled_from(["5m", "30m"]))
def test_the_values_are_the_same_whatever_the_arrival_order_within_the_lateness(timed, lateness):
    view = view_of(windowed("sum", "1h", "15m"), windowed("mean", "30m"),
                   {"name": "last_amount", "aggregate": "last", "field": "amount"}, lateness=lateness)
    in_order = aggregate(view, arrived([(e, t, a, 0.0) for e, t, a, _ in timed], 0))
    shuffled = aggregate(view, arrived(timed, LATENESS[lateness]))
    key = lambda v: (v.feature, v.entity, v.event_ms, v.window_start_ms, v.value)   # noqa: E731 (offsets differ)
    assert sorted(map(key, in_order.values), key=repr) == sorted(map(key, shuffled.values), key=repr)
    assert shuffled == aggregate(view, arrived(timed, LATENESS[lateness]))            # deterministic
    lasts = sorted((v.entity, v.event_ms, v.value) for v in shuffled.values if v.feature == "last_amount")
    assert lasts == sorted((e, t + LATENESS[lateness], a) for e, t, a, _ in timed)     # known from then


def test_a_record_becomes_an_event_by_the_views_entity_and_event_time_fields():
    from datetime import datetime, timedelta, timezone
    [timed] = parse_views({"views": [{"name": "v", "entity": "customer_id", "source": {"topic": TOPIC},
                                      "event_time": "paid_at", "ttl": "1d", "owner": "ana",
                                      "features": [{"name": "n", "aggregate": "count", "window": "1h"}]}]})
    untimed = view_of(windowed("count", "1h", field=None))
    paid = datetime(2026, 12, 6, 10, tzinfo=timezone.utc)
    event = source_event(timed, {"customer_id": 42, "paid_at": paid}, 5, TOPIC, 1, 9)
    assert (event.entity, event.event_ms, event.partition, event.offset) == ("42", int(paid.timestamp()) * 1000, 1, 9)
    assert source_event(untimed, {"customer_id": "c1"}, 1234, TOPIC, 0, 0).event_ms == 1234     # the record's time
    unusable = [source_event(timed, {"customer_id": "c1"}, 5, TOPIC, 0, 0),                     # no event time
                source_event(timed, {"customer_id": "c1", "paid_at": paid.replace(tzinfo=None)}, 5, TOPIC, 0, 1),
                source_event(timed, {"customer_id": True, "paid_at": paid}, 5, TOPIC, 0, 2),
                source_event(timed, {"paid_at": paid - timedelta(hours=1)}, 5, TOPIC, 0, 3),
                source_event(timed, "not a mapping", 5, TOPIC, 0, 4)]                           # type: ignore[arg-type]
    result = aggregate(timed, unusable)
    assert result.values == () and [d.reason.split(" ")[0:2] for d in result.dropped] == [
        ["event", "time"], ["event", "time"], ["entity", "'True'"], ["entity", "'None'"], ["entity", "'None'"]]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.floats(allow_nan=False, allow_infinity=False),
                          st.sampled_from([1e308, -1e308, 1e-308, 0.1, -0.0, 2.0 ** 53])), max_size=200))
def test_a_windows_numbers_give_what_the_whole_list_gives_in_room_that_does_not_grow(numbers):
    """Numbers (a window's running state) against the list it replaces: the exact sum rounded once — or None past
    what a double holds (math.fsum's, wherever fsum's running sums stay finite; its intermediate overflow depended
    on the order) — the count, min and max, for any finite doubles in any order; its state stays a few hundred
    bytes."""
    kept = Numbers()
    for number in numbers:
        kept.add(number)
    try:
        expected = float(sum(map(Fraction, numbers), Fraction(0)))
    except OverflowError:
        expected = None
    assert summary("sum", kept, len(numbers)) == expected
    with contextlib.suppress(OverflowError):
        assert math.fsum(numbers) == expected
    if numbers:
        assert (kept.count, kept.least, kept.most) == (len(numbers), min(numbers), max(numbers))
        assert summary("mean", kept, len(numbers)) == (None if expected is None else expected / len(numbers))
    assert kept.units.bit_length() <= 2100 + len(numbers).bit_length()
