"""Training sets from feature views (pure): a spec's feature_views block, label rows' entity and time, and the join
of every view feature as it stood strictly before each row's time — a value planted at or after it is never used."""
from __future__ import annotations

import json
import math
from datetime import datetime, timezone

import pandas as pd
import pytest

from services.domain.estimators import spec_problem
from services.domain.features_training import (FeatureSetRefused, FeatureSettings, label_columns, parse_settings,
                                               reached_positions, settings_problem, training_set, until_from_json,
                                               until_json)
from services.domain.features_join import columns_of
from services.domain.features_windows import FeatureValue, SourceSpan
from tests.unit.features.test_windows import HOUR, TOPIC, view_of

VIEW = view_of({"name": "last_amount", "aggregate": "last", "field": "amount"},
               {"name": "last_channel", "aggregate": "last", "field": "channel"}, ttl="2h")
SETTINGS = FeatureSettings(("purchases",), "customer", "at")


def value(entity: str, at_ms: int, amount, feature: str = "last_amount", offset: int = 0) -> FeatureValue:
    return FeatureValue(VIEW.name, VIEW.version, feature, entity, at_ms, amount, None,
                        (SourceSpan(TOPIC, 0, offset, offset, 1),))


def labels(*rows: tuple) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["customer", "at", "y"])


@pytest.mark.parametrize("raw, says", [
    (["purchases"], "a mapping with exactly"),
    ({"views": ["purchases"], "entity": "c"}, "a mapping with exactly"),
    ({"views": [], "entity": "c", "time": "t"}, "1 to 100 view names"),
    ({"views": ["../etc"], "entity": "c", "time": "t"}, "'../etc' not a view name"),
    ({"views": ["a", "a"], "entity": "c", "time": "t"}, "twice"),
    ({"views": ["a"], "entity": "c d", "time": "t"}, "feature_views.entity must be a column"),
    ({"views": ["a"], "entity": "c", "time": 5}, "feature_views.time must be a column"),
    ({"views": ["a"], "entity": "c", "time": "c"}, "two columns"),
])
def test_an_unusable_feature_views_block_says_why(raw, says):
    assert says in settings_problem(raw)


def test_a_spec_with_feature_views_may_have_no_features_of_its_own_and_is_checked_by_the_trainer_too():
    spec = {"model": "m", "dataset": "d", "target": "y", "features": [], "task": "classification",
            "estimator": "LogisticRegression", "metric": "accuracy", "test_size": 0.25, "cv_folds": 5,
            "hyperparameters_json": "{}", "grid_json": "{}"}
    good = json.dumps({"views": ["purchases"], "entity": "customer", "time": "at"})
    assert spec_problem({**spec, "feature_views_json": good}) is None
    assert "non-empty" in spec_problem(spec)
    assert "not a view name" in spec_problem({**spec, "feature_views_json": good.replace("purchases", "a-b")})
    assert "cannot be feature_views' entity" in spec_problem({**spec, "feature_views_json": good.replace("at", "y")})
    assert "not a JSON object" in spec_problem({**spec, "feature_views_json": "{"})
    ensemble = {**spec, "estimator": "Ensemble", "ensemble_json": "{}", "feature_views_json": good}
    assert "feature_views does not apply" in spec_problem(ensemble)
    assert parse_settings(good) == SETTINGS and parse_settings(None) is None


def test_label_times_are_epoch_ms_aware_datetimes_or_iso_text_and_entities_text_or_whole_numbers():
    at = datetime(2026, 12, 1, 10, tzinfo=timezone.utc)
    ms = int(at.timestamp() * 1000)
    entities, times = label_columns(labels(("c1", ms, 1), ("c2", "2026-12-01T10:00:00Z", 0)), SETTINGS)
    assert list(zip(entities, times.tolist())) == [("c1", ms), ("c2", ms)]
    aware = pd.DataFrame({"customer": [7, 8], "at": pd.to_datetime([at, at], utc=True), "y": [1, 0]})
    entities, times = label_columns(aware, SETTINGS)
    assert list(zip(entities, times.tolist())) == [("7", ms), ("8", ms)]


@pytest.mark.parametrize("frame, says", [
    (pd.DataFrame({"customer": ["c1"], "y": [1]}), "no column at"),
    (pd.DataFrame({"customer": ["c1"], "at": pd.to_datetime(["2026-12-01 10:00"]), "y": [1]}), "time zone"),
    (labels(("c1", "yesterday", 1)), "1 label row(s)"),
    (labels((None, 5, 1), ("c2", 6, 1)), "the first row 0"),
    (labels((1.5, 5, 1)), "whole number"),
    (labels(("c1", -1, 1)), "epoch milliseconds"),
])
def test_label_rows_without_a_usable_entity_or_time_are_refused_with_the_first_one_shown(frame, says):
    with pytest.raises(FeatureSetRefused, match=None) as refused:
        label_columns(frame, SETTINGS)
    assert says in str(refused.value)


def test_each_row_sees_the_newest_value_strictly_before_its_time_never_one_planted_at_or_after_it():
    history = [value("c1", 1 * HOUR, 10.0, offset=1),
               value("c1", 3 * HOUR, 999.0, offset=2),            # planted at the label's time: not seen
               value("c1", 3 * HOUR + 1, 777.0, offset=3),        # and after it
               value("c2", 1 * HOUR, 20.0, offset=4),             # older than the TTL at the label's time
               value("c1", 1 * HOUR, "web", feature="last_channel", offset=1)]
    built = training_set(labels(("c1", 3 * HOUR, 1), ("c2", 3 * HOUR + 1, 0), ("c3", 3 * HOUR, 1)), SETTINGS,
                         [VIEW], columns_of(history))
    assert built.columns == ("purchases__last_amount", "purchases__last_channel")
    assert built.frame["purchases__last_amount"].tolist()[0] == 10.0
    assert all(math.isnan(v) for v in built.frame["purchases__last_amount"].tolist()[1:])
    assert built.frame["purchases__last_channel"].tolist() == ["web", None, None]
    assert built.categorical == ("purchases__last_channel",)
    assert sorted(v.value for v in built.used if v.feature == "last_amount") == [10.0]
    assert {999.0, 777.0, 20.0}.isdisjoint(v.value for v in built.used)
    assert built.frame[["customer", "at", "y"]].equals(labels(("c1", 3 * HOUR, 1), ("c2", 3 * HOUR + 1, 0),
                                                              ("c3", 3 * HOUR, 1)))


def test_values_planted_in_the_future_change_neither_the_set_nor_the_values_used():
    frame = labels(("c1", 3 * HOUR, 1), ("c1", 5 * HOUR, 0))
    past = [value("c1", 1 * HOUR, 1.0, offset=1), value("c1", 4 * HOUR, 2.0, offset=2)]
    future = [value("c1", 5 * HOUR, 50.0, offset=3), value("c1", 9 * HOUR, 90.0, offset=4)]
    plain, planted = (training_set(frame, SETTINGS, [VIEW], columns_of(h)) for h in (past, past + future))
    assert plain.frame.equals(planted.frame) and set(plain.used) == set(planted.used)
    assert plain.frame["purchases__last_amount"].tolist() == [1.0, 2.0]


def test_a_set_in_which_no_row_found_any_value_is_refused_as_the_views_and_labels_do_not_meet():
    only_later = [value("c1", 9 * HOUR, 1.0), value("c9", 1 * HOUR, 2.0)]
    with pytest.raises(FeatureSetRefused, match=r"none of the 2 label rows found a value .* \(2 values read"):
        training_set(labels(("c1", 3 * HOUR, 1), ("c2", 3 * HOUR, 0)), SETTINGS, [VIEW], columns_of(only_later))


def test_a_view_feature_named_like_a_dataset_column_is_refused():
    frame = labels(("c1", 3 * HOUR, 1)).assign(purchases__last_amount=1.0)
    with pytest.raises(FeatureSetRefused, match="already has column"):
        training_set(frame, SETTINGS, [VIEW], [])


def test_positions_are_the_offsets_every_view_reached_and_survive_their_json():
    reached = reached_positions([{(TOPIC, 0): 10, (TOPIC, 1): 4}, {(TOPIC, 0): 7}, {("other.topic", 0): 3}])
    assert reached == {(TOPIC, 0): 7, (TOPIC, 1): 4, ("other.topic", 0): 3}
    assert until_from_json(until_json(reached)) == reached
    with pytest.raises(FeatureSetRefused):
        until_from_json('{"a:b": 1}')
