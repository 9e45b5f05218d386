"""Serving with looked-up features (issue 36), pure: which columns a request lacks, what the online store gives
for them, and the request as the model sees it.

A version trained on feature views names them in ModelTrained.feature_views_json ({"entity", "time", "views":
{NAME: VERSION}, "columns": ["VIEW__FEATURE", ...]}). Each such column a request does not carry is looked up for
the request's entity_id at the request's time by the rule training used (features_lookups.online_read: the newest
value strictly before that time, within the TTL); a request's own values win. A value past the TTL, never seen,
of a view version nobody defined, or unusable by the model (text for a number, NaN) is missing — NaN to the model,
or the missing category — and says why. Each lookup is recorded on the prediction (Prediction.lookups: the
number or the text the model saw), and `completed` builds the model's input from those records alone, for the
scorer and for `audit reproduce` alike: a reproduction sees what the scorer saw.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from services.bus.edge import CONTROL, MAX_IDENTIFIER, content
from services.bus.errors import BadInput

from .features_lookups import NO_VALUE, UNKNOWN, Lookup, column_name, online_read
from .features_views import IDENTIFIER, MAX_LATENESS_MS, FeatureView
from .features_windows import EPOCH, FeatureValue
from .serving import MISSING_CATEGORY

NO_VIEW, BAD_VALUE = "unknown-view", "bad-value"
VERSION = re.compile(r"[0-9a-f]{64}")
# How far an event's own time may be ahead of when the broker took it (the featurizer: business.events is stamped
# LogAppendTime, a time no producer sets): clocks differ by a few minutes. An event dated later would move the view's
# watermark ahead of every other event and make them all late, for good: it is dropped.
MAX_AHEAD_MS = 5 * 60 * 1000
# Two bounds, two bases: MAX_AHEAD_MS against the broker's time of the event, AHEAD_OF_CLOCK_MS against a reader's own.
# How far a features.online value's event time may be ahead of its reader's clock, beyond its view's lateness: the
# featurizer dates a value at most 5 min after the broker took its event, plus the lateness (a window's end or a
# `last` event's time, plus the lateness: until then a later event may still change it); clocks of other machines
# differ. A value dated later would be the newest for its entity until that date — hiding every real one after
# it — so every reader skips it (a reader that does not know the view allows the longest lateness a view may have).
AHEAD_OF_CLOCK_MS = 3_600_000
MAX_TEXT_VALUE = 1024          # a looked-up text longer than this is not a category; it would bloat the prediction
MAX_COLUMNS = 10_000


class PlanRefused(BadInput, ValueError):
    """A version's feature_views_json is not a lookup plan: the version cannot serve (its requests get an error)."""


class LookupRefused(BadInput):
    """A request whose features cannot be looked up (its entity_id is no entity): dead-lettered."""


@dataclass(frozen=True)
class LookupPlan:
    entity: str                                   # the entity column training joined on (the request's entity_id)
    views: Mapping[str, str]                      # view → the version the model was trained on
    columns: tuple[tuple[str, str, str], ...]     # (column, view, feature), in the record's order


def lookup_plan(trained: Mapping) -> LookupPlan | None:
    """The version's lookup plan, None when it was not trained on feature views; PlanRefused naming what is wrong."""
    text = trained.get("feature_views_json")
    if not text:
        return None
    try:
        form = content(text)
    except BadInput as error:
        raise PlanRefused(f"feature_views_json: {error}") from None
    if not isinstance(form, dict) or not isinstance(form.get("views"), dict) or not isinstance(
            form.get("columns"), list) or not isinstance(form.get("entity"), str):
        raise PlanRefused("feature_views_json must be an object with entity (text), views {name: version} and "
                          "columns [VIEW__FEATURE]")
    views = form["views"]
    bad = [f"{str(n)[:64]!r}" for n, v in views.items()
           if not IDENTIFIER.fullmatch(n) or not isinstance(v, str) or not VERSION.fullmatch(v)]
    if bad or not views or len(form["columns"]) > MAX_COLUMNS:
        raise PlanRefused(f"feature_views_json names views that are not name: sha256 hex ({', '.join(bad[:3])}), "
                          f"none, or more than {MAX_COLUMNS:,} columns")
    return LookupPlan(form["entity"], dict(views), tuple(_column(c, views) for c in form["columns"]))


def _column(column: Any, views: Mapping[str, str]) -> tuple[str, str, str]:
    """A column's view and feature: the longest view name that, with `__`, starts it (views may hold `__` too)."""
    named = [v for v in views if isinstance(column, str) and column.startswith(f"{v}__")]
    if not named:
        raise PlanRefused(f"feature_views_json column {str(column)[:140]!r} is not VIEW__FEATURE of a view it names")
    view = max(named, key=len)
    feature = column[len(view) + 2:]
    if not IDENTIFIER.fullmatch(feature):
        raise PlanRefused(f"feature_views_json column {column[:140]!r}: {feature[:64]!r} is not a feature's name")
    return column, view, feature


def carried(request: Mapping, column: str, categorical: Iterable[str]) -> bool:
    """Whether the request brings the column itself (a number in features, a category in categories)."""
    return column in (request.get("categories") or {}) if column in categorical else column in request["features"]


def wanted(request: Mapping, plan: LookupPlan, categorical: Iterable[str]) -> dict[str, list[str]]:
    """view → its features the request lacks, in the plan's order: what must be looked up."""
    lacking: dict[str, list[str]] = {}
    for column, view, feature in plan.columns:
        if not carried(request, column, categorical):
            lacking.setdefault(view, []).append(feature)
    return lacking


def entity_problem(entity: Any) -> str | None:
    """Why a request's entity_id cannot key the online store (the featurizer's rule for entities), or None."""
    if not isinstance(entity, str) or not entity or len(entity) > MAX_IDENTIFIER or CONTROL.search(entity):
        return (f"entity_id {str(entity)[:80]!r} is not an entity (1 to {MAX_IDENTIFIER} characters, no control "
                "character)")
    return None


def look_up(request: Mapping, plan: LookupPlan, categorical: Iterable[str],
            views: Mapping[tuple[str, str], FeatureView], held: Mapping[str, Sequence[FeatureValue]],
            at_ms: int) -> tuple[dict, ...]:
    """The FeatureLookup records (Prediction.lookups) for what the request lacks: `views` by (name, version) as
    features.views defines them, `held` the online store's values per view for the request's entity, at `at_ms`
    (the request's time). LookupRefused when the entity_id is no entity."""
    lacking = wanted(request, plan, categorical)
    if not lacking:
        return ()
    entity = request["entity_id"]
    if problem := entity_problem(entity):
        raise LookupRefused(f"request {str(request['request_id'])[:80]}: {problem}")
    categories = set(categorical)
    found = []
    for view, features in lacking.items():
        version = plan.views[view]
        definition = views.get((view, version))
        if definition is None:
            found += [_record(entity, Lookup(view, version, f, None, None, None, NO_VIEW, f"view {view} version "
                              f"{version[:12]} is not defined on features.views", ()), categories) for f in features]
            continue
        read = {lookup.feature: lookup for lookup in online_read(definition, entity, held.get(view, ()), at_ms)}
        found += [_record(entity, read.get(f) or _unknown(definition, f), categories) for f in features]
    return tuple(found)


def _unknown(view: FeatureView, feature: str) -> Lookup:
    return Lookup(view.name, view.version, feature, None, None, None, UNKNOWN,
                  f"view {view.name} version {view.version[:12]} has no feature {feature!r}", ())


def _record(entity: str, lookup: Lookup, categorical: set[str]) -> dict:
    column = column_name(lookup.view, lookup.feature)
    missing, reason = lookup.missing, lookup.reason
    if missing is None and lookup.value is None:
        missing, reason = NO_VALUE, f"the newest value, from {lookup.event_ms}, is empty (a window without events " \
                                    "has no mean, min or max)"
    elif missing is None and (problem := value_problem(lookup.value, column in categorical)):
        missing, reason = BAD_VALUE, problem
    found = not missing
    return {"view": lookup.view, "version": lookup.view_version, "feature": lookup.feature, "entity": entity,
            "value": float(lookup.value) if found and column not in categorical and isinstance(  # checked above
                lookup.value, (int, float)) else None,
            "text": str(lookup.value) if found and column in categorical else None,
            "event_time": None if lookup.event_ms is None else EPOCH + timedelta(milliseconds=lookup.event_ms),
            "age_ms": lookup.age_ms, "missing": missing, "reason": reason}


def stored_value_problem(value: FeatureValue, now_ms: int, lateness_ms: int = MAX_LATENESS_MS) -> str | None:
    """Why a features.online value is not kept (names the featurizer never writes, a NaN, a time ahead of the
    clock now_ms beyond its view's lateness), or None."""
    if (ahead := ahead_of_clock(value.event_ms, now_ms, lateness_ms)) is not None:
        return ahead
    if not (IDENTIFIER.fullmatch(value.view) and IDENTIFIER.fullmatch(value.feature)):
        return f"view {value.view[:80]!r} or feature {value.feature[:80]!r} is not a name"
    if not VERSION.fullmatch(value.view_version):
        return f"version {value.view_version[:80]!r} is not sha256 hex"
    if isinstance(value.value, float) and not math.isfinite(value.value):
        return f"value {value.value!r} of {value.view}.{value.feature} is not a finite number"
    return entity_problem(value.entity)


def lateness_of(view: FeatureView | None) -> int:
    """The lateness a reader allows a value of this view: the view's own, or the longest a view may have when the
    reader does not know the view (not defined yet)."""
    return MAX_LATENESS_MS if view is None else view.lateness_ms


def ahead_of_clock(event_ms: int, now_ms: int, lateness_ms: int = MAX_LATENESS_MS) -> str | None:
    """Why a value dated event_ms cannot be taken at now_ms: further ahead than AHEAD_OF_CLOCK_MS plus its view's
    lateness (the longest a view may have when the reader does not know the view); else None."""
    if event_ms > now_ms + AHEAD_OF_CLOCK_MS + lateness_ms:
        return (f"an event time ({event_ms}) more than an hour past the clock ({now_ms}) plus its view's lateness "
                f"({lateness_ms // 1000} s)")
    return None


def value_problem(value: Any, category: bool) -> str | None:
    """Why the model cannot take a stored value (a number column takes a finite number, a boolean or integer as a
    double; a category column text, a number as its text, as training's frame made it), or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"the stored value {value!r} is not a finite number"
    if isinstance(value, (bool, int, float)):
        return None
    if not (isinstance(value, str) and category):
        return f"the stored value {str(value)[:40]!r} ({type(value).__name__}) is not a " + \
            ("category" if category else "number")
    if len(value) > MAX_TEXT_VALUE or "\x00" in value:
        return f"the stored text ({len(value):,} characters) is longer than {MAX_TEXT_VALUE:,} or holds NUL"
    return None


def completed(request: Mapping, lookups: Iterable[Mapping], categorical: Iterable[str]) -> dict:
    """The request as the model sees it: its own values, and each looked-up one (a missing number NaN, a missing
    category MISSING_CATEGORY, as training shaped them). A request's own value wins over a recorded lookup."""
    categories = set(categorical)
    numbers, texts = dict(request["features"]), dict(request.get("categories") or {})
    for lookup in lookups:
        column = column_name(lookup["view"], lookup["feature"])
        if column in categories:
            texts.setdefault(column, MISSING_CATEGORY if lookup["text"] is None else lookup["text"])
        else:
            numbers.setdefault(column, math.nan if lookup["value"] is None else lookup["value"])
    return {**request, "features": numbers, "categories": texts}
