"""Feature view definitions (issue 36): a sound one parses to views with a version that ignores key and feature
order; a malformed or hostile one is refused with every reason at once, and with nothing but ViewsRefused."""
from __future__ import annotations

import copy
import time

import pytest
import yaml
from hypothesis import given, settings, strategies as st

from services.bus.errors import BadInput
from services.bus.settings import PROJECT_ROOT
from services.domain.features_views import (MAX_WINDOWS_PER_EVENT, ViewsRefused, canonical, definition_bytes,
                                            parse_views, views_from_yaml)

SOUND = """
views:
  - name: customer_purchases
    entity: customer_id
    source: {topic: shop.purchases}
    event_time: purchased_at
    lateness: 5m
    ttl: 2d
    owner: ana
    description: What each customer bought lately.
    features:
      - {name: last_amount, aggregate: last, field: amount}
      - {name: spend_1h, aggregate: sum, field: amount, window: 1h}
      - {name: purchases_1h_every_15m, aggregate: count, window: 1h, slide: 15m}
      - {name: biggest_1d, aggregate: max, field: amount, window: 86400}
  - name: store_sales
    entity: store_id
    source: {dataset: sales}
    ttl: 3600
    owner: svc-loader
    features:
      - {name: mean_ticket_1d, aggregate: mean, field: total, window: 1d}
      - {name: smallest_500ms, aggregate: min, field: total, window: 500ms}
"""


def sound() -> dict:
    return yaml.safe_load(SOUND)


def refusal(raw) -> tuple[str, ...]:
    with pytest.raises(ViewsRefused) as refused:
        parse_views(raw)
    return refused.value.reasons


def test_a_sound_definition_parses_to_its_views_in_name_order_with_durations_in_milliseconds():
    purchases, sales = views_from_yaml(SOUND)
    assert (purchases.name, purchases.entity, purchases.source_topic, purchases.source_dataset) == \
        ("customer_purchases", "customer_id", "shop.purchases", None)
    assert (purchases.event_time, purchases.lateness_ms, purchases.ttl_ms, purchases.owner) == \
        ("purchased_at", 300_000, 172_800_000, "ana")
    last, spend, count, biggest = purchases.features
    assert (last.aggregate, last.field, last.window_ms, last.slide_ms) == ("last", "amount", None, None)
    assert (spend.window_ms, spend.slide_ms) == (3_600_000, 3_600_000)             # tumbling: slide = window
    assert (count.field, count.window_ms, count.slide_ms) == (None, 3_600_000, 900_000)
    assert biggest.window_ms == 86_400_000                                          # a number is seconds
    assert (sales.source_dataset, sales.ttl_ms, sales.lateness_ms, sales.event_time) == ("sales", 3_600_000, 0, None)
    assert sales.feature("smallest_500ms").window_ms == 500 and sales.feature("nothing") is None
    assert len({purchases.version, sales.version}) == 2 and all(len(v.version) == 64 for v in (purchases, sales))


def test_the_version_ignores_key_order_feature_order_owner_and_description_but_not_what_makes_values():
    [base, _] = parse_views(sound())
    shuffled = sound()
    shuffled["views"][0] = dict(reversed(list(shuffled["views"][0].items())))
    shuffled["views"][0]["features"].reverse()
    shuffled["views"][0]["features"][0] = dict(reversed(list(shuffled["views"][0]["features"][0].items())))
    shuffled["views"].reverse()
    shuffled["views"][1].update(owner="bo", description="another text", ttl="48h")   # 48h is 2d
    [same, _] = parse_views(shuffled)
    assert same.version == base.version
    assert canonical(same, versioned=True) == canonical(base, versioned=True)
    assert canonical(same) != canonical(base)                           # the owner is still part of the definition
    assert definition_bytes(parse_views(shuffled)) != definition_bytes(parse_views(sound()))
    for change in ({"ttl": "3d"}, {"lateness": "6m"}, {"entity": "client_id"}, {"source": {"topic": "other"}},
                   {"event_time": "paid_at"}):
        changed = sound()
        changed["views"][0].update(change)
        assert parse_views(changed)[0].version != base.version, change
    changed = sound()
    changed["views"][0]["features"][1]["window"] = "2h"
    assert parse_views(changed)[0].version != base.version


def test_the_canonical_bytes_are_sorted_compact_json():
    text = definition_bytes(parse_views(sound())).decode()
    assert text.startswith('{"views":[{"description":"What each customer') and " " not in text.split('"')[0]
    assert '"window_ms":3600000' in text


def view_with(**changes) -> dict:
    raw = sound()
    raw["views"][0].update(changes)
    return raw


def feature_with(**changes) -> dict:
    raw = sound()
    raw["views"][0]["features"][1].update(changes)
    return raw


@pytest.mark.parametrize("raw, says", [
    (view_with(name="../../etc/passwd"), "views[0].name must be an identifier"),
    (view_with(name="a" * 65), "views[0].name must be an identifier"),
    (view_with(name="caf\u00e9"), "views[0].name must be an identifier"),
    (view_with(entity="id\u202e"), "views[0].entity must be an identifier"),
    (view_with(source={"topic": "../DataBatch"}), "source.topic: '../DataBatch' is not a name"),
    (view_with(source={"topic": "a", "dataset": "b"}), "must be a mapping with one key"),
    (view_with(source="shop.purchases"), "must be a mapping with one key"),
    (view_with(ttl=None), "ttl must be a duration"),
    (view_with(ttl=-5), "ttl must be a duration"),
    (view_with(ttl="-5s"), "ttl must be a duration"),
    (view_with(ttl=0), "ttl must be a duration"),
    (view_with(ttl=True), "ttl must be a duration"),
    (view_with(ttl=10 ** 400), "ttl must be a duration"),
    (view_with(ttl="99999999999999d"), "ttl must be a duration"),
    (view_with(ttl=1.5), "ttl must be a duration"),
    (view_with(lateness="8d"), "lateness must be a duration"),
    (view_with(owner="Ana Smith"), "owner must be a person's or service's name"),
    (view_with(owner=None), "owner must be a person's or service's name (a-z, 0-9, _ -), not None"),
    (view_with(description="x\x00"), "description must be text"),
    (view_with(features=[]), "features must be a list of 1 to 200"),
    (view_with(features=[{"name": f"f{i}", "aggregate": "last", "field": "a"} for i in range(201)]), "1 to 200"),
    (view_with(colour="red"), "views[0]: unknown key 'colour'"),
    (view_with(**{"3": "x"}), "unknown key '3'"),
    (feature_with(aggregate="median"), "features[1].aggregate must be one of last, count, sum, mean, min, max"),
    (feature_with(aggregate=["sum"]), "aggregate must be one of"),
    (feature_with(window=0), "features[1].window must be a duration from 1 ms"),
    (feature_with(window="-1h"), "features[1].window must be a duration"),
    (feature_with(window="400d"), "features[1].window must be a duration"),
    (feature_with(window=None), "features[1].window must be a duration"),
    (feature_with(slide="2h"), "slide (7,200,000 ms) is longer than its window (3,600,000 ms)"),
    (feature_with(slide="1ms"), f"puts each event in more than {MAX_WINDOWS_PER_EVENT} windows"),
    (feature_with(field="amount; DROP TABLE"), "features[1].field must be an identifier"),
    (feature_with(aggregate="sum", field=None), "features[1].field must be an identifier"),
    (feature_with(name="last_amount"), "feature 'last_amount' is named more than once"),
    (feature_with(unit="EUR"), "unknown key 'unit'"),
    ({"views": [{"name": "v", "entity": "e", "source": {"topic": "t"}, "ttl": "1d", "owner": "a",
                 "features": [{"name": "f", "aggregate": "last", "field": "x", "window": "1h"}]}]},
     "a `last` feature has no window"),
    ({"views": sound()["views"] + [sound()["views"][0]]}, "view 'customer_purchases' is named more than once"),
    ({"views": []}, "views must be a list of 1 to 100"),
    ({"views": sound()["views"], "extra": 1}, "unknown key 'extra'"),
    ({1: sound()["views"]}, "a key 1 is not text"),
    ({("a",): 1}, "a key ('a',) is not text"),
    (sound()["views"], "a mapping with `views:`"),
    (None, "a mapping with `views:`"),
    ("views", "a mapping with `views:`"),
    ({"views": ["a view"]}, "views[0] must be a mapping"),
    ({"views": [{"name": "v", "features": ["f"]}]}, "features[0] must be a mapping"),
])
def test_a_bad_definition_is_refused_naming_the_place_and_the_reason(raw, says):
    reasons = refusal(raw)
    assert any(says in reason for reason in reasons), reasons


def test_every_reason_is_given_at_once():
    raw = sound()
    raw["views"][0].update(name="../x", ttl=-1, owner=None)
    raw["views"][0]["features"][1].update(aggregate="median")
    raw["views"][0]["features"][2].update(slide="2h")
    raw["views"][1]["features"][0]["name"] = raw["views"][1]["features"][1]["name"]
    raw["views"][1][7] = "seven"
    reasons = refusal(raw)
    for says in ("views[0].name", "views[0].ttl", "views[0].owner", "views[0].features[1].aggregate",
                 "views[0].features[2].slide", "views[1].features: feature 'smallest_500ms' is named more than once",
                 "views[1]: a key 7 is not text"):
        assert sum(says in reason for reason in reasons) == 1, (says, reasons)
    assert len(reasons) == 7
    with pytest.raises(BadInput):                   # the runtime dead-letters it like any bad input
        parse_views(raw)


@pytest.mark.parametrize("text, says", [
    ("views: [", "not YAML"),
    ("!!python/object/apply:os.system ['true']", "not YAML"),
    ("views: " + "[" * 200 + "]" * 200, "nests deeper than"),
    ("a: &a [*a, *a]", "nests deeper than"),
    ("x" * ((1 << 20) + 1), "characters (at most"),
    (b"views: []", "YAML text, not bytes"),
    ("views:\n  - 1\n  - 2\n", "views[0] must be a mapping"),
])
def test_text_that_is_not_a_definition_is_refused(text, says):
    with pytest.raises(ViewsRefused) as refused:
        views_from_yaml(text)
    assert says in str(refused.value)


def test_an_alias_bomb_is_refused_at_once():
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]      # 10^9 leaves
    started = time.perf_counter()
    with pytest.raises(ViewsRefused, match="holds more than 20,000 values"):
        views_from_yaml("\n".join(lines) + "\nviews: *a8\n")
    assert time.perf_counter() - started < 2


json_ish = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=10 ** 20) | st.floats() |
    st.text(max_size=12) | st.sampled_from(["1h", "15m", "0s", "-1d", "last", "sum", "count", "../x", "a", "1ms"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.text(max_size=8) | st.integers() | st.none() | st.booleans() | st.sampled_from(
            ["views", "name", "entity", "source", "topic", "ttl", "owner", "features", "aggregate", "field",
             "window", "slide", "lateness"]), inner, max_size=5),
    max_leaves=30)


@settings(max_examples=150, derandomize=True, deadline=None)
@given(json_ish)
def test_any_json_like_value_parses_or_is_refused_with_reasons(raw):
    try:
        views = parse_views(raw)
    except ViewsRefused as refused:
        assert refused.reasons and all(isinstance(r, str) and r for r in refused.reasons)
    else:
        assert views and all(len(view.version) == 64 for view in views)


def places(value, path=()):
    """Every place in a nested value: the paths of its dict values and list items."""
    yield path
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, inner in items:
        yield from places(inner, (*path, key))


SOUND_PLACES = list(places(sound()))[1:]


@settings(max_examples=150, derandomize=True, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(SOUND_PLACES), json_ish), min_size=1, max_size=3))
def test_a_sound_definition_with_any_part_replaced_parses_or_is_refused_with_reasons(replacements):
    raw = sound()
    for path, junk in replacements:
        holder = raw
        try:
            for key in path[:-1]:
                holder = holder[key]
            holder[path[-1]] = copy.deepcopy(junk)
        except (KeyError, IndexError, TypeError):       # an earlier replacement took the place away
            continue
    try:
        parse_views(raw)
    except ViewsRefused as refused:
        assert refused.reasons


@settings(max_examples=100, derandomize=True, deadline=None)
@given(st.text(max_size=200) | st.builds(lambda junk: SOUND.replace("1h", junk), st.text(max_size=10)) |
       json_ish.map(lambda raw: yaml.safe_dump({"views": [raw]})))
def test_any_text_parses_or_is_refused_with_reasons(text):
    try:
        views_from_yaml(text)
    except ViewsRefused as refused:
        assert refused.reasons


@settings(max_examples=50, derandomize=True, deadline=None)
@given(st.randoms(use_true_random=False))
def test_the_version_is_the_same_in_any_key_and_feature_order(random):
    def shuffled(value):
        if isinstance(value, dict):
            items = list(value.items())
            random.shuffle(items)
            return {k: shuffled(v) for k, v in items}
        if isinstance(value, list):
            return random.sample([shuffled(v) for v in value], len(value))
        return value
    raw = sound()
    assert [v.version for v in parse_views(shuffled(raw))] == [v.version for v in parse_views(raw)]


def test_the_docs_example_is_a_sound_definition():
    page = (PROJECT_ROOT / "docs" / "explanation" / "feature-store.md").read_text()
    example = page.split("```yaml\n")[1]
    [view] = views_from_yaml(example.split("```")[0])
    assert [f.aggregate for f in view.features] == ["last", "sum", "count", "max"] and view.ttl_ms == 172_800_000
