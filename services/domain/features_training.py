"""Training sets from feature views (issue 36): a spec's `feature_views` block checked, and its label rows joined
with the views' values as they stood strictly before each row's time (features_join.join_columns: as_of_join's
rule, on columns).

A spec names views, and the entity and time columns of its dataset: each row of the dataset's batches is a label
(entity, time, target). Every feature of every view becomes a column `view__feature` (column_name), its value the
feature's as the row's time saw it, within the view's TTL; a missing value is NaN (numbers) or None (categories),
which the pipeline imputes as serving does. A column is a category when any value used in it is text. A set in
which no row found any value is refused: it says the views and the labels do not meet.
`used` holds exactly the values the join took (found and within the TTL): their digest is what a reproduction must
find again; a value planted at or after a row's time is never among them.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import numpy as np
import pandas as pd

from services.bus.edge import InvalidField, read_json

from .features_join import (BOOL, NULL, TEXT, FeatureSetRefused, Looked, UsedValues, ViewColumns, join_columns,
                            used_values)
from .features_lookups import column_name
from .features_views import IDENTIFIER, MAX_VIEWS, FeatureView
from .features_windows import EPOCH, MAX_EVENT_MS

SETTINGS_KEYS = ("views", "entity", "time")
MAX_ENTITY = 256


@dataclass(frozen=True)
class FeatureSettings:
    views: tuple[str, ...]
    entity: str                     # the dataset's column holding each label's entity
    time: str                       # the dataset's column holding each label's time (epoch ms or a datetime)


@dataclass(frozen=True)
class TrainingSet:
    frame: pd.DataFrame             # the label rows with one column per view feature
    columns: tuple[str, ...]        # the columns added, in the views' order then the features'
    categorical: tuple[str, ...]    # those of them that hold text
    used: UsedValues                # the values the join took (iterate for FeatureValues)


def settings_problem(raw: Any) -> str | None:
    """Why a spec's `feature_views` block is unusable, or None: {views: [names], entity: column, time: column}."""
    if not isinstance(raw, Mapping) or set(raw) != set(SETTINGS_KEYS):
        return "feature_views must be a mapping with exactly views (a list of view names), entity and time (columns)"
    views = raw["views"]
    if not isinstance(views, list) or not 0 < len(views) <= MAX_VIEWS:
        return f"feature_views.views must be a list of 1 to {MAX_VIEWS} view names"
    bad = [_shown(v) for v in views if not _identifier(v)]
    if bad:
        return f"feature_views.views: {', '.join(bad[:5])} not a view name (letters, digits, _, at most 64)"
    if len(set(views)) != len(views):
        return "feature_views.views names a view twice"
    for key in ("entity", "time"):
        if not _identifier(raw[key]):
            return f"feature_views.{key} must be a column's name (letters, digits, _), not {_shown(raw[key])}"
    if raw["entity"] == raw["time"]:
        return "feature_views.entity and feature_views.time must be two columns"
    return None


def parse_settings(text: str | None) -> FeatureSettings | None:
    """A spec's feature_views_json as settings (None: the spec has none); FeatureSetRefused when unusable."""
    if text is None:
        return None
    try:
        raw = read_json("feature_views_json", text)
    except (InvalidField, TypeError):
        raise FeatureSetRefused("feature_views_json is not a JSON object") from None
    problem = settings_problem(raw)
    if problem:
        raise FeatureSetRefused(problem)
    return FeatureSettings(tuple(raw["views"]), raw["entity"], raw["time"])


def label_columns(frame: pd.DataFrame, settings: FeatureSettings) -> tuple[list[str], np.ndarray]:
    """Each row's entity (text, or a whole number as text) and time (epoch ms, or an aware datetime), as two columns:
    the entities and the times (int64); FeatureSetRefused naming the first unusable row."""
    missing = [c for c in (settings.entity, settings.time) if c not in frame.columns]
    if missing:
        raise FeatureSetRefused(f"the dataset has no column {', '.join(missing)} (feature_views' entity and time)")
    entities, times = _entities(frame[settings.entity]), _times(frame[settings.time])
    if isinstance(times, np.ndarray) and None not in entities:
        return cast(list[str], entities), times
    bad = [i for i, (entity, at) in enumerate(zip(entities, times)) if entity is None or at is None]
    if bad:
        row = bad[0]
        raise FeatureSetRefused(
            f"{len(bad)} label row(s) without a usable entity or time, the first row {row}: "
            f"{settings.entity}={_shown(frame[settings.entity].iloc[row])}, "
            f"{settings.time}={_shown(frame[settings.time].iloc[row])} (an entity is text or a whole number; a time "
            f"epoch milliseconds or a datetime with its time zone)")
    return cast(list[str], entities), np.array(times, dtype=np.int64)


def training_set(frame: pd.DataFrame, settings: FeatureSettings, views: Sequence[FeatureView],
                 history: Sequence[ViewColumns]) -> TrainingSet:
    """The label rows of `frame` with every feature of `views` as it stood strictly before each row's time, from
    the views' values as columns (history: one ViewColumns per view version; columns_of makes them from values)."""
    columns = [column_name(view.name, feature.name) for view in views for feature in view.features]
    twice = sorted({c for c in columns if columns.count(c) > 1})
    if twice:
        raise FeatureSetRefused(f"two view features would make the same column {', '.join(twice[:5])} (view__feature):"
                                f" rename one of the views or features")
    clash = [c for c in columns if c in frame.columns]
    if clash:
        raise FeatureSetRefused(f"the dataset already has column(s) {', '.join(clash[:5])}, a view feature's name")
    entities, times = label_columns(frame, settings)
    held = {(c.view, c.version): c for c in history}
    try:
        looked = [one for view in views for one in join_columns(
            entities, times, view, held.get((view.name, view.version)), [feature.name for feature in view.features])]
    except OverflowError as error:
        raise FeatureSetRefused(f"the offline store's values cannot be joined: {error}") from None
    used = used_values(looked)
    if columns and not len(used):       # every feature of every row missing: nothing to learn from, a wrong setup
        raise FeatureSetRefused(
            f"none of the {len(times):,} label rows found a value of the views' features before its time within "
            f"the TTL ({sum(len(c) for c in history):,} values read from the offline store): do the views' entities "
            f"and times match the dataset's {settings.entity} and {settings.time}, and has the featurizer computed "
            f"them?")
    categorical = tuple(name for name, one in zip(columns, looked) if _holds_text(one))
    added = {name: _column(one, name in categorical) for name, one in zip(columns, looked)}
    with_features = pd.concat([frame.reset_index(drop=True), pd.DataFrame(added)], axis=1)
    return TrainingSet(with_features, tuple(columns), categorical, used)


def reached_positions(positions: Iterable[Mapping[tuple[str, int], int]]) -> dict[tuple[str, int], int]:
    """The offsets every view had reached, per partition: the least over the views that read it (a training set
    read at these offsets is one moment of each source, and a reproduction reads the same)."""
    reached: dict[tuple[str, int], int] = {}
    for held in positions:
        for place, offset in held.items():
            reached[place] = min(reached.get(place, offset), offset)
    return reached


def until_json(until: Mapping[tuple[str, int], int]) -> str:
    return json.dumps({f"{topic}:{partition}": offset for (topic, partition), offset in sorted(until.items())},
                      sort_keys=True)


def until_from_json(text: str) -> dict[tuple[str, int], int]:
    """features_until_json back as {(topic, partition): offset}; FeatureSetRefused when it is not that."""
    try:
        raw = read_json("features_until_json", text)
        return {(place.rpartition(":")[0], int(place.rpartition(":")[2])): int(offset) for place, offset in raw.items()}
    except (InvalidField, TypeError, ValueError, AttributeError):
        raise FeatureSetRefused(f"features_until_json is not {{\"topic:partition\": offset}}: {str(text)[:80]}") \
            from None


def _holds_text(looked: Looked) -> bool:
    return looked.columns is not None and bool((looked.columns.kind[looked.row[looked.used()]] == TEXT).any())


def _column(looked: Looked, categorical: bool) -> pd.Series:
    """The feature's cells: a float per row (NaN when missing or null), or its text (None) in a category."""
    used, columns = looked.used(), looked.columns
    if columns is None:
        return pd.Series([None] * len(used), dtype=object) if categorical else pd.Series(np.full(len(used), math.nan))
    rows = np.where(used, looked.row, 0)
    if not categorical:
        return pd.Series(np.where(used, columns.number[rows], math.nan), dtype=float)
    kinds, numbers = columns.kind[rows], columns.number[rows]
    texts, written = columns.text.iloc[rows].tolist(), columns.value_json.iloc[rows].tolist()
    return pd.Series([_text(kind, number, text, json) if is_used else None
                      for kind, number, text, json, is_used in zip(kinds, numbers, texts, written, used.tolist())],
                     dtype=object)


def _text(kind: int, number: float, text: str, written: str) -> str | None:
    """str() of a value: its text, True or False, or the number as written (json's text of an int or a float is
    str()'s)."""
    if kind == TEXT:
        return text
    if kind == BOOL:
        return str(bool(number))
    return None if kind == NULL else written[1:-1]


def _entity(value: Any) -> str | None:
    if isinstance(value, np.generic):               # a numpy scalar (a column of objects holds them): its Python value
        value = value.item()
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        return value if 0 < len(value) <= MAX_ENTITY else None
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return str(int(value)) if 0 <= value < 2**63 else None
    return None


def _entities(column: pd.Series) -> list[str | None]:
    """_entity of each value; whole columns of integers or of short text at once."""
    if column.hasnans:
        pass
    elif pd.api.types.is_integer_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column.dtype):
        if len(column) == 0 or (column.min() >= 0 and column.max() < 2**63):
            return column.astype(str).tolist()
    elif pd.api.types.infer_dtype(column, skipna=False) == "string":
        lengths = column.str.len()
        if len(column) == 0 or (lengths.min() > 0 and lengths.max() <= MAX_ENTITY):
            return column.tolist()
    return [_entity(value) for value in column.tolist()]


def _times(column: pd.Series) -> np.ndarray | list[int | None]:
    """_time of each value (all of them usable: an int64 array); whole columns of integers at once."""
    if (pd.api.types.is_integer_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column.dtype)
            and not column.hasnans and (len(column) == 0 or (column.min() >= 0 and column.max() <= MAX_EVENT_MS))):
        return column.to_numpy(dtype=np.int64)
    if pd.api.types.is_datetime64_any_dtype(column.dtype):
        if getattr(column.dtype, "tz", None) is None:
            return [None] * len(column)             # a datetime without its zone: which moment is unknown
        return [None if pd.isna(at) else _ms(at.to_pydatetime()) for at in column]
    return [_time(value) for value in column.tolist()]


def _time(value: Any) -> int | None:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) and not (isinstance(value, float) and not value.is_integer()):
        return int(value) if 0 <= value <= MAX_EVENT_MS else None
    if isinstance(value, datetime):
        return _ms(value) if value.tzinfo is not None else None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
        return _ms(parsed) if parsed.tzinfo is not None else None
    return None


def _ms(at: datetime) -> int | None:
    ms = (at - EPOCH) // timedelta(milliseconds=1)
    return ms if 0 <= ms <= MAX_EVENT_MS else None


def _identifier(value: Any) -> bool:
    return isinstance(value, str) and IDENTIFIER.fullmatch(value) is not None


def _shown(value: Any) -> str:
    return repr(value)[:80]
