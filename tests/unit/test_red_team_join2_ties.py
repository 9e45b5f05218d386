"""Red team, round two: ties with shared sources across parts, NaN vs number window starts, int64-edge label times, both
key modes — the trainer's path against as_of_join over read()."""
from __future__ import annotations

import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from services.adapters.offline_store import OfflineStore, snapshot_digest
from services.domain import features_join
from services.domain.features_join import join_columns, FOUND
from services.domain.features_lookups import LabelRow, as_of_join
from services.domain.features_windows import FeatureValue, SourceSpan
from tests.unit.features.test_join import VIEW, SCALARS, TOPIC, HOUR

POOL = [(SourceSpan(TOPIC, p, f, last, 1),) for p in (0, 1) for f, last in ((1, 5), (3, 5), (6, 6))]
TIMES = st.one_of(st.sampled_from([0, 1, HOUR, 2 * HOUR]), st.integers(-2**63, 2**63 - 1))
VALUE_TIMES = st.one_of(st.sampled_from([0, 1, HOUR, 2 * HOUR]), st.integers(0, 2**62), st.just(2**63 - 1))


@st.composite
def history(draw):
    values = []
    for _ in range(draw(st.integers(1, 25))):
        values.append(FeatureValue(VIEW.name, VIEW.version, draw(st.sampled_from([f.name for f in VIEW.features])),
                                   draw(st.sampled_from(["a", "b"])), draw(VALUE_TIMES), draw(SCALARS),
                                   draw(st.sampled_from([None, 0, 7])), draw(st.sampled_from(POOL))))
    return values


def reference(view, history_, entities, times, feature):
    rows = as_of_join([LabelRow(e, int(t)) for e, t in zip(entities, times)], [view], history_, [(view.name, feature)])
    return [(r.lookups[0].value, r.lookups[0].missing, r.lookups[0].sources, r.lookups[0].event_ms) for r in rows]


@pytest.mark.parametrize("rank", [False, True])
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(history(), st.integers(1, 3), st.lists(st.tuples(st.sampled_from(["a", "b", "z"]), TIMES), min_size=1,
                                               max_size=8))
def test_ties_and_edges_join_as_the_rule(monkeypatch, rank, values, nparts, labels):
    if rank:
        monkeypatch.setattr(features_join, "_KEY_LIMIT", 1000)
    with tempfile.TemporaryDirectory() as folder:
        store = OfflineStore(folder)
        for i in range(nparts):
            chunk = values[i::nparts]
            if chunk:
                store.write(chunk, f"p{i}")
        objects = store.read(VIEW.name, VIEW.version)
        [columns], _ = store.snapshot([VIEW])
        entities = [e for e, _ in labels]
        times = np.array([t for _, t in labels], dtype=np.int64)
        view = VIEW
        for feature in [f.name for f in VIEW.features]:
            [looked] = join_columns(entities, times, view, columns, [feature])
            theirs = reference(view, objects, entities, times, feature)
            for i, (value, missing, sources, event_ms) in enumerate(theirs):
                if missing is None:
                    assert looked.state[i] == FOUND, (i, theirs[i])
                    got = columns.value_at(int(looked.row[i]))
                    assert (got.sources, got.event_ms) == (sources, event_ms)
                    assert repr(got.value) == repr(value)
                elif missing == "expired":
                    assert looked.state[i] == features_join.EXPIRED
                else:
                    assert looked.state[i] == features_join.MISSING
            used = features_join.used_values([looked])
            if len(used):
                assert snapshot_digest(used) == snapshot_digest(list(used))


@pytest.mark.parametrize("order", [(0, 1, 2, 3), (3, 2, 1, 0), (1, 3, 0, 2), (2, 0, 3, 1)])
def test_a_run_left_with_one_row_after_duplicates_and_nan_vs_number_starts(order):
    s1, s2 = POOL[0], POOL[3]
    rows = [FeatureValue(VIEW.name, VIEW.version, "last_amount", "a", HOUR, 1.0, None, s1),
            FeatureValue(VIEW.name, VIEW.version, "last_amount", "a", HOUR, 2.0, None, s1),   # a duplicate of the first
            FeatureValue(VIEW.name, VIEW.version, "last_amount", "a", HOUR, 3.0, 0, s1),      # same sources, a start
            FeatureValue(VIEW.name, VIEW.version, "last_amount", "a", HOUR, 4.0, None, s2)]
    for drop in (None, 2, 3):
        with tempfile.TemporaryDirectory() as folder:
            store = OfflineStore(folder)
            for i, k in enumerate(order):
                if k != drop:
                    store.write([rows[k]], f"p{i}")
            objects = store.read(VIEW.name, VIEW.version)
            [columns], _ = store.snapshot([VIEW])
            [looked] = join_columns(["a"], np.array([HOUR + 1]), VIEW, columns, ["last_amount"])
            [(value, missing, sources, _)] = reference(VIEW, objects, ["a"], [HOUR + 1], "last_amount")
            got = columns.value_at(int(looked.row[0]))
            taken = [o for o in objects if o.value == value]
            assert (got.value, got.sources, got.window_start_ms) == (value, sources, taken[0].window_start_ms)
            used = features_join.used_values([looked])
            assert snapshot_digest(used) == snapshot_digest(list(used)) == snapshot_digest(taken)


SPANS = [(SourceSpan(TOPIC, 9, 10, 10, 1),), (SourceSpan(TOPIC, 10, 9, 9, 1),), (SourceSpan(TOPIC, 9, 9, 9, 1),),
         (SourceSpan(TOPIC, 1, 5, 5, 1), SourceSpan(TOPIC, 0, 7, 7, 1)), (SourceSpan(TOPIC, 1, 5, 5, 1),),
         (SourceSpan(TOPIC, 1, 2, 5, 4),), (SourceSpan("a.b", 1, 1, 1, 1),)]


@pytest.mark.parametrize("seed", range(6))
def test_ties_whose_places_order_is_not_their_texts_are_taken_as_as_of_join_takes_them(seed):
    """Places compare as numbers (partition 9 before 10, offset 9 before 10), span by span, where their text
    compares character by character: the winner of a tie is as_of_join's, whatever order the parts were written."""
    order = np.random.default_rng(seed).permutation(len(SPANS))
    rows = [FeatureValue(VIEW.name, VIEW.version, "last_amount", "a", HOUR, float(k), None, SPANS[k]) for k in order]
    with tempfile.TemporaryDirectory() as folder:
        store = OfflineStore(folder)
        for i, row in enumerate(rows):
            store.write([row], f"p{i}")
        [columns], _ = store.snapshot([VIEW])
        [looked] = join_columns(["a"], np.array([HOUR + 1]), VIEW, columns, ["last_amount"])
        [(value, _, sources, _)] = reference(VIEW, store.read(VIEW.name, VIEW.version), ["a"], [HOUR + 1],
                                             "last_amount")
        got = columns.value_at(int(looked.row[0]))
        assert (got.value, got.sources) == (value, sources) == (1.0, SPANS[1])
