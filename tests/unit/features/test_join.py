"""The trainer's point-in-time join on columns (features_join, through training_set and the offline store's
columns) against the rule's object form (features_lookups.as_of_join), over generated histories: every kind of
value (null, bool, int, float, text), ties in time broken by the sources' places, values of another version, old
values past the TTL, entities no value has, labels at a value's own time, duplicates across parts, and a snapshot
cut at offsets. The same cells, the same categories, the same values used, the same digest. And the skew check's
read of only the keys it compares (OfflineStore.at_keys) decides as a read of every value does."""
from __future__ import annotations

import math
import tempfile
from dataclasses import replace
from unittest.mock import patch

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from services.adapters.offline_store import OfflineStore, snapshot_digest
from services.domain import features_join
from services.domain.features_join import columns_of
from services.domain.features_lookups import LabelRow, as_of_join, column_name
from services.domain.features_monitoring import skew
from services.domain.features_training import FeatureSetRefused, FeatureSettings, training_set
from services.domain.features_windows import FeatureValue, SourceSpan
from tests.unit.features.test_windows import HOUR, TOPIC, view_of

VIEW = view_of({"name": "last_amount", "aggregate": "last", "field": "amount"},
               {"name": "last_channel", "aggregate": "last", "field": "channel"},
               {"name": "spend_1h", "aggregate": "sum", "field": "amount", "window": "1h"}, ttl="2h")
OTHER_VERSION = "f" * 64
SETTINGS = FeatureSettings((VIEW.name,), "customer", "at")
ENTITIES = ("c1", "c2", "c3", "é\"\n")
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**63 - 1),
                    st.floats(allow_nan=False, allow_infinity=False),
                    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),  # UTF-8, no NUL:
                            max_size=6))                                                     # what a record holds


@st.composite
def histories(draw) -> list[FeatureValue]:
    """Values with distinct sources (a value is what its sources made it); times on a coarse grid so that ties
    are common; now and then one of another version of the view."""
    values = []
    for offset in range(draw(st.integers(0, 40))):
        feature = draw(st.sampled_from([f.name for f in VIEW.features]))
        spans = (SourceSpan(TOPIC, draw(st.integers(0, 2)), offset, offset, 1),)
        if draw(st.booleans()):
            spans += (SourceSpan("returns", draw(st.integers(0, 1)), offset, offset + 3, 2),)
        values.append(FeatureValue(
            VIEW.name, OTHER_VERSION if draw(st.integers(0, 9)) == 0 else VIEW.version, feature,
            draw(st.sampled_from(ENTITIES)), draw(st.integers(0, 12)) * HOUR // 2,
            draw(SCALARS), draw(st.one_of(st.none(), st.integers(0, 5 * HOUR))), spans))
    return values


LABELS = st.lists(st.tuples(st.sampled_from(ENTITIES + ("c9",)), st.integers(0, 14).map(lambda h: h * HOUR // 2
                                                                                           + (h % 3 == 0))),
                  min_size=1, max_size=12)


def reference(labels: list[tuple[str, int]], history: list[FeatureValue]) -> tuple[dict, tuple, list]:
    """The training set's cells as as_of_join and the former object path made them: cells, categories, used."""
    rows = as_of_join([LabelRow(e, t) for e, t in labels], [VIEW], history)
    cells: dict[str, list] = {column_name(VIEW.name, f.name): [] for f in VIEW.features}
    used = {}
    for row in rows:
        for lookup in row.lookups:
            found = lookup.missing is None
            cells[column_name(lookup.view, lookup.feature)].append(lookup.value if found else None)
            if found:
                key = (lookup.view, lookup.view_version, lookup.feature, row.label.entity, lookup.event_ms,
                       lookup.sources)
                used[key] = next(v for v in history if (v.view, v.view_version, v.feature, v.entity, v.event_ms,
                                                        v.sources) == key)
    categorical = tuple(c for c, held in cells.items() if any(isinstance(v, str) for v in held))
    table = {c: [None if v is None else str(v) for v in held] if c in categorical
             else [math.nan if v is None else float(v) for v in held] for c, held in cells.items()}
    return table, categorical, list(used.values())


def same_cells(ours: pd.Series, theirs: list) -> bool:
    return len(ours) == len(theirs) and all(
        (a is None and b is None) or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))
        or a == b for a, b in zip(ours.tolist(), theirs))


def check(labels: list[tuple[str, int]], history: list[FeatureValue], columns) -> None:
    frame = pd.DataFrame(labels, columns=["customer", "at"]).assign(y=1)
    table, categorical, used = reference(labels, history)
    if not used:
        with pytest.raises(ValueError, match="none of the"):
            training_set(frame, SETTINGS, [VIEW], columns)
        return
    built = training_set(frame, SETTINGS, [VIEW], columns)
    assert built.categorical == categorical
    for column, cells in table.items():
        assert same_cells(built.frame[column], cells), column
    assert sorted(map(snapshot_digest_row, built.used)) == sorted(map(snapshot_digest_row, used))
    assert snapshot_digest(built.used) == snapshot_digest(used)


def snapshot_digest_row(value: FeatureValue) -> tuple:
    return value.feature, value.entity, value.event_ms, value.sources


@settings(max_examples=150, deadline=None)
@given(histories(), LABELS)
def test_the_join_on_columns_is_as_of_join_on_any_history(history, labels):
    check(labels, history, columns_of(history))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(), LABELS, st.integers(0, 40), st.booleans())
def test_the_offline_stores_columns_cut_at_offsets_join_as_its_values_do(history, labels, cut, twice):
    """Written in two parts (the second, when `twice`, repeating the first: a part written again under another
    name), read up to offsets: the same as the objects `read` gives up to them."""
    with tempfile.TemporaryDirectory() as folder:
        store = OfflineStore(folder)
        half = len(history) // 2
        store.write(history[:half], "p0")
        store.write(history[half:] + (history[:half] if twice else []), "p1")
        until = {(topic, partition): cut for topic in (TOPIC, "returns") for partition in range(3)}
        objects = store.read(VIEW.name, VIEW.version, until)
        history_columns, _ = store.snapshot([VIEW], until)
        check(labels, objects, history_columns)
        assert store.snapshot([VIEW])[1] == _newest(store.read(VIEW.name, VIEW.version))


def _newest(values: list[FeatureValue]) -> dict:
    newest: dict = {}
    for value in values:
        for span in value.sources:
            newest[(span.topic, span.partition)] = max(newest.get((span.topic, span.partition), -1), span.last_offset)
    return newest


def test_a_part_written_before_the_typed_columns_is_read_as_one_written_now(tmp_path):
    """A part of the first form (texts only, no typed columns) joins like one of today's."""
    history = [FeatureValue(VIEW.name, VIEW.version, "last_amount", "c1", HOUR, 5, None,
                            (SourceSpan(TOPIC, 0, 1, 1, 1),)),
               FeatureValue(VIEW.name, VIEW.version, "last_channel", "c1", HOUR, "web", None,
                            (SourceSpan(TOPIC, 0, 2, 2, 1),))]
    store = OfflineStore(tmp_path)
    store.write(history, "p0")
    part = next(tmp_path.rglob("p0.parquet"))
    pd.read_parquet(part).drop(columns=["kind", "number", "text", "sources"]).to_parquet(part, index=False)
    check([("c1", 2 * HOUR), ("c2", 2 * HOUR)], history, store.snapshot([VIEW])[0])


@settings(max_examples=60, deadline=None)
@given(histories(), LABELS)
def test_times_too_wide_for_the_key_are_ranked_and_join_the_same(history, labels):
    """Where (feature, entity) pairs × the span of times would pass the int64 key, the times' ranks stand in."""
    with patch.object(features_join, "_KEY_LIMIT", 10_000):
        check(labels, history, columns_of(history))


def test_values_too_many_for_one_key_refuse_the_set_with_the_reason():
    history = [FeatureValue(VIEW.name, VIEW.version, "last_amount", "c1", HOUR, 5.0, None,
                            (SourceSpan(TOPIC, 0, 1, 1, 1),))]
    frame = pd.DataFrame({"customer": ["c1"], "at": [2 * HOUR], "y": [1]})
    with patch.object(features_join, "_KEY_LIMIT", 1), pytest.raises(FeatureSetRefused, match="too many for one join"):
        training_set(frame, SETTINGS, [VIEW], columns_of(history))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(), st.lists(st.tuples(st.integers(0, 60), st.sampled_from(["same", "changed", "unknown"])),
                             max_size=10))
def test_the_skew_check_reads_only_the_keys_it_compares_and_decides_as_on_every_value(history, picks):
    """OfflineStore.at_keys (the drift-watcher's read) gives `skew` what `read` would: the same comparisons, the same
    mismatches, the same values still pending."""
    with tempfile.TemporaryDirectory() as folder:
        store = OfflineStore(folder)
        store.write(history, "p0")
        mine = [v for v in history if v.view_version == VIEW.version]
        online = []
        for index, how in picks:
            if mine:
                value = mine[index % len(mine)]
                online.append(value if how == "same" else replace(value, value="other") if how == "changed"
                              else replace(value, event_ms=value.event_ms + 1, sources=(
                                  SourceSpan(TOPIC, 0, 1000 + index, 1000 + index, 1),)))
        keys = {(v.feature, v.entity, v.event_ms) for v in online}
        everything = store.read(VIEW.name, VIEW.version)
        assert skew(online, *store.at_keys(VIEW.name, VIEW.version, keys)) == skew(
            online, everything, _newest(everything))


def test_a_row_whose_view_or_version_is_null_is_left_out_even_when_every_other_row_is_kept(tmp_path):
    """A null in the view or version column (a part written by hand) is not the view's: the comparison is null
    there, and null keeps nothing (it once kept the whole table when the rest compared equal)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    history = [FeatureValue(VIEW.name, VIEW.version, "last_amount", "c1", HOUR, float(i), None,
                            (SourceSpan(TOPIC, 0, i, i, 1),)) for i in range(3)]
    for column in ("view", "version"):
        store = OfflineStore(tmp_path / column)
        store.write(history, "p0")
        part = next((tmp_path / column).rglob("p0.parquet"))
        table = pq.read_table(part)
        index = table.schema.get_field_index(column)
        cells = table.column(column).to_pylist()
        table = table.set_column(index, table.schema.field(column), pa.array([None] + cells[1:], pa.string()))
        pq.write_table(table, part)
        [columns], _ = store.snapshot([VIEW])
        assert len(columns) == 2 and sorted(columns.number.tolist()) == [1.0, 2.0], column
