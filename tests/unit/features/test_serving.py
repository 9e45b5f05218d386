"""Serving with looked-up features, the pure decision: which columns a request lacks, what the online store gives
for them at the request's time (the training rule: strictly before it, within the TTL), each lookup recorded with
its view version and age or why it is missing, a request's own values winning, and the model's input rebuilt from
the records alone (what `audit reproduce` does)."""
from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings, strategies as st

from services.domain import MISSING_CATEGORY
from services.domain.features_lookups import EXPIRED, NO_VALUE, UNKNOWN
from services.domain.features_serving import (BAD_VALUE, NO_VIEW, LookupPlan, LookupRefused, PlanRefused,
                                              completed, lateness_of, look_up, lookup_plan, stored_value_problem,
                                              wanted)
from services.domain.features_views import MAX_LATENESS_MS
from services.domain.features_windows import FeatureValue, SourceSpan
from tests.unit.features.test_windows import HOUR, TOPIC, view_of

VIEW = view_of({"name": "last_amount", "aggregate": "last", "field": "amount"},
               {"name": "spend_1h", "aggregate": "sum", "field": "amount", "window": "1h"},
               {"name": "mean_1h", "aggregate": "mean", "field": "amount", "window": "1h"}, ttl="1h")
VIEWS = {(VIEW.name, VIEW.version): VIEW}
COLUMNS = ["purchases__last_amount", "purchases__spend_1h"]
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def trained(columns=COLUMNS, views=None, **extra) -> dict:
    plan = {"entity": "customer_id", "time": "at", "views": views or {VIEW.name: VIEW.version}, "columns": columns}
    return {"feature_views_json": json.dumps({**plan, **extra})}


PLAN = lookup_plan(trained())


def value(feature: str, at_ms: int, amount, entity: str = "c1", offset: int = 0) -> FeatureValue:
    return FeatureValue(VIEW.name, VIEW.version, feature, entity, at_ms, amount, None,
                        (SourceSpan(TOPIC, 0, offset, offset, 1),))


def request(features: dict | None = None, entity: str = "c1", categories: dict | None = None) -> dict:
    return {"request_id": "r1", "entity_id": entity, "model": "m", "features": {"x": 1.0, **(features or {})},
            "categories": categories or {}}


def looked(held, at_ms: int, req: dict | None = None, categorical=(), plan=PLAN, views=VIEWS) -> dict:
    found = look_up(req or request(), plan, categorical, views, {VIEW.name: held}, at_ms)
    return {f"{x['view']}__{x['feature']}": x for x in found}


def test_a_version_without_feature_views_has_no_plan_and_a_plan_names_each_columns_view_and_feature():
    assert lookup_plan({}) is None and lookup_plan({"feature_views_json": None}) is None
    assert PLAN == LookupPlan("customer_id", {VIEW.name: VIEW.version},
                              (("purchases__last_amount", "purchases", "last_amount"),
                               ("purchases__spend_1h", "purchases", "spend_1h")))


def test_a_view_name_holding_double_underscores_takes_the_longest_view_that_starts_the_column():
    plan = lookup_plan(trained(["a__b__c", "a__d"], views={"a": "1" * 64, "a__b": "2" * 64}))
    assert plan.columns == (("a__b__c", "a__b", "c"), ("a__d", "a", "d"))


@pytest.mark.parametrize("form, says", [
    ({"views": [], "columns": [], "entity": "e"}, "must be an object"),
    ({"views": {"v": "not-hex"}, "columns": [], "entity": "e"}, "not name: sha256 hex"),
    ({"views": {"../x": "0" * 64}, "columns": [], "entity": "e"}, "not name: sha256 hex"),
    ({"views": {}, "columns": [], "entity": "e"}, "none"),
    ({"views": {"v": "0" * 64}, "columns": ["w__f"], "entity": "e"}, "not VIEW__FEATURE"),
    ({"views": {"v": "0" * 64}, "columns": [7], "entity": "e"}, "not VIEW__FEATURE"),
    ({"views": {"v": "0" * 64}, "columns": ["v__f-g"], "entity": "e"}, "not a feature's name"),
    ({"views": {"v": "0" * 64}, "columns": ["v__f"] * 10_001, "entity": "e"}, "more than 10,000"),
    ({"views": {"v": "0" * 64}, "columns": ["v__f"]}, "must be an object"),
])
def test_a_plan_that_is_not_one_is_refused_with_what_is_wrong(form, says):
    with pytest.raises(PlanRefused, match=says):
        lookup_plan({"feature_views_json": json.dumps(form)})
    with pytest.raises(PlanRefused, match="not JSON"):
        lookup_plan({"feature_views_json": "{nope"})


def test_found_values_are_recorded_with_view_version_time_and_age():
    held = [value("last_amount", 10 * HOUR, 5.0, offset=3), value("spend_1h", 10 * HOUR, 12.5)]
    found = looked(held, 10 * HOUR + 1500)
    assert found["purchases__last_amount"] == {
        "view": "purchases", "version": VIEW.version, "feature": "last_amount", "entity": "c1", "value": 5.0,
        "text": None, "event_time": EPOCH + timedelta(milliseconds=10 * HOUR), "age_ms": 1500, "missing": None,
        "reason": ""}
    assert found["purchases__spend_1h"]["value"] == 12.5


def test_a_value_at_the_requests_own_time_or_past_the_ttl_or_never_seen_is_missing_with_the_reason():
    held = [value("last_amount", 10 * HOUR, 5.0), value("spend_1h", 8 * HOUR, 1.0)]
    at_its_time = looked(held, 10 * HOUR)["purchases__last_amount"]
    assert (at_its_time["value"], at_its_time["missing"]) == (None, NO_VALUE)
    expired = looked(held, 10 * HOUR + 1)["purchases__spend_1h"]
    assert (expired["value"], expired["missing"], expired["age_ms"]) == (None, EXPIRED, 2 * HOUR + 1)
    assert "past the TTL of 3,600,000 ms" in expired["reason"]
    never = looked([], 10 * HOUR, request(entity="c9"))
    assert {x["missing"] for x in never.values()} == {NO_VALUE} and all("'c9'" in x["reason"] for x in never.values())


def test_a_requests_own_values_win_and_nothing_is_looked_up_for_them():
    held = [value("last_amount", HOUR, 5.0), value("spend_1h", HOUR, 9.0)]
    req = request({"purchases__last_amount": 7.0})
    assert wanted(req, PLAN, ()) == {"purchases": ["spend_1h"]}
    found = looked(held, 2 * HOUR, req)
    assert list(found) == ["purchases__spend_1h"]
    assert completed(req, found.values(), ())["features"] == {"x": 1.0, "purchases__last_amount": 7.0,
                                                              "purchases__spend_1h": 9.0}
    every = request({"purchases__last_amount": 7.0, "purchases__spend_1h": 1.0})
    assert look_up(every, PLAN, (), {}, {}, 2 * HOUR) == ()            # no view needed, none read


def test_a_view_version_nobody_defined_and_a_feature_the_view_lacks_are_missing_with_the_reason():
    unknown_view = looked([value("last_amount", HOUR, 5.0)], 2 * HOUR, views={})
    assert {x["missing"] for x in unknown_view.values()} == {NO_VIEW}
    assert "is not defined on features.views" in unknown_view["purchases__spend_1h"]["reason"]
    plan = lookup_plan(trained(["purchases__refunds"]))
    gone = looked([], 2 * HOUR, plan=plan)["purchases__refunds"]
    assert gone["missing"] == UNKNOWN and "has no feature 'refunds'" in gone["reason"]


def test_a_value_the_model_cannot_take_is_missing_as_a_bad_value_and_an_empty_window_as_no_value():
    plan = lookup_plan(trained(["purchases__last_amount", "purchases__spend_1h", "purchases__mean_1h"]))
    held = [value("last_amount", HOUR, "a lot"), value("spend_1h", HOUR, math.nan), value("mean_1h", HOUR, None)]
    found = looked(held, 2 * HOUR, plan=plan)
    assert found["purchases__last_amount"]["missing"] == BAD_VALUE
    assert "'a lot' (str) is not a number" in found["purchases__last_amount"]["reason"]
    assert found["purchases__spend_1h"]["missing"] == BAD_VALUE and found["purchases__spend_1h"]["value"] is None
    assert found["purchases__mean_1h"]["missing"] == NO_VALUE and "is empty" in found["purchases__mean_1h"]["reason"]
    assert all(math.isnan(completed(request(), found.values(), ())["features"][c]) for c in found)


def test_a_category_column_takes_text_or_numbers_as_text_and_a_missing_one_is_the_missing_category():
    """The text recorded is the text the model saw: a reproduction needs no rule of its own to make it."""
    categorical = ("purchases__last_amount", "purchases__spend_1h")
    held = [value("last_amount", HOUR, "gold"), value("spend_1h", HOUR, "x" * 1025)]
    found = looked(held, 2 * HOUR, categorical=categorical)
    assert (found["purchases__last_amount"]["text"], found["purchases__last_amount"]["value"]) == ("gold", None)
    assert found["purchases__spend_1h"]["missing"] == BAD_VALUE
    assert completed(request(), found.values(), categorical)["categories"] == {
        "purchases__last_amount": "gold", "purchases__spend_1h": MISSING_CATEGORY}
    numbers = looked([value("last_amount", HOUR, 3), value("spend_1h", HOUR, True)], 2 * HOUR,
                     categorical=categorical)
    assert [x["text"] for x in numbers.values()] == ["3", "True"]
    assert completed(request(), numbers.values(), categorical)["categories"] == {
        "purchases__last_amount": "3", "purchases__spend_1h": "True"}


def test_a_number_column_records_the_double_the_model_saw_of_a_stored_integer_or_boolean():
    found = looked([value("last_amount", HOUR, 3), value("spend_1h", HOUR, True)], 2 * HOUR)
    assert [(x["value"], type(x["value"]), x["text"]) for x in found.values()] == [(3.0, float, None),
                                                                                  (1.0, float, None)]


@pytest.mark.parametrize("entity", ["", "e" * 257, "c1\n", "c1\x00", "\u202ec1"])
def test_an_entity_id_that_is_no_entity_is_refused_before_anything_is_read(entity):
    with pytest.raises(LookupRefused, match="is not an entity"):
        look_up(request(entity=entity), PLAN, (), VIEWS, {}, HOUR)


def test_the_store_keeps_only_values_with_names_versions_entities_and_numbers_it_can_serve():
    good = value("last_amount", HOUR, 5.0)
    assert stored_value_problem(good, HOUR) is None
    for bad, says in ((value("last_amount", HOUR, math.inf), "not a finite"),
                      (value("last_amount", HOUR, 1.0, entity="c\x00"), "not an entity"),
                      (FeatureValue("../v", VIEW.version, "f", "c1", 0, 1.0, None, ()), "not a name"),
                      (FeatureValue("v", "v1", "f", "c1", 0, 1.0, None, ()), "not sha256 hex"),
                      (value("last_amount", 8 * 24 * HOUR, 1.0), "past the clock")):   # beyond any lateness
        assert says in stored_value_problem(bad, HOUR)
    assert stored_value_problem(value("last_amount", 3 * HOUR, 1.0), HOUR, lateness_ms=2 * HOUR) is None
    assert "past the clock" in stored_value_problem(value("last_amount", 3 * HOUR + 1, 1.0), 0, lateness_ms=2 * HOUR)


def test_a_reader_allows_a_known_views_lateness_and_the_longest_for_a_view_it_does_not_know():
    assert lateness_of(VIEW) == VIEW.lateness_ms
    assert lateness_of(None) == MAX_LATENESS_MS


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["last_amount", "spend_1h"]), st.integers(0, 3 * HOUR),
                          st.one_of(st.none(), st.booleans(), st.integers(-2 ** 63, 2 ** 63 - 1),
                                    st.floats(allow_nan=True), st.text(max_size=5))), max_size=6),
       st.integers(0, 4 * HOUR), st.sampled_from([(), ("purchases__last_amount",)]))
def test_whatever_the_store_holds_each_lacking_column_gets_one_record_and_the_model_input_is_complete(
        held, at_ms, categorical):
    values = [value(feature, at, amount, offset=i) for i, (feature, at, amount) in enumerate(held)]
    found = look_up(request(), PLAN, categorical, VIEWS, {VIEW.name: values}, at_ms)
    assert [f"{x['view']}__{x['feature']}" for x in found] == COLUMNS
    shaped = completed(request(), found, categorical)
    for x in found:
        column = f"{x['view']}__{x['feature']}"
        seen = x["text"] if column in categorical else x["value"]
        assert (x["missing"] is None) == (seen is not None) == (x["reason"] == "")
        assert x["value" if column in categorical else "text"] is None
        if column in categorical:
            assert isinstance(shaped["categories"][column], str)
        else:
            assert math.isnan(shaped["features"][column]) or math.isfinite(shaped["features"][column])
