"""Red team of the feature store (issue 36), from outside: hostile source events, definitions and values, the
start-up rebuild, insiders, resource bombs and the offline store's paths.

A test that passes documents a defence. A finding that fails today is `xfail(strict=True)` with the exact input
and its consequence in the reason: when it is fixed the test passes, strict xfail fails, and the mark comes off."""
from __future__ import annotations

import gc
import json
import math
import tracemalloc
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import exc as sa_exc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.adapters import OfflineStore, OnlineStore, value_record, views_record
from services.adapters.feature_store import value_from_record
from services.bus import BadInput, Bus
from services.bus.edge import CONTROL
from services.domain import FeatureValue, SourceSpan, source_event, views_from_yaml
from services.domain.features_lookups import online_read
from services.domain.features_views import MAX_WINDOWS_PER_EVENT, ViewsRefused, canonical, canonical_bytes
from services.domain.features_windows import MAX_EVENT_MS, Windows
from services.featurizer import adapters as featurizer_adapters
from services.featurizer.core import FeaturizerState
from services.featurizer.handlers import Featurizer, definition
from services.scorer.features import ScorerFeatures
from tests.support.handlers import accept, received, refusing_people
from tests.unit.featurizer.test_featurizer import Shelf
from tests.support.feature_views import LAST_AND_SUM, purchases_view
from tests.support.hostile import HOSTILE_JSON, HOSTILE_STRINGS, examples, strategy_for

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
T0 = datetime(2026, 12, 1, tzinfo=timezone.utc)
T0_MS = (T0 - EPOCH) // timedelta(milliseconds=1)
SOURCES = {"business.events"}
VIEW = purchases_view(*LAST_AND_SUM, "{name: mean_1h, aggregate: mean, field: amount, window: 1h, slide: 30m}",
                      "{name: n_1h, aggregate: count, window: 1h, slide: 30m}",
                      "{name: max_1h, aggregate: max, field: amount, window: 1h}")


def rebuilt(monkeypatch, handler: Featurizer, history: dict[str, list]) -> list[FeatureValue]:
    """adapters.rebuild over `history` (topic → Received, as decode_message gives them), no group offsets."""
    class Bus_:
        class catalogue:
            physical = logical = staticmethod(lambda name: name)

    monkeypatch.setattr(featurizer_adapters, "committed", lambda bus, topics: {})
    monkeypatch.setattr(featurizer_adapters, "read_batches",
                        lambda bus, topics, until=None, timeout_s=60.0: iter([[m for t in topics for m in history[t]]]))
    monkeypatch.setattr(featurizer_adapters, "decode_message", lambda bus, message: message)
    return featurizer_adapters.rebuild(Bus_(), handler, "features.views")


def featurizer(verify=accept, view=VIEW):
    state = FeaturizerState()
    if view is not None:
        state.define(view)
    online = OnlineStore("sqlite://")
    return Featurizer(state, online, Shelf(), verify, SOURCES, lambda topic, read_to: [], clock=lambda: T0), online


def business_event(entity, occurred_at, fields, offset=0, partition=0, kind="purchase"):
    value = {"event_id": f"e{offset}", "kind": kind, "entity": str(entity)[:300], "source": "shop",
             "occurred_at": occurred_at, "fields": fields}
    at = occurred_at if isinstance(occurred_at, datetime) and occurred_at.tzinfo and occurred_at < FUTURE else None
    return replace(received("mlbus.BusinessEvent", value, topic="business.events", offset=offset),
                   partition=partition, timestamp_ms=max(T0_MS, int(at.timestamp() * 1000)) if at else T0_MS)


def defined(of=VIEW, by="cli:dana", **lies):
    return received("mlbus.FeatureViewDefined", {**views_record(of, by, T0), **lies}, topic="features.views")


def encodable(value: FeatureValue) -> bool:
    """What features.online's Avro union takes: null, boolean, a long, a finite double, text."""
    v = value.value
    return v is None or isinstance(v, (bool, str)) or (isinstance(v, int) and -(2 ** 63) <= v < 2 ** 63) or \
        (isinstance(v, float) and math.isfinite(v))


# ------------------------------------------------------------------ defences: hostile source events
ENTITIES = st.one_of(st.sampled_from(["c1", "", " ", "a" * 257, "a" * 10_000, "\x00", "c\n1", "\u202eevil", "名前",
                                      "../../etc/passwd", "a/b/c", -1, 2 ** 64, 1.5, math.nan, True, None,
                                      ["c1"], {"c": 1}]), st.text(max_size=12))
TIMES = st.one_of(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59),
                               timezones=st.just(timezone.utc)),
                  st.sampled_from([EPOCH, EPOCH - timedelta(milliseconds=1), datetime(2026, 12, 1),  # naive
                                   datetime.max.replace(tzinfo=timezone.utc), MAX_EVENT_MS, -1, None, "2026"]))
FIELD_VALUES = st.one_of(st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324, -0.0, 2 ** 63 - 1,
                                          -(2 ** 63), True, None, "", "a" * 100_000, "\x00", b"\x00", [1, 2],
                                          {"nested": {"deeper": [math.nan]}}, object()]),
                         st.floats(), st.integers(-(2 ** 63), 2 ** 63 - 1), st.text(max_size=8))
FIELDS = st.one_of(
    st.fixed_dictionaries({"customer": ENTITIES, "amount": FIELD_VALUES}),
    st.dictionaries(st.text(max_size=6), FIELD_VALUES, max_size=6),
    st.sampled_from([None, [], "fields", {"customer": "c1", **{f"k{i}": float(i) for i in range(50_000)}}]))


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(st.lists(st.tuples(ENTITIES, TIMES, FIELDS), min_size=1, max_size=6))
def test_hostile_business_events_are_counted_or_dropped_never_raised_and_values_stay_encodable(events):
    """Entities with control characters or 10k characters, times from year 1 to 9999 (naive, raw longs, None),
    fields maps of 50k keys, NaN / ±inf / nested / bytes values: the handler drops or counts, never raises, and
    every value it publishes is one features.online's Avro union takes, for an entity of 1..256 printable chars."""
    handler, _ = featurizer()
    batch = [business_event(e, at, f, offset=i) for i, (e, at, f) in enumerate(events)]
    for result in handler(batch):
        assert isinstance(result, list), result
        for event in result:
            value = value_from_record(event.value)
            assert encodable(value) and 0 < len(value.entity) <= 256 and not CONTROL.search(value.entity)


# ------------------------------------------------------------------ defences: definitions
def test_definitions_not_signed_by_a_data_scientist_are_refused():
    """Unsigned (the broker admin), or signed by an approver: the verifier refuses, the record is a BadInput."""
    handler, _ = featurizer(verify=refusing_people("signed by approver:ann, not a data scientist"), view=None)
    [refused] = handler([defined()])
    assert isinstance(refused, BadInput) and "not taken" in str(refused)


def _lying_json(**changes) -> str:
    form = {**canonical(VIEW), **changes}
    return canonical_bytes(form).decode()


@pytest.mark.parametrize("lie", [
    {"definition_json": _lying_json(name="../../etc")},                               # a name that is a path
    {"definition_json": _lying_json(name="a/b")},
    {"view": "../../etc"},
    {"version": "../../" + "0" * 58},                                                 # a version that is a path
    {"source_topic": "business.events.other"},                                        # fields that lie
    {"owner": "mallory"},
    {"definition_json": _lying_json(source={"topic": "features.online"})},            # a topic it does not consume
    {"definition_json": _lying_json(source={"topic": "audit.log"})},
    {"definition_json": _lying_json(source={"dataset": "shop_returns"})},
    *({"definition_json": text} for text in HOSTILE_JSON),                            # huge, deep, not JSON
    {"definition_json": json.dumps({**canonical(VIEW), "features": [{"name": f"f{i}", "aggregate": "count",
                                                                     "window_ms": 3_600_000} for i in range(201)]})},
])
def test_a_lying_path_named_unconsumed_or_hostile_definition_is_refused_in_words(lie):
    handler, _ = featurizer(view=None)
    message = defined(**lie)
    if "definition_json" in lie and lie["definition_json"].startswith("{") and "../" not in lie["definition_json"]:
        try:    # keep the claimed fields equal to the body where it parses, so only the body is judged
            body = json.loads(lie["definition_json"])
            message = replace(message, value={**message.value, "source_topic": body["source"].get("topic"),
                                              "source_dataset": body["source"].get("dataset")})
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            pass
    with pytest.raises(BadInput):
        definition(message, accept, SOURCES)
    [result] = handler([message])
    assert isinstance(result, BadInput) and not handler.state.views


def test_any_schema_valid_definition_record_only_ever_gives_a_view_or_a_refusal():
    """What a rebuild folds (every record of features.views, ever): a view, or BadInput — which the start-up path
    skips — never another exception that would crash-loop the featurizer at every start."""
    bus = Bus.from_env({"MLBUS_NAMESPACE": "t."})
    schema = bus.schemas.schema("mlbus.FeatureViewDefined").parsed
    for value in examples(strategy_for(schema), 120, seed_value=36):
        try:
            definition(received("mlbus.FeatureViewDefined", value, topic="features.views"), accept, SOURCES)
        except BadInput:
            pass


# ------------------------------------------------------------------ defences: the start-up path
def test_the_start_up_rebuild_skips_poison_definitions_and_events_and_goes_on(monkeypatch):
    """rebuild() over a features.views history holding unsigned-looking, lying, huge and deep definitions beside a
    good one, and a business.events history of hostile events: no exception, the good view is defined and
    computed, the poison ones are not."""
    good = defined()
    poison = [defined(definition_json=text) for text in HOSTILE_JSON] + \
        [defined(view="other"), defined(definition_json=_lying_json(name="../../x")), defined(version="f" * 64)]
    history = {"features.views": [replace(m, offset=i) for i, m in enumerate([*poison, good])],
               "business.events": [business_event(e, at, f, offset=i) for i, (e, at, f) in enumerate(
                   [("c1", T0, {"customer": "c1", "amount": 1.0}), ("\x00", T0, {"customer": "\x00"}),
                    ("c1", T0, {"customer": "a" * 10_000, "amount": math.nan}),
                    ("c1", datetime(9999, 1, 1, tzinfo=timezone.utc), {"customer": "c1", "amount": -math.inf}),
                    ("c1", T0 + timedelta(hours=3), {"customer": "c1", "amount": 2.0})])]}
    handler, _ = featurizer(view=None)
    backlog = rebuilt(monkeypatch, handler, history)
    assert list(handler.state.views) == [VIEW.version]
    assert {(v.feature, v.entity) for v in backlog} >= {("last_amount", "c1")}
    assert all(encodable(v) for v in backlog)


# ------------------------------------------------------------------ defences: the offline store's paths
@pytest.mark.parametrize("view, version, part", [
    ("../../outside", VIEW.version, "p"), ("{tmp}/absolute", VIEW.version, "p"), ("purchases", "../../../../x", "p"),
    ("purchases", VIEW.version, "../../../outside"), ("purchases", VIEW.version, "{tmp}/absolute"),
    ("..", VIEW.version, "p"), ("purchases", "..", "p"), ("purchases", VIEW.version, ".hidden"),
    ("purchases", VIEW.version, "a\\..\\..\\b"), ("purchases", VIEW.version, "")])
def test_the_offline_store_writes_and_reads_nothing_outside_its_root(tmp_path, view, version, part):
    """No view name, version or part name makes a path outside root/<view>/<version[:16]>/: the store refuses
    what is not a plain name (its callers only pass signed views' names today: the store holds the line itself).
    Before the fix, view '../../outside' wrote <root>/../../outside/<version[:16]>/p.parquet and an absolute view
    name wrote there."""
    view, part = view.replace("{tmp}", str(tmp_path / "elsewhere")), part.replace("{tmp}", str(tmp_path / "elsewhere"))
    root = tmp_path / "sub" / "store"
    store = OfflineStore(root)
    value = FeatureValue(view, version, "last_amount", "c1", T0_MS, 1.0, None,
                         (SourceSpan("business.events", 0, 1, 1, 1),))
    with pytest.raises(ValueError):
        store.write([value], part)
    if (view, version) != ("purchases", VIEW.version):
        with pytest.raises(ValueError):
            store.read(view, version)
    assert [p for p in tmp_path.rglob("*") if not p.is_relative_to(root) and p != root.parent] == []


# ------------------------------------------------------------------ defences: serving's copy of features.online
def test_hostile_features_online_records_never_stop_the_scorers_copy(tmp_path):
    """Schema-valid FeatureValue records (a version no view has, sources with negative offsets, NaN, 1 MiB text,
    times at both ends): folded or refused, and the flush that stores them never raises."""
    bus = Bus.from_env({"MLBUS_NAMESPACE": "t."})
    schema = bus.schemas.schema("mlbus.FeatureValue").parsed
    features = ScorerFeatures(OnlineStore(f"sqlite:///{tmp_path / 'scorer.db'}"))
    drawn = examples(strategy_for(schema), 150, seed_value=7)
    drawn.append({**value_record(FeatureValue("purchases", "0" * 64, "f", "c1", T0_MS, 1.0, None,
                                              (SourceSpan("business.events", -5, -9, -7, -1),)), T0)})
    for offset, value in enumerate(drawn):
        try:
            features.fold(received("mlbus.FeatureValue", value, topic="features.online", offset=offset))
        except Exception:       # noqa: BLE001 - the follower skips a record its fold refuses
            pass
    features.flush()
    assert features.held("purchases", "0" * 64, "c1")


# ------------------------------------------------------------------ findings
FUTURE = datetime(9999, 12, 31, tzinfo=timezone.utc)


# Fixed: an event dated more than MAX_AHEAD_MS after the broker took it (business.events is LogAppendTime) is
# dropped with its reason (services/featurizer/core.py); the far future and next year alike.
@pytest.mark.parametrize("future", [datetime(9999, 12, 31, tzinfo=timezone.utc),
                                    datetime(2027, 12, 1, tzinfo=timezone.utc)])
def test_a_future_dated_event_does_not_freeze_the_view_for_every_other_entity(future):
    handler, online = featurizer()
    handler([replace(business_event("mallory", future, {"customer": "mallory", "amount": 1.0}, offset=0), timestamp_ms=T0_MS)])
    handler([business_event("c1", T0 + timedelta(minutes=1), {"customer": "c1", "amount": 5.0}, offset=1)])
    assert [v.value for v in online.get("purchases", VIEW.version, "c1") if v.feature == "last_amount"] == [5.0]


# Fixed: every reader of features.online skips a value dated more than AHEAD_OF_CLOCK_MS ahead of its clock
# (the scorer's stored_value_problem, the drift-watcher's watch, the console's freshness).
def test_serving_reads_the_real_newest_value_after_a_future_dated_one(tmp_path):
    features = ScorerFeatures(OnlineStore(f"sqlite:///{tmp_path / 'scorer.db'}"))
    for offset, (at, amount) in enumerate([(FUTURE, 1.0), (T0 + timedelta(hours=10), 5.0)]):
        value = FeatureValue("purchases", VIEW.version, "last_amount", "c1", (at - EPOCH) // timedelta(milliseconds=1),
                             amount, None, (SourceSpan("business.events", 0, offset, offset, 1),))
        try:
            features.fold(received("mlbus.FeatureValue", value_record(value, T0), topic="features.online",
                                   offset=offset))
        except ValueError:
            pass
    features.flush()
    now_ms = T0_MS + 12 * 3_600_000
    looked = online_read(VIEW, "c1", features.held("purchases", VIEW.version, "c1"), now_ms)
    assert next(lookup for lookup in looked if lookup.feature == "last_amount").value == 5.0


def bomb(features: int, slide: str = "528m") -> str:
    listed = "\n".join(f"      - {{name: f{i}, aggregate: sum, field: amount, window: 366d, slide: {slide}}}"
                       for i in range(features))
    return f"""
views:
  - name: bomb
    entity: customer
    source: {{topic: business.events}}
    ttl: 2d
    owner: eve
    features:
{listed}
"""


# Fixed: parse_views bounds the windows one event opens summed over a view's features (MAX_WINDOWS_PER_EVENT).
def test_a_view_within_every_limit_cannot_make_one_event_open_more_than_MAX_WINDOWS_PER_EVENT_windows():
    try:
        [view] = views_from_yaml(bomb(200))
    except ViewsRefused:
        return                          # refused whole: the defence
    [small] = views_from_yaml(bomb(5))  # 5 x 999 windows: enough to show it without the 7 s
    windows = Windows(small)
    windows.add(source_event(small, {"customer": "c1", "amount": 1.0}, T0_MS, "business.events", 0, 0))
    assert len(windows.open) <= MAX_WINDOWS_PER_EVENT, (view.name, len(windows.open))


# Fixed: a window keeps its numbers' exact sum (one integer), a count, a least and a most (features_windows.Numbers).
def test_an_open_windows_state_does_not_grow_with_its_events():
    [view] = views_from_yaml("""
views:
  - {name: busy, entity: customer, source: {topic: business.events}, ttl: 2d, owner: eve,
     features: [{name: spend_1d, aggregate: sum, field: amount, window: 1d}]}
""")
    windows = Windows(view)
    add = lambda i: windows.add(source_event(view, {"customer": "c1", "amount": i * 0.1}, T0_MS + i, "business.events",
                                             0, i))
    for i in range(1000):
        add(i)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(1000, 21_000):
            add(i)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 64 * 1024, f"{grown:,} bytes for 20,000 events in one window"


HUGE = [("c1", T0, {"customer": "c1", "amount": 1e308}),
        ("c1", T0 + timedelta(minutes=1), {"customer": "c1", "amount": 1e308}),
        ("c2", T0 + timedelta(hours=3), {"customer": "c2", "amount": 1.0})]       # innocent: its time closes c1's


def test_a_window_whose_sum_overflows_has_no_value_and_raises_nothing():
    """FIXED (features_windows.summary): BusinessEvent{entity: c1, occurred_at: 2026-12-01T00:00, fields:
    {customer: c1, amount: 1e308}}, the same at 00:01, then any event of any entity at 03:00 (its watermark closes
    c1's window) raised OverflowError('intermediate overflow in fsum') out of the handler for `sum` and `mean`:
    the innocent closing record failed (dead-lettered by the poison ledger after retries), and the window, already
    popped from the state, was lost. Now the sum and mean of that window are None; max is 1e308."""
    handler, _ = featurizer()
    results = handler([business_event(e, at, f, offset=i) for i, (e, at, f) in enumerate(HUGE)])
    assert all(isinstance(r, list) for r in results)
    made = {(v.feature, v.window_start_ms): v.value for part in handler.offline.parts.values() for v in part
            if v.entity == "c1"}
    assert made[("spend_1h", T0_MS)] is None and made[("mean_1h", T0_MS)] is None and made[("max_1h", T0_MS)] == 1e308


def test_the_start_up_rebuild_survives_a_window_whose_sum_overflows(monkeypatch):
    """FIXED with the above: the same three events in business.events made every start crash — rebuild() folds the
    source's history unguarded (only definitions are caught), before the runtime and its poison ledger exist, so
    the featurizer crash-looped for as long as the events are retained (business.events: retention -1)."""
    history = {"features.views": [defined()],
               "business.events": [business_event(e, at, f, offset=i) for i, (e, at, f) in enumerate(HUGE)]}
    handler, _ = featurizer(view=None)
    rebuilt(monkeypatch, handler, history)


class RefusingOnce(OnlineStore):
    """An online store whose database refuses the first write (a DataError: the record's, not infrastructure)."""

    refused = False

    def put(self, values):
        if not self.refused:
            self.refused = True
            raise sa_exc.DataError("INSERT INTO feature_online ...", {}, ValueError("value refused"))
        return super().put(values)


# Fixed: a batch whose values cannot be stored raises InfrastructureError — the runtime then crashes rather than
# handing the records one by one to windows that took them already; a restart rebuilds the windows from the
# committed offsets and handles the batch whole, giving the values a clean run gives.
def test_a_batch_that_cannot_be_stored_stops_the_featurizer_and_a_rebuilt_one_gives_the_same_values():
    from services.bus.errors import InfrastructureError, is_infrastructure
    batch = [business_event(f"c{i % 3}", T0 + timedelta(minutes=20 * i), {"customer": f"c{i % 3}",
                                                                            "amount": float(i)}, offset=i)
             for i in range(12)]
    clean, clean_online = featurizer()
    clean(batch)
    state = FeaturizerState()
    state.define(VIEW)
    handler = Featurizer(state, RefusingOnce("sqlite://"), Shelf(), accept, SOURCES, lambda topic, read_to: [],
                         clock=lambda: T0)
    with pytest.raises(InfrastructureError) as raised:
        handler(batch)
    assert is_infrastructure(raised.value)
    restarted, restarted_online = featurizer()          # what the restart rebuilds: nothing committed yet
    restarted(batch)
    assert sorted(map(repr, restarted_online.all())) == sorted(map(repr, clean_online.all()))


# Fixed: the online store orders a key's values by time then place (topic, partition, offset), the join's rule.
def test_training_and_serving_pick_the_same_value_of_a_tie():
    values = [FeatureValue("purchases", VIEW.version, "last_amount", "c1", T0_MS, amount, None,
                           (SourceSpan("business.events", partition, offset, offset, 1),))
              for amount, partition, offset in ((1.0, 0, 100), (2.0, 1, 5))]
    online = OnlineStore("sqlite://")
    online.put(values)
    [served] = online.get("purchases", VIEW.version, "c1")
    [trained] = [lookup for lookup in online_read(VIEW, "c1", values, T0_MS + 1) if lookup.feature == "last_amount"]
    assert served.value == trained.value


# Fixed: a window's value holds from its end plus the view's lateness (features_windows._value), when no event can
# change it any more; before, a label between the end and then saw a value built partly from later arrivals.
def test_training_sees_at_a_labels_time_only_what_serving_could_have_seen_then():
    handler, online = featurizer()
    arrivals = [("c1", timedelta(minutes=10), 1.0), ("c2", timedelta(minutes=90), 1.0)]
    handler([business_event(e, T0 + at, {"customer": e, "amount": a}, offset=i) for i, (e, at, a) in enumerate(arrivals)])
    now_ms = T0_MS + 90 * 60_000
    [served] = [lookup for lookup in online_read(VIEW, "c1", online.get("purchases", VIEW.version, "c1"), now_ms)
                if lookup.feature == "spend_1h"]
    later = [("c1", timedelta(minutes=50), 5.0), ("c2", timedelta(minutes=150), 1.0)]
    handler([business_event(e, T0 + at, {"customer": e, "amount": a}, offset=2 + i) for i, (e, at, a) in enumerate(later)])
    offline = [value for part in handler.offline.parts.values() for value in part]
    [trained] = [lookup for lookup in online_read(VIEW, "c1", offline, now_ms) if lookup.feature == "spend_1h"]
    assert trained.value == served.value, (trained.value, served.value)


# Fixed: the featurizer computes at most MAX_VIEWS x MAX_FEATURES features over every version it was given;
# a definition past that is refused with the reason (FeaturizerState.room_for).
def test_one_event_makes_at_most_what_one_full_definition_allows():
    from services.domain.features_views import MAX_FEATURES, MAX_VIEWS
    listed = "\n".join(f"      - {{name: f{i}, aggregate: last, field: amount}}" for i in range(MAX_FEATURES))
    [view] = views_from_yaml(f"""
views:
  - name: wide
    entity: customer
    source: {{topic: business.events}}
    ttl: 1d
    owner: eve
    features:
{listed}
""")
    state = FeaturizerState()
    for days in range(1, 151):          # what parse_views makes of `ttl: <days>d`, without parsing it 150 times
        state.define(replace(view, ttl_ms=days * 86_400_000, version=f"{days:064x}"))
    value = business_event("c1", T0, {"customer": "c1", "amount": 1.0}).value
    made = state.add("business.events", 0, 0, T0_MS, "mlbus.BusinessEvent", value)
    assert len(made.values) <= MAX_VIEWS * MAX_FEATURES, len(made.values)
