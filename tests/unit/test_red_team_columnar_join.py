"""Red team: the trainer's point-in-time join on columns (e2537ed, ada9f46; issue 36) attacked from outside.

The claim: OfflineStore.snapshot + training_set (features_join.join_columns) give exactly the cells, categories,
used values and digest that as_of_join gives over the store's objects (OfflineStore.read: what the trainer read
before e2537ed, and what the drift-watcher and the CLI still read), for every history and label set. Each test is a
finding: a strict xfail names a defect still open, a plain test holds a property that was attacked and held. Ten
of the eleven findings are fixed (their tests plain now); the lone surrogate, which no record can carry, is open."""
from __future__ import annotations

import math
import unicodedata

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from services.adapters import offline_store
from services.adapters.offline_store import OfflineStore, snapshot_digest
from services.domain import features_join
from services.domain.features_join import columns_of
from services.domain.features_lookups import LabelRow, as_of_join, column_name
from services.domain.features_training import (FeatureSetRefused, FeatureSettings, _entity, _ms, _time,
                                               label_columns, training_set,
                                               until_from_json)
from services.domain.features_views import parse_views
from services.domain.features_windows import FeatureValue, SourceSpan
from services.trainer.handlers import TRAINING_FAILURES
from tests.unit.features.test_windows import HOUR, TOPIC, view_of

VIEW = view_of({"name": "last_amount", "aggregate": "last", "field": "amount"},
               {"name": "last_channel", "aggregate": "last", "field": "channel"}, ttl="2h")
SETTINGS = FeatureSettings((VIEW.name,), "customer", "at")
AMOUNT = column_name(VIEW.name, "last_amount")
T = 1_700_000_000_000


def value(val, first: int, last: int | None = None, *, entity: str = "c1", at: int = HOUR, feature: str = "last_amount",
          window_start: int | None = None, view: str = VIEW.name, version: str = VIEW.version) -> FeatureValue:
    last = first if last is None else last
    return FeatureValue(view, version, feature, entity, at, val, window_start,
                        (SourceSpan(TOPIC, 0, first, last, last - first + 1),))


def labels(*rows: tuple[str, int]) -> pd.DataFrame:
    return pd.DataFrame({"customer": [e for e, _ in rows], "at": [t for _, t in rows], "y": [1] * len(rows)})


def label_rows(frame: pd.DataFrame, settings: FeatureSettings) -> list[LabelRow]:
    """The label rows as_of_join reads: label_columns' entities and times, row by row."""
    entities, times = label_columns(frame, settings)
    return [LabelRow(entity, at) for entity, at in zip(entities, times.tolist())]


def both(store: OfflineStore, frame: pd.DataFrame, views=(VIEW,), settings: FeatureSettings = SETTINGS):
    """The trainer's path (snapshot's columns → training_set) and the reference (read's objects → as_of_join), at
    the same offsets: (the training set, {column: the reference's cells}, the reference's objects)."""
    history, until = store.snapshot(list(views))
    objects = [v for view in views for v in store.read(view.name, view.version, until)]
    built = training_set(frame, settings, list(views), history)
    rows = as_of_join(label_rows(frame, settings), list(views), objects)
    cells: dict[str, list] = {}
    for row in rows:
        for lookup in row.lookups:
            cells.setdefault(column_name(lookup.view, lookup.feature), []).append(
                lookup.value if lookup.missing is None else None)
    return built, cells, objects


def numbers(cells: list) -> list[float]:
    return [math.nan if v is None else float(v) for v in cells]


def same(ours: list, theirs: list) -> bool:
    return all((isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)) or a == b
               for a, b in zip(ours, theirs)) and len(ours) == len(theirs)


def rewrite(part, **columns) -> None:
    """A part rewritten by hand with some columns replaced (its schema kept)."""
    table = pq.read_table(part)
    for name, cells in columns.items():
        field = table.schema.field(name)
        table = table.set_column(table.schema.get_field_index(name), field, pa.array(cells, field.type))
    pq.write_table(table, part)


def hand_written(tmp_path, *parts: list[FeatureValue], **columns) -> OfflineStore:
    """A store holding `parts` (p0, p1, ...), the last of them rewritten by hand with `columns` replaced."""
    store = OfflineStore(tmp_path)
    for i, found in enumerate(parts):
        store.write(found, f"p{i}")
    rewrite(store.folder(VIEW.name, VIEW.version) / f"p{len(parts) - 1}.parquet", **columns)
    return store


# 1. Ties: values of one feature, entity and time ------------------------------------------------------------------

@pytest.mark.parametrize("parts", [
    # one part: two values ending at the same offset, their first offsets differ
    [[value(1.0, 5, 9), value(2.0, 3, 9)]],
    # the same value (same sources, same window) written again in a later part, with another number
    [[value(1.0, 5, 9)], [value(2.0, 5, 9)]],
], ids=["same-last-offset", "rewritten-part"])
def test_a_tie_the_places_do_not_break_is_taken_as_the_rule_takes_it(tmp_path, parts):
    store = OfflineStore(tmp_path)
    for i, found in enumerate(parts):
        store.write(found, f"p{i}")
    built, cells, _ = both(store, labels(("c1", 2 * HOUR)))
    assert cells[AMOUNT] == [1.0]                       # the rule over the store's objects
    assert built.frame[AMOUNT].tolist() == [1.0]        # the trainer: 2.0


def test_ties_broken_by_the_places_and_a_different_window_start_agree_with_the_rule(tmp_path):
    """Held: ties the places do break (another partition, a later offset), duplicates across parts with another
    window start, and exact duplicates of a part: the same cells, used values and digest."""
    store = OfflineStore(tmp_path)
    first = [value(1.0, 5, 9), value(2.0, 3, 4), value(3.0, 7, 7, entity="c2"),
             FeatureValue(VIEW.name, VIEW.version, "last_amount", "c2", HOUR, 4.0, None,
                          (SourceSpan(TOPIC, 1, 0, 0, 1),))]
    store.write(first, "p0")
    store.write(first, "p1")                            # a part written again under another name
    store.write([value(5.0, 5, 9, window_start=0)], "p2")
    built, cells, objects = both(store, labels(("c1", 2 * HOUR), ("c2", 2 * HOUR)))
    assert same(built.frame[AMOUNT].tolist(), numbers(cells[AMOUNT]))
    used = [v for v in objects if (v.entity, v.value) in {("c1", 5.0), ("c2", 4.0)}]
    assert snapshot_digest(built.used) == snapshot_digest(list(built.used)) == snapshot_digest(used)


def test_a_part_written_twice_does_not_make_an_object_of_every_value(tmp_path, monkeypatch):
    store = OfflineStore(tmp_path)
    found = [value(float(i), i, entity=f"c{i % 50}", at=HOUR + i // 50) for i in range(2_000)]
    store.write(found, "p0")
    store.write(found, "p1")
    made = []
    real = offline_store._TableRows.value_at
    monkeypatch.setattr(offline_store._TableRows, "value_at", lambda rows, row: made.append(row) or real(rows, row))
    history, _ = store.snapshot([VIEW])
    built = training_set(labels(*[(f"c{i}", HOUR + 100) for i in range(50)]), SETTINGS, [VIEW], history)
    assert len(built.used) == 50
    assert len(made) < 100, f"{len(made):,} values made to order ties of {len(found):,} values and their copies"


# 2. What the store's folders hold --------------------------------------------------------------------------------

def test_a_row_of_another_view_in_a_views_folder_is_not_joined(tmp_path):
    store = hand_written(tmp_path, [value(1.0, 1)], [value(9.0, 2)], view=["intruder"])
    built, cells, _ = both(store, labels(("c1", 2 * HOUR)))
    assert cells[AMOUNT] == [1.0]
    assert built.frame[AMOUNT].tolist() == [1.0] and {v.view for v in built.used} == {VIEW.name}


def test_rows_of_another_version_in_a_folder_and_parts_of_both_forms_join_as_the_rule(tmp_path):
    """Held: rows of another version in the folder are left out; a part of the first form (texts only) beside a
    part of today's form, holding duplicates of it with another window start, joins as read() + as_of_join."""
    store = OfflineStore(tmp_path)
    store.write([value(1.0, 1), value("web", 2, feature="last_channel"), value(None, 3, entity="c2")], "new")
    store.write([value(1.0, 1, window_start=0), value(True, 4, entity="c2", at=HOUR + 1),
                 value(-0.0, 5, entity="c3")], "old")
    folder = store.folder(VIEW.name, VIEW.version)
    old = folder / "old.parquet"
    pd.read_parquet(old).drop(columns=["kind", "number", "text", "sources"]).to_parquet(old, index=False)
    store.write([value(7.0, 6, version=VIEW.version[:16] + "0" * 48)], "other")    # same folder, another version
    assert len(list(folder.glob("*.parquet"))) == 3
    frame = labels(("c1", 2 * HOUR), ("c2", 2 * HOUR), ("c3", 2 * HOUR), ("c4", 2 * HOUR))
    built, cells, objects = both(store, frame)
    for name in built.columns:
        expected = [None if v is None else str(v) for v in cells[name]] if name in built.categorical \
            else numbers(cells[name])
        assert same(built.frame[name].tolist(), expected), name
    assert built.categorical == (column_name(VIEW.name, "last_channel"),)
    assert 7.0 not in built.frame[AMOUNT].tolist()


def test_the_used_values_digest_is_the_digest_of_their_objects_whatever_the_texts(tmp_path):
    store = hand_written(tmp_path, [value(100.0, 1)], value_json=["[1e2]"],
                         sources_json=['[ ["shop.purchases", 0, 1, 1, 1] ]'])
    built, cells, objects = both(store, labels(("c1", 2 * HOUR)))
    assert built.frame[AMOUNT].tolist() == cells[AMOUNT] == [100.0]
    assert snapshot_digest(list(built.used)) == snapshot_digest(objects)
    assert snapshot_digest(built.used) == snapshot_digest(objects)


def test_a_part_whose_typed_columns_disagree_with_its_texts_is_refused_by_the_digest_the_trainer_takes(tmp_path):
    store = hand_written(tmp_path, [value(100.0, 1)], number=[7.0])
    built, cells, _ = both(store, labels(("c1", 2 * HOUR)))
    with pytest.raises(FeatureSetRefused, match="typed columns .* and text .* differ"):
        snapshot_digest(built.used)                     # the trainer's next step: it records what the set used


@pytest.mark.parametrize("column", ["entity", "feature"])
def test_a_row_with_a_null_key_is_left_out_or_refused_with_a_reason(tmp_path, column):
    store = hand_written(tmp_path, [value(1.0, 1)], [value(2.0, 2, entity="c2")], **{column: [None]})
    try:
        built, cells, _ = both(store, labels(("c1", 2 * HOUR)))
    except FeatureSetRefused as refused:
        assert "p1" in str(refused)                     # refused naming the part: fine
        return
    assert built.frame[AMOUNT].tolist() == cells[AMOUNT] == [1.0]


def test_an_empty_store_and_cuts_that_leave_nothing_are_refused_with_a_reason(tmp_path):
    """Held: no folder at all, an `until` naming only partitions never seen, labels before every value: a
    FeatureSetRefused saying the views and labels do not meet (not a crash)."""
    store = OfflineStore(tmp_path)
    history, until = store.snapshot([VIEW])
    assert until == {} and len(history[0]) == 0
    with pytest.raises(FeatureSetRefused, match="none of the"):
        training_set(labels(("c1", 2 * HOUR)), SETTINGS, [VIEW], history)
    store.write([value(1.0, 1)], "p0")
    for cut in ({("elsewhere", 0): 10, (TOPIC, 7): 10}, {(TOPIC, 0): 0}):
        history, _ = store.snapshot([VIEW], cut)
        assert len(history[0]) == 0 and store.read(VIEW.name, VIEW.version, cut) == []
        with pytest.raises(FeatureSetRefused, match="none of the"):
            training_set(labels(("c1", 2 * HOUR)), SETTINGS, [VIEW], history)
    history, _ = store.snapshot([VIEW], {(TOPIC, 0): 1, ("elsewhere", 3): 0})     # a partition not in the store
    with pytest.raises(FeatureSetRefused, match="none of the"):
        training_set(labels(("c1", HOUR), ("c1", 0)), SETTINGS, [VIEW], history)  # at or before the value's time
    assert training_set(labels(("c1", HOUR + 1)), SETTINGS, [VIEW], history).frame[AMOUNT].tolist() == [1.0]


def test_the_key_overflow_is_a_refusal_the_trainer_gives_not_a_crash(tmp_path, monkeypatch):
    """Held: past the integer key's bound (_KEY_LIMIT made small here: 2**62 needs ~10**18 (feature, entity,
    time) cells, out of reach of a real store) the join raises an error the trainer turns into a refusal."""
    store = OfflineStore(tmp_path)
    store.write([value(float(i), i, entity=f"c{i}", at=HOUR + i) for i in range(20)], "p0")
    history, _ = store.snapshot([VIEW])
    monkeypatch.setattr(features_join, "_KEY_LIMIT", 10)
    with pytest.raises((OverflowError, FeatureSetRefused)) as raised:
        training_set(labels(("c1", 2 * HOUR)), SETTINGS, [VIEW], history)
    assert isinstance(raised.value, (FeatureSetRefused, *TRAINING_FAILURES))


# 3. Many views in one training set -------------------------------------------------------------------------------

def _view(name: str, feature: str):
    [view] = parse_views({"views": [{"name": name, "entity": "customer_id", "source": {"topic": TOPIC},
                                     "lateness": "0s", "ttl": "1d", "owner": "ana",
                                     "features": [{"name": feature, "aggregate": "last", "field": "amount"}]}]})
    return view


def test_two_views_whose_columns_would_share_a_name_are_refused(tmp_path):
    first, second = _view("a__b", "c"), _view("a", "b__c")
    history = columns_of([value(1.0, 1, view=first.name, version=first.version, feature="c", entity="e"),
                          value(2.0, 2, view=second.name, version=second.version, feature="b__c", entity="e")])
    settings = FeatureSettings((first.name, second.name), "customer", "at")
    try:
        built = training_set(labels(("e", 2 * HOUR)), settings, [first, second], history)
    except FeatureSetRefused:
        return
    assert len(set(built.columns)) == len(built.columns) == 2


def _two_views(tmp_path, second_has_values: bool):
    first, second = _view("alpha", "last"), _view("beta", "last")
    store = OfflineStore(tmp_path)
    store.write([value(v, i, view=first.name, version=first.version, feature="last", entity=e, at=HOUR + i)
                 for i, (e, v) in enumerate([("c1", 1.0), ("c2", "x"), ("c1", 2 ** 63 - 1), ("c2", -2 ** 63)])], "p")
    if second_has_values:
        store.write([value(5.0, 3, view=second.name, version=second.version, feature="last", entity="c2")], "p")
    settings = FeatureSettings((first.name, second.name), "customer", "at")
    frame = labels(("c1", 2 * HOUR), ("c2", 2 * HOUR), ("c2", HOUR + 2))
    return both(store, frame, (first, second), settings)


def test_two_views_with_the_same_feature_names_join_as_the_rule(tmp_path):
    """Held: two views with the same feature names (distinct columns), text and int64's extremes in one."""
    built, cells, _ = _two_views(tmp_path, second_has_values=True)
    assert built.columns == ("alpha__last", "beta__last") and built.categorical == ("alpha__last",)
    assert built.frame["alpha__last"].tolist() == [str(v) for v in cells["alpha__last"]] \
        == ["9223372036854775807", "-9223372036854775808", "x"]
    assert same(built.frame["beta__last"].tolist(), numbers(cells["beta__last"])) and \
        cells["beta__last"] == [None, 5.0, 5.0]


def test_a_second_view_with_no_values_gives_empty_columns_not_an_index_error(tmp_path):
    built, cells, _ = _two_views(tmp_path, second_has_values=False)
    assert built.columns == ("alpha__last", "beta__last") and cells["beta__last"] == [None] * 3
    assert same(built.frame["beta__last"].tolist(), [math.nan] * 3)


# 4. Label columns: the fast paths against the per-value rule -----------------------------------------------------

def _per_value(frame: pd.DataFrame) -> tuple | str:
    """label_columns' rule value by value (what label_rows did before e2537ed): entities and times, or 'refused'."""
    entities = [_entity(v) for v in frame["customer"].tolist()]
    column = frame["at"]
    if pd.api.types.is_datetime64_any_dtype(column.dtype):
        times = [None] * len(column) if getattr(column.dtype, "tz", None) is None else \
            [None if pd.isna(at) else _ms(at.to_pydatetime()) for at in column]
    else:
        times = [_time(v) for v in column.tolist()]
    return "refused" if None in entities or None in times else (entities, times)


def _fast(frame: pd.DataFrame) -> tuple | str:
    try:
        entities, times = label_columns(frame, SETTINGS)
    except FeatureSetRefused:
        return "refused"
    return list(entities), times.tolist()


ENTITY_COLUMNS = {
    "uint64": pd.Series(np.array([1, 2 ** 63 - 1], dtype=np.uint64)),
    "uint64 past int64": pd.Series(np.array([1, 2 ** 63], dtype=np.uint64)),
    "Int64": pd.Series([1, 2], dtype="Int64"), "Int64 with NA": pd.Series([1, None], dtype="Int64"),
    "int8": pd.Series([1, 2], dtype=np.int8), "negative": pd.Series([-1, 2]),
    "float whole": pd.Series([1.0, 2.0]), "float -0.0": pd.Series([-0.0, 2.0]),
    "float 2**63": pd.Series([2.0 ** 63, 1.0]),
    "bool": pd.Series([True, False]), "boolean": pd.Series([True, False], dtype="boolean"),
    "mixed int and text": pd.Series([1, "1"], dtype=object), "numpy str_": pd.Series([np.str_("a"), np.str_("b")]),
    "empty text": pd.Series(["", "a"]), "257 characters": pd.Series(["x" * 257, "a"]),
    "256 non-ASCII": pd.Series(["é" * 256, "a"]), "NUL inside": pd.Series(["a\x00", "b"]),
    "arrow string": pd.Series(["a", "b"], dtype=pd.ArrowDtype(pa.string())),
    "arrow large_string long": pd.Series(["a" * 300, "b"], dtype=pd.ArrowDtype(pa.large_string())),
    "string[python]": pd.Series(["a", ""], dtype="string[python]"),
    "arrow int": pd.Series([1, 2], dtype=pd.ArrowDtype(pa.int64())),
    "arrow uint64 past int64": pd.Series([1, 2 ** 63], dtype=pd.ArrowDtype(pa.uint64())),
    "category text": pd.Series(["a", "b"], dtype="category"), "category int": pd.Series([1, 2], dtype="category"),
    "bytes": pd.Series([b"a", b"b"], dtype=object),
}
TIME_COLUMNS = {
    "int": pd.Series([T, T]), "uint64": pd.Series(np.array([T, T], dtype=np.uint64)),
    "Int64": pd.Series([T, T], dtype="Int64"), "Int64 with NA": pd.Series([T, None], dtype="Int64"),
    "float": pd.Series([float(T), T + 0.5]), "bool": pd.Series([True, False]), "past 9999": pd.Series([2 ** 62, T]),
    "aware": pd.Series(pd.to_datetime([T, T], unit="ms", utc=True)),
    "aware Paris": pd.Series(pd.to_datetime([T, T], unit="ms", utc=True).tz_convert("Europe/Paris")),
    "naive": pd.Series(pd.to_datetime([T, T], unit="ms")),
    "arrow int": pd.Series([T, T], dtype=pd.ArrowDtype(pa.int64())),
    "ISO text": pd.Series(["2023-11-14T22:13:20Z", "2023-11-14T23:13:20+01:00"]),
}


@pytest.mark.parametrize("column", ENTITY_COLUMNS.values(), ids=ENTITY_COLUMNS.keys())
def test_label_entities_of_any_dtype_are_what_the_per_value_rule_makes_them(column):
    """Held: the integer and text fast paths accept exactly what _entity accepts, with the same text ("1", never
    "1.0"), for these dtypes."""
    frame = pd.DataFrame({"customer": column, "at": [T] * len(column)})
    assert _fast(frame) == _per_value(frame)


@pytest.mark.parametrize("column", TIME_COLUMNS.values(), ids=TIME_COLUMNS.keys())
def test_label_times_of_any_dtype_are_what_the_per_value_rule_makes_them(column):
    frame = pd.DataFrame({"customer": ["a"] * len(column), "at": column})
    assert _fast(frame) == _per_value(frame)


def test_a_sparse_label_column_with_one_bad_row_is_refused_for_that_row_only():
    frame = pd.DataFrame({"customer": ["a", "b"], "at": pd.Series(pd.arrays.SparseArray([T, -5]))})
    with pytest.raises(FeatureSetRefused) as refused:
        label_columns(frame, SETTINGS)
    assert "1 label row(s)" in str(refused.value) and "the first row 1" in str(refused.value)


def test_entities_match_exactly_as_the_rule_matches_them_whatever_their_normal_form(tmp_path):
    """Held: no normalisation on either side — a label's NFD text does not find the NFC entity's value, a whole
    number label finds the entity written as its digits, in the columns as in as_of_join."""
    nfc = unicodedata.normalize("NFC", "José")
    store = OfflineStore(tmp_path)
    store.write([value(1.0, 1, entity=nfc), value(2.0, 2, entity="42"), value("naïve \"q\"\n\\", 3, entity="42",
                                                                                feature="last_channel")], "p0")
    frame = pd.DataFrame({"customer": [nfc, unicodedata.normalize("NFD", nfc), 42.0, "42.0"],
                          "at": [2 * HOUR] * 4, "y": [1] * 4})
    built, cells, _ = both(store, frame)
    assert cells[AMOUNT] == [1.0, None, 2.0, None]
    assert same(built.frame[AMOUNT].tolist(), numbers(cells[AMOUNT]))
    assert built.frame[column_name(VIEW.name, "last_channel")].tolist() == [None, None, "naïve \"q\"\n\\", None]


# 5. The other readers of the offline store -----------------------------------------------------------------------

def test_read_and_frame_give_the_written_values_from_parts_of_both_forms(tmp_path):
    """Held: read() and frame() (the drift-watcher's skew check, the CLI's `features` listing) read today's parts
    and the first form's alike: the objects written, duplicates dropped."""
    written = [value(1.0, 1), value("t\u00e9xt\u2028", 2, feature="last_channel"), value(None, 3, entity="c2"),
               value(2 ** 63 - 1, 4, entity="c3", window_start=0), value(False, 5, entity="c4")]
    store = OfflineStore(tmp_path)
    store.write(written, "new")
    store.write(written[:2], "old")
    old = store.folder(VIEW.name, VIEW.version) / "old.parquet"
    pd.read_parquet(old).drop(columns=["kind", "number", "text", "sources"]).to_parquet(old, index=False)
    read = store.read(VIEW.name, VIEW.version)
    assert sorted(read, key=repr) == sorted(written, key=repr)
    assert list(store.frame(VIEW.name, VIEW.version).columns)[:8] == ["view", "version", "feature", "entity",
                                                                      "event_ms", "window_start_ms", "value_json",
                                                                      "sources_json"]
    assert store.snapshot([VIEW])[1] == {(TOPIC, 0): 5}


# 6. The claim, generated: two views, several parts, cuts, spans of two topics or none -----------------------------

def _ttl_view(name: str, ttl: str):
    [view] = parse_views({"views": [{"name": name, "entity": "customer_id", "source": {"topic": TOPIC},
                                     "lateness": "0s", "ttl": ttl, "owner": "ana",
                                     "features": [{"name": "a", "aggregate": "last", "field": "amount"},
                                                  {"name": "b", "aggregate": "last", "field": "x"}]}]})
    return view


VIEWS = (_ttl_view("one", "1h"), _ttl_view("two", "3h"))
# no NUL (the edge refuses it in every string; read() refuses it too) and no lone surrogate (Avro's strings are
# UTF-8): neither reaches a value (the surrogate is the finding below)
TEXTS = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=4)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 63, 2 ** 63 - 1),
                    st.floats(allow_nan=False, allow_infinity=False), TEXTS)
SPANS = st.lists(st.builds(lambda topic, partition, first, length, events: SourceSpan(
    topic, partition, first, first + length, events), st.sampled_from([TOPIC, "other"]), st.integers(0, 1),
    st.integers(0, 20), st.integers(0, 3), st.integers(1, 4)), max_size=2).map(tuple)


@st.composite
def _histories(draw) -> list[FeatureValue]:
    """Values of two views, their sources of two topics (or none); no two of a (view, feature, entity, time) with
    the same places (that tie is the finding above)."""
    values, seen = [], set()
    for _ in range(draw(st.integers(0, 30))):
        view, feature = draw(st.sampled_from(VIEWS)), draw(st.sampled_from(["a", "b"]))
        entity, at, spans = draw(st.sampled_from(["c1", "c2", "7"])), draw(st.integers(0, 8)) * HOUR // 2, draw(SPANS)
        key = (view.name, feature, entity, at, tuple((s.topic, s.partition, s.last_offset) for s in spans))
        if key not in seen:
            seen.add(key)
            values.append(FeatureValue(view.name, view.version, feature, entity, at, draw(SCALARS),
                                       draw(st.one_of(st.none(), st.integers(0, 10 ** 13))), spans))
    return values


LABEL_ROWS = st.lists(st.tuples(st.sampled_from(["c1", "c2", 7, "c9"]),
                                st.integers(0, 10).map(lambda h: h * HOUR // 2 + h % 2)), min_size=1, max_size=8)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(_histories(), LABEL_ROWS,
       st.integers(1, 3), st.one_of(st.none(), st.dictionaries(st.tuples(st.sampled_from([TOPIC, "other"]),
                                                                         st.integers(0, 1)), st.integers(-1, 25))),
       st.booleans())
def test_two_views_in_parts_cut_at_offsets_join_as_the_rule_over_read(tmp_path_factory, history, rows, parts, until,
                                                                       again):
    """Held: the trainer's path against as_of_join over read() at the same offsets — cells, categories, digest —
    with the values in 1 to 3 parts (and some written again), the views' offsets reached or a given cut."""
    store = OfflineStore(tmp_path_factory.mktemp("store"))
    for i in range(parts):
        if history[i::parts]:
            store.write(history[i::parts], f"p{i}")
    if again and history:
        store.write(history[:3], "again")
    frame = pd.DataFrame({"customer": [e for e, _ in rows], "at": [t for _, t in rows], "y": 1})
    history_columns, cut = store.snapshot(list(VIEWS), until)
    # a view with no values at the cut is left out (with the others, that is the IndexError finding above)
    views = [v for v, c in zip(VIEWS, history_columns) if len(c)] or list(VIEWS)
    settings_ = FeatureSettings(tuple(v.name for v in views), "customer", "at")
    objects = [v for view in views for v in store.read(view.name, view.version, cut)]
    cells: dict[str, list] = {}
    used = {}
    for row in as_of_join(label_rows(frame, settings_), views, objects):
        for lookup in row.lookups:
            cells.setdefault(column_name(lookup.view, lookup.feature), []).append(
                lookup.value if lookup.missing is None else None)
            if lookup.missing is None:
                key = (lookup.view, lookup.feature, row.label.entity, lookup.event_ms, lookup.sources)
                used[key] = next(v for v in objects if (v.view, v.feature, v.entity, v.event_ms, v.sources) == key)
    if not used:
        with pytest.raises(FeatureSetRefused, match="none of the"):
            training_set(frame, settings_, views, history_columns)
        return
    built = training_set(frame, settings_, views, history_columns)
    assert built.categorical == tuple(c for c, held in cells.items() if any(isinstance(v, str) for v in held))
    for name, held in cells.items():
        expected = [None if v is None else str(v) for v in held] if name in built.categorical else numbers(held)
        assert same(built.frame[name].tolist(), expected), name
    assert snapshot_digest(built.used) == snapshot_digest(list(used.values()))


def test_a_recorded_until_at_the_edge_of_int64_cuts_as_read_does(tmp_path):
    """Held: features_until_json's offsets are bounded to int64 by the edge's parser, and the snapshot's cut at
    both ends of that range is read()'s (no OverflowError in _within's int64 limits)."""
    store = OfflineStore(tmp_path)
    store.write([value(1.0, 1), value(2.0, 2, entity="c2")], "p0")
    for offset in (2 ** 63 - 1, -2 ** 63):
        until = until_from_json(f'{{"{TOPIC}:0": {offset}}}')
        history, _ = store.snapshot([VIEW], until)
        assert len(history[0]) == len(store.read(VIEW.name, VIEW.version, until)) == (2 if offset > 0 else 0)
    with pytest.raises(FeatureSetRefused):
        until_from_json(f'{{"{TOPIC}:0": {2 ** 63}}}')


@pytest.mark.xfail(strict=True, reason=(
    "a text value holding a lone surrogate: the first form stored it (value_json escapes it as \\ud800), "
    "OfflineStore.write now raises UnicodeEncodeError building the `text` column. Not reachable through the edge "
    "(Avro strings are UTF-8); tests/unit/features/test_join.py's SCALARS draw text without surrogates (what a "
    "record holds), so its store property test no longer meets it"))
def test_a_text_value_with_a_lone_surrogate_is_stored_as_the_first_form_stored_it(tmp_path):
    store = OfflineStore(tmp_path)
    store.write([value("\ud800", 1, feature="last_channel")], "p0")
    assert [v.value for v in store.read(VIEW.name, VIEW.version)] == ["\ud800"]
