"""scripts/bench features without Feast: its generated purchases, the windows it precomputes with pandas for Feast
(equal to mlbus's), and the comparison that fails the run when a value differs."""
import math

import numpy as np
import pandas as pd
import pytest

from services.adapters.offline_store import OfflineStore
from services.domain.features_lookups import LabelRow, as_of_join
from services.domain.features_training import FeatureSettings, training_set
from tests.bench.features import (FEATURES, HOUR_MS, START_MS, Data, differences, feast_join_table,
                                  frames_table, generate, mlbus_values, pandas_windows, purchases_view, require_same,
                                  same, set_table, values_table)


def test_the_purchases_have_unique_even_times_in_order_whole_amounts_and_the_labels_odd_times():
    data = generate(customers=7, events=200, labels=50, hours=5, seed=3)
    times = data.events["event_ms"]
    assert times.is_monotonic_increasing and times.is_unique and (times % 2 == 0).all()
    assert START_MS <= times.min() and times.max() < data.end_ms == START_MS + 5 * HOUR_MS
    assert (data.events["amount"] == data.events["amount"].round()).all() and (data.events["amount"] >= 1).all()
    assert (data.labels["event_ms"] % 2 == 1).all() and not data.labels.duplicated().any()
    assert set(data.events["customer_id"]) | set(data.labels["customer_id"]) <= set(data.customers)
    assert len(data.customers) == 7


def test_the_windows_for_feast_are_each_busy_hour_and_the_quiet_hour_after_it_stamped_at_their_end():
    events = pd.DataFrame({"customer_id": ["c1", "c1", "c1", "c2"],
                           "event_ms": [10 * HOUR_MS + 2, 10 * HOUR_MS + 4, 12 * HOUR_MS + 2, 11 * HOUR_MS + 6],
                           "amount": [3.0, 4.0, 5.0, 8.0]})
    windows = pandas_windows(events)
    rows = [(c, t // HOUR_MS, n, s, None if math.isnan(m) else m, None if math.isnan(x) else x)
            for c, t, n, s, m, x in windows[["customer_id", "event_ms", "count_1h", "spend_1h", "mean_1h", "max_1h"]]
            .itertuples(index=False, name=None)]
    assert rows == [("c1", 11, 2, 7.0, 3.5, 4.0), ("c1", 12, 0, 0.0, None, None), ("c1", 13, 1, 5.0, 5.0, 5.0),
                    ("c1", 14, 0, 0.0, None, None), ("c2", 12, 1, 8.0, 8.0, 8.0), ("c2", 13, 0, 0.0, None, None)]


def test_mlbus_windows_equal_the_pandas_ones_feast_is_given():
    data = generate(customers=5, events=300, labels=10, hours=6, seed=1)
    values = mlbus_values(purchases_view(), data)
    assert differences(values_table(values), frames_table(data.events, pandas_windows(data.events))) == []


def test_a_value_that_differs_or_that_one_side_lacks_is_a_difference_and_fails_the_run():
    ours = {("c1", "count_1h"): 2, ("c1", "mean_1h"): None, ("c2", "last_amount"): 7.0}
    assert differences(ours, {("c1", "count_1h"): 2.0, ("c1", "mean_1h"): float("nan"),
                              ("c2", "last_amount"): 7.0}) == []
    wrong = {("c1", "count_1h"): 3, ("c1", "mean_1h"): None, ("c3", "last_amount"): 7.0}
    assert differences(ours, wrong) == [
        "('c1', 'count_1h'): mlbus 2, Feast 3", "('c2', 'last_amount'): mlbus 7.0, Feast '(absent)'",
        "('c3', 'last_amount'): mlbus '(absent)', Feast 7.0"]
    assert differences(ours, wrong, limit=1) == ["('c1', 'count_1h'): mlbus 2, Feast 3", "… 3 differences in all"]
    with pytest.raises(AssertionError, match="online: the values differ: .*mlbus 2, Feast 3"):
        require_same("online", ours, wrong)
    assert not same(True, 1.0) and not same(0.0, None) and same(pd.NA, np.nan) and same(np.int64(4), 4.0)
    assert not same(0.30000000000000004, 0.3)


def test_label_rows_feast_leaves_out_are_missing_values_of_that_calls_features_only():
    labels = pd.DataFrame({"customer_id": ["c1", "c2"], "event_ms": [5, 7]})
    stamp = pd.to_datetime([5], unit="ms", utc=True)
    last = pd.DataFrame({"customer_id": ["c1"], "event_timestamp": stamp, "last_amount": [3.0]})
    windows = pd.DataFrame({"customer_id": ["c2"], "event_timestamp": pd.to_datetime([7], unit="ms", utc=True),
                            **{name: [1.0] for name in FEATURES[1:]}})
    table, left_out = feast_join_table([last, windows], labels)
    assert left_out == 2
    assert table[("c1", 5, "last_amount")] == 3.0 and table[("c2", 7, "last_amount")] is None
    assert table[("c1", 5, "count_1h")] is None and table[("c2", 7, "max_1h")] == 1.0
    assert len(table) == 2 * len(FEATURES)


def test_the_trainers_path_timed_against_feast_gives_as_of_joins_values(tmp_path):
    view = purchases_view(ttl="90m")
    data: Data = generate(customers=4, events=120, labels=80, hours=4, seed=2)
    values = mlbus_values(view, data)
    store = OfflineStore(tmp_path)
    store.write(values, "p0")
    rows = as_of_join([LabelRow(e, int(t)) for e, t in data.labels.itertuples(index=False, name=None)], [view],
                      store.read(view.name, view.version))
    ours = {(row.label.entity, row.label.event_ms, lookup.feature): lookup.value for row in rows
            for lookup in row.lookups}
    assert any(v is None for v in ours.values()) and any(v is not None for v in ours.values())
    history, _ = store.snapshot([view])
    built = training_set(data.labels, FeatureSettings((view.name,), "customer_id", "event_ms"), [view], history)
    assert differences(ours, set_table(built, view)) == []
