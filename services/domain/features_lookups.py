"""Feature values looked up at a time: the trainer's point-in-time join and the scorer's online read (issue 36).

One rule for both, so training and serving cannot disagree: at time t, a feature's value is the newest value of
the view's current version for the entity with event time strictly before t, if its age (t minus its time) is at
most the view's TTL. A value stamped at t itself is not seen: the event that a label records, or that a request
is, must not be among its own features. Past the TTL the value is missing, and so is a value never seen; each
missing value says why. Values of another version of the view are not used. Of values with the same time, the one
from the later offset wins. Times are epoch milliseconds.
"""
from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .features_views import FeatureView
from .features_windows import FeatureValue, Scalar, SourceSpan, source_places

NO_VALUE, EXPIRED, UNKNOWN = "no-value", "expired", "unknown-feature"


@dataclass(frozen=True)
class Lookup:
    view: str
    view_version: str
    feature: str
    value: Scalar                       # None when missing
    event_ms: int | None                # the value's time
    age_ms: int | None                  # how old the value was when looked up
    missing: str | None                 # None, NO_VALUE, EXPIRED or UNKNOWN
    reason: str                         # why it is missing; "" when found
    sources: tuple[SourceSpan, ...]


@dataclass(frozen=True)
class LabelRow:
    entity: str
    event_ms: int


@dataclass(frozen=True)
class JoinedRow:
    label: LabelRow
    lookups: tuple[Lookup, ...]         # in the order the features were asked for


Key = tuple[str, str, str, str]         # view, version, feature, entity


class History:
    """Feature values indexed for look-ups by time: each (view, version, feature, entity)'s values in time order."""

    def __init__(self, values: Iterable[FeatureValue]):
        grouped: dict[Key, list[FeatureValue]] = {}
        for value in values:
            key = (value.view, value.view_version, value.feature, value.entity)
            found = grouped.get(key)
            if found is None:
                grouped[key] = [value]
            else:
                found.append(value)
        self.values: dict[Key, list[FeatureValue]] = {}
        self.times: dict[Key, list[int]] = {}
        for key, found in grouped.items():
            times = [value.event_ms for value in found]
            if any(later <= earlier for earlier, later in zip(times, times[1:])):   # out of order, or a tie
                found.sort(key=time_and_place)
                times = [value.event_ms for value in found]
            self.values[key], self.times[key] = found, times
        self._features: dict[int, tuple[FeatureView, frozenset[str]]] = {}   # id(view) → (view, its features)

    def look(self, view: FeatureView, feature: str, entity: str, at_ms: int) -> Lookup:
        """The feature's value for `entity` as it stood at `at_ms` (the module's rule)."""
        known = self._features.get(id(view))
        if known is None or known[0] is not view:
            known = self._features[id(view)] = (view, frozenset(f.name for f in view.features))
        if feature not in known[1]:
            return _missing(view, feature, UNKNOWN, f"view {view.name!r} has no feature {feature!r}")
        key = (view.name, view.version, feature, entity)
        place = bisect_left(self.times.get(key, []), at_ms) - 1
        if place < 0:
            return _missing(view, feature, NO_VALUE, f"no value of {view.name}.{feature} (version "
                            f"{view.version[:12]}) for {entity[:80]!r} before {at_ms}")
        found = self.values[key][place]
        age_ms = at_ms - found.event_ms
        if age_ms > view.ttl_ms:
            return Lookup(view.name, view.version, feature, None, found.event_ms, age_ms, EXPIRED,
                          f"the newest value, from {found.event_ms}, is {age_ms:,} ms old: past the TTL of "
                          f"{view.ttl_ms:,} ms", found.sources)
        return Lookup(view.name, view.version, feature, found.value, found.event_ms, age_ms, None, "", found.sources)


def as_of_join(labels: Sequence[LabelRow], views: Sequence[FeatureView], history: Iterable[FeatureValue],
               wanted: Sequence[tuple[str, str]] | None = None) -> list[JoinedRow]:
    """Each label row with the (view, feature) values `wanted` (default: every feature of `views`) as they stood
    strictly before its time, within each view's TTL; in the labels' order."""
    by_name = {view.name: view for view in views}
    wanted = list(wanted) if wanted is not None else [(v.name, f.name) for v in views for f in v.features]
    index = History(value for value in history if value.view in by_name)
    return [JoinedRow(label, tuple(_looked(index, by_name, view, feature, label.entity, label.event_ms)
                                   for view, feature in wanted)) for label in labels]


def online_read(view: FeatureView, entity: str, values: Iterable[FeatureValue], now_ms: int) -> tuple[Lookup, ...]:
    """Every feature of `view` for `entity` at `now_ms`, from the values the online store holds for them."""
    index = History(value for value in values if value.view == view.name and value.entity == entity)
    return tuple(index.look(view, feature.name, entity, now_ms) for feature in view.features)


def _looked(index: History, views: dict[str, FeatureView], view: str, feature: str, entity: str,
            at_ms: int) -> Lookup:
    if view not in views:
        return Lookup(view, "", feature, None, None, None, UNKNOWN, f"no view {view!r} was given", ())
    return index.look(views[view], feature, entity, at_ms)


def _missing(view: FeatureView, feature: str, missing: str, reason: str) -> Lookup:
    return Lookup(view.name, view.version, feature, None, None, None, missing, reason, ())


def time_and_place(value: FeatureValue) -> tuple:
    """Which of two values of a key is the newer: by time, then by their sources' places (the module's rule; the
    online store keeps it too, so serving and training take the same value of a tie)."""
    return value.event_ms, source_places(value.sources)


def column_name(view: str, feature: str) -> str:
    """The column a looked-up feature has in a training set and among a request's features."""
    return f"{view}__{feature}"
