"""The point-in-time join on columns (issue 36): the trainer's path, the same rule as features_lookups.as_of_join.

A view version's values arrive as columns (ViewColumns: what the offline store holds, in any order, duplicates
allowed). For every label row and wanted feature the join finds the newest value of the entity strictly before the
row's time — within the view's TTL, or it is expired — by one sort of the values and one binary search per cell,
on integers: feature and entity codes and the rank of the value's time make one sortable key,
(feature × entities + entity) × times + rank. Values with the same feature, entity and time (rare) are ordered as
as_of_join orders them (their sources' places), the last wins. tests/unit/features/test_join.py checks this path
against as_of_join on generated histories: the same values, the same misses, the same values used.

The canonical texts of a value and of its sources (value_json, sources_json) are written here: the offline store
stores them, and the snapshot digest of the values a training set used is taken over them.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, cast

import numpy as np
import pandas as pd

from services.bus.edge import InvalidField, read_json
from services.bus.errors import BadInput

from .features_views import FeatureView
from .features_windows import FeatureValue, Scalar, SourceSpan, source_places

class FeatureSetRefused(BadInput, ValueError):
    """Label rows or feature values a training set cannot be built from; the message says why."""


NULL, BOOL, INT, FLOAT, TEXT = range(5)        # a value's kind (ViewColumns.kind)
TEXT_VALUE = TEXT                              # TEXT, under the name the domain package exports
FOUND, EXPIRED, MISSING = range(3)             # a looked-up cell's state: found, past the TTL, no value before
_KEY_LIMIT = 2 ** 62                           # the integer keys' bound (int64)


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), allow_nan=False)    # json.dumps's, made once


def canonical_json(value: object) -> str:
    return _CANONICAL.encode(value)


def value_json(value: Scalar) -> str:
    """A value's stored text: in a one-item array (the edge's parser reads arrays and objects, not bare scalars)."""
    return canonical_json([value])


def sources_json(sources: Iterable[SourceSpan]) -> str:
    return canonical_json([[s.topic, s.partition, s.first_offset, s.last_offset, s.events] for s in sources])


def kind_of(value: Scalar) -> int:
    if value is None:
        return NULL
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, int):
        return INT
    return TEXT if isinstance(value, str) else FLOAT


class Rows(Protocol):
    """What a ViewColumns' arrays do not hold: each row as a FeatureValue, and its sources' text as the digest reads
    it. ObjectRows: from the values the columns were made of; the offline store gives its own (its typed columns)."""

    def value_at(self, row: int) -> FeatureValue:
        """The row as a FeatureValue (made when asked: `used`)."""

    def places(self, rows: np.ndarray) -> list[tuple]:
        """The rows' sources' places (source_places), as the rows' objects have them."""

    def cut_sources(self, rows: np.ndarray, stored: list[str]) -> list[str]:
        """The rows' sources_json made from what the cut at offsets read (`stored`: their sources_json)."""

    def canonical_sources(self, text: str) -> str:
        """A sources_json as the store writes it."""


@dataclass(frozen=True)
class ObjectRows:
    """The rows of columns made from objects (columns_of): each row is its object, its sources as stored."""
    values: Sequence[FeatureValue]

    def value_at(self, row: int) -> FeatureValue:
        return self.values[row]

    def places(self, rows: np.ndarray) -> list[tuple]:
        return [source_places(self.values[row].sources) for row in rows.tolist()]

    def cut_sources(self, rows: np.ndarray, stored: list[str]) -> list[str]:
        return stored

    def canonical_sources(self, text: str) -> str:
        return text


@dataclass(frozen=True, eq=False)
class ViewColumns:
    """One view version's values as columns, one row per value."""
    view: str
    version: str
    feature: pd.Categorical
    entity: pd.Categorical
    event_ms: np.ndarray                # int64
    window_start_ms: np.ndarray         # float64, NaN when the value has no window (exact: times are < 2**53)
    kind: np.ndarray                    # int8: NULL, BOOL, INT, FLOAT or TEXT
    number: np.ndarray                  # float64: the value as a float (a bool 0 or 1), NaN for NULL and TEXT
    text: pd.Series                     # the value when TEXT, else None or NA
    value_json: pd.Series               # value_json(value)
    sources_json: pd.Series             # sources_json(value.sources)
    rows: Rows                          # each row as an object, its sources' text as the digest reads it

    def __len__(self) -> int:
        return len(self.event_ms)

    def value_at(self, row: int) -> FeatureValue:
        return self.rows.value_at(row)


def columns_of(values: Iterable[FeatureValue]) -> list[ViewColumns]:
    """Values as columns, one ViewColumns per view version (what the offline store gives, from objects)."""
    groups: dict[tuple[str, str], list[FeatureValue]] = {}
    for value in values:
        groups.setdefault((value.view, value.view_version), []).append(value)
    return [_columns(view, version, found) for (view, version), found in groups.items()]


def _columns(view: str, version: str, found: list[FeatureValue]) -> ViewColumns:
    kinds = [kind_of(v.value) for v in found]
    return ViewColumns(
        view, version, pd.Categorical([v.feature for v in found]), pd.Categorical([v.entity for v in found]),
        np.array([v.event_ms for v in found], dtype=np.int64),
        np.array([np.nan if v.window_start_ms is None else v.window_start_ms for v in found], dtype=np.float64),
        np.array(kinds, dtype=np.int8),
        np.array([_number(v.value) for v in found], dtype=np.float64),
        pd.Series([v.value if k == TEXT else None for v, k in zip(found, kinds)], dtype=object),
        pd.Series([value_json(v.value) for v in found], dtype=object),
        pd.Series([sources_json(v.sources) for v in found], dtype=object), ObjectRows(found))


def number_of(value: Scalar) -> float | None:
    """A value as a float (a bool 0 or 1), None for text and null."""
    return None if value is None or isinstance(value, str) else float(value)


def _number(value: Scalar) -> float:
    number = number_of(value)
    return np.nan if number is None else number


@dataclass(frozen=True, eq=False)
class Looked:
    """One wanted feature for every label row: the row of the value found (-1: none) and its state."""
    view: FeatureView
    feature: str
    columns: ViewColumns | None
    row: np.ndarray                     # int64
    state: np.ndarray                   # int8: FOUND, EXPIRED or MISSING

    def used(self) -> np.ndarray:
        return self.state == FOUND


def join_columns(entities: Sequence[str], times: np.ndarray, view: FeatureView, columns: ViewColumns | None,
                 features: Sequence[str]) -> list[Looked]:
    """Each of `features` of `view` for every label (entities[i], times[i]): the newest value strictly before the
    time, within the TTL (as_of_join's rule), from `columns` (None: the view has no values). OverflowError when
    the values' features, entities and times are too many for one int64 key."""
    times = np.asarray(times, dtype=np.int64)
    if columns is None or len(columns) == 0:
        nothing = np.full(len(times), -1, dtype=np.int64)
        return [Looked(view, f, None, nothing, np.full(len(times), MISSING, dtype=np.int8))
                for f in features]
    index = _Index(columns)
    label_entities = columns.entity.categories.get_indexer(pd.Index(entities, dtype=object))
    when = index.when(times)
    looked = []
    for feature in features:
        code = columns.feature.categories.get_indexer([feature])[0]
        known = label_entities >= 0
        if code < 0:
            known[:] = False
        group = code * index.entities + label_entities.astype(np.int64)
        place = np.searchsorted(index.keys, np.where(known, group * index.span + when, 0), side="left") - 1
        found = known & (place >= 0)
        found[found] = index.keys[place[found]] // index.span == group[found]
        row = np.where(found, index.rows[np.maximum(place, 0)], -1)
        expired = columns.event_ms[np.maximum(row, 0)] < times - view.ttl_ms     # age > TTL, without an age that wraps
        state = np.where(found, np.where(expired, EXPIRED, FOUND), MISSING).astype(np.int8)
        looked.append(Looked(view, feature, columns, row, state))
    return looked


class _Index:
    """The values sorted by (feature, entity, time, place), only the last of each (feature, entity, time) kept; a
    value's time in its key is its distance from the earliest (or, when that span is too wide for the key, the
    rank of its time among the values')."""

    def __init__(self, columns: ViewColumns):
        self.entities = max(len(columns.entity.categories), 1)
        groups = max(len(columns.feature.categories), 1) * self.entities
        self.earliest, latest = int(columns.event_ms.min()), int(columns.event_ms.max())
        self.times: np.ndarray | None = None
        self.span = latest - self.earliest + 2
        if groups * self.span < _KEY_LIMIT:
            at = columns.event_ms - self.earliest
        else:
            self.times, at = np.unique(columns.event_ms, return_inverse=True)
            self.span = len(self.times) + 1
            if groups * self.span >= _KEY_LIMIT:
                raise OverflowError(f"{groups:,} (feature, entity) pairs × {self.span:,} times are too many for "
                                    f"one join key")
        group = columns.feature.codes.astype(np.int64) * self.entities + columns.entity.codes.astype(np.int64)
        keys = group * self.span + at
        order = np.argsort(keys, kind="stable")        # equal keys in row order: the parts' order, then written
        keys = keys[order]
        if (keys[1:] == keys[:-1]).any():
            order, keys = _order_ties(order, keys, columns)
        last = np.append(keys[1:] != keys[:-1], True)
        self.keys, self.rows = keys[last], order[last]

    def when(self, times: np.ndarray) -> np.ndarray:
        """Label times in the keys' terms: a key's time is below it exactly when the value is strictly before."""
        if self.times is not None:
            return np.searchsorted(self.times, times, side="left")         # how many value times are before
        latest = min(self.earliest + self.span - 1, 2**63 - 1)             # clipped first: no int64 overflow
        return np.clip(times, self.earliest, latest) - self.earliest


def _order_ties(order: np.ndarray, keys: np.ndarray, columns: ViewColumns) -> tuple[np.ndarray, np.ndarray]:
    """Values of one feature, entity and time as the offline store's `read` and as_of_join take them: of those with
    the same window start and sources the first written only (a part written again), the rest ordered by their
    sources' places, then their sources' text, then as written — the last is the one kept. On the columns: the
    places are found once per distinct sources text (no object per value: 100k tied keys took 14.2 s so)."""
    at = np.flatnonzero(_tied(keys))
    rows = order[at]
    again = pd.DataFrame({"key": keys[at], "start": columns.window_start_ms[rows],
                          "sources": columns.sources_json.iloc[rows].to_numpy()}).duplicated().to_numpy()
    keep = np.ones(len(keys), dtype=bool)
    keep[at[again]] = False
    order, keys = order[keep], keys[keep]
    at = np.flatnonzero(_tied(keys))
    rows = order[at]
    texts, which = np.unique(columns.sources_json.iloc[rows].to_numpy(dtype=object), return_inverse=True)
    first = np.empty(len(texts), dtype=np.int64)
    first[which[::-1]] = np.arange(len(which))[::-1]                  # a row of each text
    placed = columns.rows.places(rows[first])
    rank = np.empty(len(texts), dtype=np.int64)                      # by places, then text (np.unique's order)
    rank[sorted(range(len(texts)), key=placed.__getitem__)] = np.arange(len(texts))
    order[at] = rows[np.lexsort((rows, rank[which.reshape(-1)], keys[at]))]
    return order, keys


def _tied(keys: np.ndarray) -> np.ndarray:
    """Where a sorted key equals the one before or after it."""
    same = keys[1:] == keys[:-1]
    return np.append(same, False) | np.append(False, same)


@dataclass(frozen=True, eq=False)
class UsedValues:
    """The values a training set took: (columns, their rows), distinct."""
    parts: tuple[tuple[ViewColumns, np.ndarray], ...]

    def __len__(self) -> int:
        return sum(len(rows) for _, rows in self.parts)

    def __iter__(self) -> Iterator[FeatureValue]:
        for columns, rows in self.parts:
            for row in rows:
                yield columns.value_at(int(row))

    def digest_rows(self) -> Iterator[tuple]:
        """Each value as the snapshot digest reads it: its value's and its sources' texts made from the typed
        columns the join and the cut used — the texts of its object. FeatureSetRefused when a part's typed columns
        and its texts say two values or two sources."""
        for columns, rows in self.parts:
            typed = columns.rows.cut_sources(rows, columns.sources_json.iloc[rows].tolist())
            for start, feature, entity, at, kind, number, text, stored, spans, cut in zip(
                    columns.window_start_ms[rows].tolist(), np.asarray(columns.feature)[rows].tolist(),
                    np.asarray(columns.entity)[rows].tolist(), columns.event_ms[rows].tolist(),
                    columns.kind[rows].tolist(), columns.number[rows].tolist(), columns.text.iloc[rows].tolist(),
                    columns.value_json.iloc[rows].tolist(), columns.sources_json.iloc[rows].tolist(), typed):
                value = _typed_value(kind, number, text, stored)
                made = "(a kind, number and text that contradict each other)" if value is _INCONSISTENT \
                    else value_json(cast(Scalar, value))
                if made != stored and (value is _INCONSISTENT or not _says(stored, cast(Scalar, value))):
                    raise FeatureSetRefused(
                        f"the offline store of view {columns.view!r} holds a value whose typed columns ({made[:80]}) "
                        f"and text ({stored[:80]}) differ: {feature}, {entity[:80]!r} at {at}; the store was "
                        f"written by something other than the featurizer")
                if cut != spans and cut != columns.rows.canonical_sources(spans):
                    raise FeatureSetRefused(
                        f"the offline store of view {columns.view!r} holds a value whose typed sources ({cut[:120]}) "
                        f"and text ({spans[:120]}) differ: {feature}, {entity[:80]!r} at {at}; the store was "
                        f"written by something other than the featurizer")
                unwindowed = start != start         # NaN
                yield (columns.view, columns.version, feature, entity, at, unwindowed,
                       0 if unwindowed else int(start), made, cut)


_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]{0,18})", re.ASCII)


def _typed_value(kind: int, number: float, text: object, stored: str) -> object:
    """The value the typed columns hold, as the join used it (an int exactly: from its text when that is an
    integer's); _INCONSISTENT when the columns contradict themselves (a bool not 0 or 1, an int not whole, a null
    with a number, text without its text, a kind that is none of them)."""
    if kind == TEXT:
        return _INCONSISTENT if text is None or text is pd.NA or number == number else str(text)
    if kind == BOOL:
        return bool(number) if number in (0.0, 1.0) else _INCONSISTENT
    if kind == INT:
        digits = stored[1:-1]
        exact = int(digits) if _INTEGER.fullmatch(digits) else None
        if exact is not None and float(exact) == number:
            return exact
        return int(number) if number == number and float(number).is_integer() and abs(number) < 2**63 \
            else _INCONSISTENT
    if kind == NULL:
        return None if number != number else _INCONSISTENT
    return float(number) if kind == FLOAT and number == number else _INCONSISTENT


_INCONSISTENT = object()


def _says(stored: str, value: Scalar) -> bool:
    """Whether a value's stored text, written otherwise than the store writes it, holds `value` (its kind too)."""
    try:
        held = read_json("value_json", stored)
    except (InvalidField, TypeError, ValueError):
        return False
    return (isinstance(held, list) and len(held) == 1 and type(held[0]) is type(value) and held[0] == value
            and str(held[0]) == str(value))


def used_values(looked: Iterable[Looked]) -> UsedValues:
    rows: dict[int, tuple[ViewColumns, list[np.ndarray]]] = {}
    for one in looked:
        if one.columns is not None:
            rows.setdefault(id(one.columns), (one.columns, []))[1].append(one.row[one.used()])
    return UsedValues(tuple((columns, np.unique(np.concatenate(found))) for columns, found in rows.values()))
