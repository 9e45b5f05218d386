"""Training sets from feature views (issue 36): a spec's `feature_views` block checked, and its label rows joined
with the views' values as they stood strictly before each row's time (features_lookups.as_of_join).

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
from typing import Any

import pandas as pd

from services.bus.edge import InvalidField, read_json
from services.bus.errors import BadInput

from .features_lookups import LabelRow, as_of_join, column_name
from .features_views import IDENTIFIER, MAX_VIEWS, FeatureView
from .features_windows import EPOCH, MAX_EVENT_MS, FeatureValue

SETTINGS_KEYS = ("views", "entity", "time")
MAX_ENTITY = 256


class FeatureSetRefused(BadInput, ValueError):
    """Label rows or feature values a training set cannot be built from; the message says why."""


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
    used: tuple[FeatureValue, ...]  # the values the join took


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


def label_rows(frame: pd.DataFrame, settings: FeatureSettings) -> list[LabelRow]:
    """Each row's entity (text, or a whole number as text) and time (epoch ms, or an aware datetime)."""
    missing = [c for c in (settings.entity, settings.time) if c not in frame.columns]
    if missing:
        raise FeatureSetRefused(f"the dataset has no column {', '.join(missing)} (feature_views' entity and time)")
    entities = [_entity(value) for value in frame[settings.entity].tolist()]
    times = _times(frame[settings.time])
    bad = [i for i, (entity, at) in enumerate(zip(entities, times)) if entity is None or at is None]
    if bad:
        row = bad[0]
        raise FeatureSetRefused(
            f"{len(bad)} label row(s) without a usable entity or time, the first row {row}: "
            f"{settings.entity}={_shown(frame[settings.entity].iloc[row])}, "
            f"{settings.time}={_shown(frame[settings.time].iloc[row])} (an entity is text or a whole number; a time "
            f"epoch milliseconds or a datetime with its time zone)")
    return [LabelRow(str(entity), at) for entity, at in zip(entities, times) if at is not None]


def training_set(frame: pd.DataFrame, settings: FeatureSettings, views: Sequence[FeatureView],
                 values: Iterable[FeatureValue]) -> TrainingSet:
    """The label rows of `frame` with every feature of `views` as it stood strictly before each row's time."""
    wanted = [(view.name, feature.name) for view in views for feature in view.features]
    columns = [column_name(view, feature) for view, feature in wanted]
    clash = [c for c in columns if c in frame.columns]
    if clash:
        raise FeatureSetRefused(f"the dataset already has column(s) {', '.join(clash[:5])}, a view feature's name")
    labels = label_rows(frame, settings)
    history = list(values)
    joined = as_of_join(labels, views, history, wanted)
    found = {_identity(v): v for v in history}
    used: dict[tuple, FeatureValue] = {}
    cells: list[list[Any]] = [[] for _ in columns]
    for row in joined:
        for cells_of, lookup in zip(cells, row.lookups):
            cells_of.append(lookup.value if lookup.missing is None else None)
            if lookup.missing is None:
                key = (lookup.view, lookup.view_version, lookup.feature, row.label.entity, lookup.event_ms,
                       lookup.sources)
                used[key] = found[key]
    if columns and not used:            # every feature of every row missing: nothing to learn from, a wrong setup
        raise FeatureSetRefused(
            f"none of the {len(labels):,} label rows found a value of the views' features before its time within "
            f"the TTL ({len(history):,} values read from the offline store): do the views' entities and times match "
            f"the dataset's {settings.entity} and {settings.time}, and has the featurizer computed them?")
    categorical = tuple(c for c, held in zip(columns, cells) if any(isinstance(v, str) for v in held))
    added = {c: _column(held, c in categorical) for c, held in zip(columns, cells)}
    with_features = pd.concat([frame.reset_index(drop=True), pd.DataFrame(added)], axis=1)
    return TrainingSet(with_features, tuple(columns), categorical, tuple(used.values()))


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


def _identity(value: FeatureValue) -> tuple:
    return value.view, value.view_version, value.feature, value.entity, value.event_ms, value.sources


def _column(held: list[Any], categorical: bool) -> pd.Series:
    if categorical:
        return pd.Series([None if v is None else str(v) for v in held], dtype=object)
    return pd.Series([math.nan if v is None else float(v) for v in held], dtype=float)


def _entity(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        return value if 0 < len(value) <= MAX_ENTITY else None
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return str(int(value)) if 0 <= value < 2**63 else None
    return None


def _times(column: pd.Series) -> list[int | None]:
    if pd.api.types.is_datetime64_any_dtype(column.dtype):
        if getattr(column.dtype, "tz", None) is None:
            return [None] * len(column)             # a datetime without its zone: which moment is unknown
        return [None if pd.isna(at) else _ms(at.to_pydatetime()) for at in column]
    return [_time(value) for value in column.tolist()]


def _time(value: Any) -> int | None:
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
