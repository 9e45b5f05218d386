"""The featurizer's state and handler, with an in-memory online store and a dict for the offline store."""
from __future__ import annotations

import random
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from services.adapters import OnlineStore, views_record, value_from_record
from services.bus import BadInput
from services.domain import FeatureValue, aggregate, source_event, views_from_yaml
from services.featurizer.core import FeaturizerState, arrival_ms, backfill, event_fields, in_time_order
from services.featurizer.handlers import Featurizer
from tests.support.feature_views import LAST_AND_SUM, purchases_view
from tests.support.handlers import accept, received, refusing_people

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
VIEW = purchases_view(*LAST_AND_SUM, "{name: n_1h, aggregate: count, window: 1h, slide: 30m}")
T0 = datetime(2026, 12, 1, tzinfo=timezone.utc)
T0_MS = int(T0.timestamp() * 1000)


class Shelf:
    """The offline store as a dict of parts."""

    def __init__(self):
        self.parts: dict[str, list[FeatureValue]] = {}

    def write(self, values, part):
        self.parts[part] = list(values)

    def values(self) -> set[FeatureValue]:
        return {value for part in self.parts.values() for value in part}


def event(i: int, kind: str = "purchase", minutes: float | None = None, partition: int | None = None):
    customer = f"c{i % 4}"
    value = {"event_id": f"e{i}", "kind": kind, "entity": customer, "source": "shop",
             "occurred_at": T0 + timedelta(minutes=7 * i if minutes is None else minutes),
             "fields": {"customer": customer, "amount": float(i % 9)}}
    message = received("mlbus.BusinessEvent", value, topic="business.events", offset=i)
    return replace(message, partition=i % 3 if partition is None else partition, offset=i // 3,
                   timestamp_ms=int(value["occurred_at"].timestamp() * 1000))     # the broker took it as it happened


def featurizer(state=None, verify=accept, history=lambda topic, read_to: []):
    state = state or FeaturizerState()
    shelf = Shelf()
    handler = Featurizer(state, OnlineStore("sqlite://"), shelf, verify, {"business.events"}, history,
                         clock=lambda: T0)
    return handler, shelf


def defined(view=VIEW, by="cli:dana", offset=0):
    return received("mlbus.FeatureViewDefined", views_record(view, by, T0), topic="features.views", offset=offset)


def expected(messages) -> set[FeatureValue]:
    ordered = in_time_order([(m.topic, m.partition, m.offset, m.timestamp_ms, m.record, m.value) for m in messages])
    events = [source_event(VIEW, event_fields(r[4], r[5]), r[3], r[0], r[1], r[2]) for r in ordered
              if r[5]["kind"] == "purchase"]
    return set(aggregate(VIEW, events, final=False).values)


def test_a_batch_is_handled_in_time_order_across_partitions_and_gives_the_pure_cores_values():
    handler, shelf = featurizer()
    handler([defined()])
    messages = [event(i) for i in range(60)] + [event(i, kind="visit") for i in range(60, 70)]
    by_partition = sorted(messages, key=lambda m: m.partition)      # as a fetch hands them: partition by partition
    results = handler(by_partition)
    assert shelf.values() == expected(messages) and shelf.values()
    published = [value_from_record(e.value) for r in results for e in r]
    assert {(v.feature, v.entity) for v in published} == {(v.feature, v.entity) for v in shelf.values()}
    newest = {}
    for value in shelf.values():
        key = (value.feature, value.entity)
        newest[key] = max(newest.get(key, value), value, key=lambda v: (v.event_ms, max((s.last_offset for s in
                                                                                         v.sources), default=-1)))
    assert set(handler.online.all()) == set(newest.values())


def test_a_batch_handled_again_publishes_the_same_events_and_writes_the_same_part():
    messages = [event(i) for i in range(30)]
    first, shelf = featurizer()
    first([defined()])
    again, shelf_again = featurizer()
    again([defined()])
    once = first(messages)
    assert [[e.id for e in r] for r in once] == [[e.id for e in r] for r in again(messages)]
    assert shelf.parts.keys() == shelf_again.parts.keys()


def test_a_view_defined_after_its_source_had_events_is_computed_from_the_start():
    messages = [event(i) for i in range(40)]
    history = [(m.topic, m.partition, m.offset, m.timestamp_ms, m.record, m.value) for m in messages]
    state = FeaturizerState()
    for record in in_time_order(history):
        state.add(*record)                      # read before any view existed: nothing made
    handler, shelf = featurizer(state, history=lambda topic, read_to: in_time_order(history))
    handler([defined()])
    assert shelf.values() == expected(messages)
    later = [event(i) for i in range(40, 60)]
    handler(later)
    assert shelf.values() == expected(messages + later)


def test_a_definition_is_refused_unsigned_for_another_source_or_lying_and_the_handler_goes_on():
    handler, _ = featurizer(verify=refusing_people("signature: not a data scientist"))
    [result] = handler([defined()])
    assert isinstance(result, BadInput) and "not a data scientist" in str(result)
    handler, _ = featurizer()
    elsewhere = replace(VIEW, source_topic="outcomes")
    results = handler([received("mlbus.FeatureViewDefined", {**views_record(VIEW, "cli:dana", T0),
                                                             "source_topic": "outcomes"}, topic="features.views"),
                       defined(replace(elsewhere, version=VIEW.version)),
                       received("mlbus.FeatureViewDefined", {**views_record(VIEW, "cli:dana", T0),
                                                             "definition_json": "{" * 5000}, topic="features.views"),
                       defined(offset=3)])
    assert [type(r).__name__ for r in results[:3]] == ["ViewsRefused"] * 3
    assert results[3] == [] and VIEW.version in handler.state.views
    [refused] = handler([received("mlbus.FeatureViewDefined", views_record(
        views_from_yaml(TEXT_ON_OUTCOMES)[0], "cli:dana", T0), topic="features.views")])
    assert "not one the featurizer consumes" in str(refused)


TEXT_ON_OUTCOMES = """
views: [{name: o, entity: entity_id, source: {topic: outcomes}, ttl: 1d, owner: dana,
         features: [{name: n, aggregate: count, window: 1h}]}]
"""


def test_time_order_keeps_each_partitions_order_and_reads_occurred_at_first():
    rng = random.Random(3)
    records = [("t", p, o, rng.randrange(10**6), "mlbus.BusinessEvent",
                {"occurred_at": EPOCH + timedelta(milliseconds=o * 10 + p)}) for p in range(3) for o in range(50)]
    merged = in_time_order(records)
    assert sorted(merged) == sorted(records)
    for p in range(3):
        assert [r[2] for r in merged if r[1] == p] == list(range(50))
    assert [arrival_ms(r[4], r[5], r[3]) for r in merged] == sorted(arrival_ms(r[4], r[5], r[3]) for r in merged)
    assert arrival_ms("mlbus.Outcome", {"occurred_at": T0}, 5) == 5


def test_state_counts_only_its_kind_and_a_version_once():
    state = FeaturizerState()
    assert state.define(VIEW) and not state.define(VIEW)
    made = state.add("business.events", 0, 0, T0_MS, "mlbus.BusinessEvent",
                     {"kind": "visit", "entity": "c1", "fields": {"customer": "c1", "amount": 1.0},
                      "occurred_at": T0})
    assert made.values == [] and made.dropped == []
    made = backfill(state, VIEW.version, [("business.events", 0, 1, T0_MS, "mlbus.BusinessEvent",
                                           {"kind": "purchase", "entity": "c1", "fields": {"amount": 1.0},
                                            "occurred_at": T0})])
    assert made.values == [] and made.dropped and "entity" in made.dropped[0][1].reason
    assert state.read_to == {("business.events", 0): 2}


@pytest.mark.parametrize("fields", [None, [], {"customer": ["x"]}, {"customer": "c", "amount": {"x": 1}}])
def test_fields_a_view_cannot_use_are_dropped_not_raised(fields):
    state = FeaturizerState()
    state.define(VIEW)
    made = state.add("business.events", 0, 0, T0_MS, "mlbus.BusinessEvent",
                     {"kind": "purchase", "entity": "c", "fields": fields, "occurred_at": T0})
    assert made.values == [] and made.dropped and all(view == "purchases" and dropped.reason
                                                      for view, dropped in made.dropped)


def test_an_event_dated_after_the_broker_took_it_is_dropped_and_freezes_nothing():
    handler, shelf = featurizer()
    handler([defined()])
    ahead = event(0, minutes=60 * 24 * 365)             # a year ahead of the broker's time
    handler([replace(ahead, timestamp_ms=T0_MS)])
    assert handler.state.windows[VIEW.version].watermark_ms is None and not shelf.values()
    handler([event(i) for i in range(1, 20)])
    assert shelf.values() == expected([event(i) for i in range(1, 20)])
