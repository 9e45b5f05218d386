"""The featurizer's state, pure: the views defined (every version), each version's open windows, and what a source
record makes known. No Kafka, no store: handlers.py writes what this returns.

Every defined version of a view is computed, not only the newest: a model trained on an older version is served
with the values of that version. A view defined after its source had events is computed from the source's start
(the handler hands `backfill` the source's history to its end)."""
from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.domain import (EPOCH, MAX_AHEAD_MS, MAX_FEATURES, MAX_VIEWS, Dropped, FeatureValue, FeatureView, Windows,
                             source_event)

BUSINESS_EVENT = "mlbus.BusinessEvent"
MAX_COMPUTED_FEATURES = MAX_VIEWS * MAX_FEATURES     # what one definition file may hold, for all versions together


def event_fields(record: str, value: Mapping[str, Any]) -> Mapping[str, Any]:
    """A source record's fields as a view reads them: a BusinessEvent's `fields`, with its entity, kind and time
    (occurred_at) beside them; any other record's own fields."""
    if record != BUSINESS_EVENT:
        return value
    fields = value.get("fields")
    return {**(fields if isinstance(fields, Mapping) else {}), "entity": value.get("entity"),
            "kind": value.get("kind"), "occurred_at": value.get("occurred_at")}


def counts(view: FeatureView, topic: str, record: str, value: Mapping[str, Any]) -> bool:
    """Whether a record of `topic` is an event of `view`: its source topic, and its kind when the view names one."""
    if view.source_topic != topic:
        return False
    return view.source_kind is None or (record == BUSINESS_EVENT and value.get("kind") == view.source_kind)


@dataclass
class Made:
    values: list[FeatureValue] = field(default_factory=list)
    dropped: list[tuple[str, Dropped]] = field(default_factory=list)     # (view, what it dropped)


@dataclass
class FeaturizerState:
    views: dict[str, FeatureView] = field(default_factory=dict)          # version → view
    windows: dict[str, Windows] = field(default_factory=dict)            # version → its open windows
    read_to: dict[tuple[str, int], int] = field(default_factory=dict)    # source partition → next offset

    def room_for(self, view: FeatureView) -> str | None:
        """Why the featurizer cannot compute one more view version, or None: every version signed is computed (a
        model trained on an old one is served its values), so what it computes is bounded as a whole."""
        computed = sum(len(v.features) for v in self.views.values())
        if view.version not in self.views and computed + len(view.features) > MAX_COMPUTED_FEATURES:
            return (f"view {view.name}: the featurizer computes {computed:,} features of {len(self.views)} view "
                    f"versions already; {len(view.features)} more would pass {MAX_COMPUTED_FEATURES:,}")
        return None

    def define(self, view: FeatureView) -> bool:
        """Take a view version; False when it is known already (a definition published again) or there is no room
        for it (room_for says why)."""
        if view.version in self.views or self.room_for(view):
            return False
        self.views[view.version] = view
        self.windows[view.version] = Windows(view)
        return True

    def source_topics(self) -> set[str]:
        return {view.source_topic for view in self.views.values() if view.source_topic}

    def add(self, topic: str, partition: int, offset: int, timestamp_ms: int, record: str,
            value: Mapping[str, Any], only: str | None = None) -> Made:
        """A source record: the values it makes known, in every view version it counts in (`only`: that one)."""
        self.read_to[(topic, partition)] = max(self.read_to.get((topic, partition), 0), offset + 1)
        made = Made()
        fields = event_fields(record, value)
        for version, view in self.views.items():
            if (only is not None and version != only) or not counts(view, topic, record, value):
                continue
            windows = self.windows[version]
            event = source_event(view, fields, timestamp_ms, topic, partition, offset)
            if isinstance(event.event_ms, int) and event.event_ms > timestamp_ms + MAX_AHEAD_MS:
                made.dropped.append((view.name, Dropped(event, None, f"its time {event.event_ms} is more than "
                                     f"{MAX_AHEAD_MS // 1000} s after the broker took it ({timestamp_ms})")))
                continue
            seen = len(windows.dropped)
            made.values += windows.add(event)
            made.dropped += [(view.name, dropped) for dropped in windows.dropped[seen:]]
            del windows.dropped[:]                      # said once, by the caller; not kept for ever
        return made


def arrival_ms(record: str, value: Mapping[str, Any], timestamp_ms: int) -> int:
    """When a source record happened, to order records of several partitions: a BusinessEvent's occurred_at,
    else the record's own time."""
    at = value.get("occurred_at") if record == BUSINESS_EVENT else None
    return int((at - EPOCH).total_seconds() * 1000) if isinstance(at, datetime) and at.tzinfo else timestamp_ms


def in_time_order(records: Iterable[tuple]) -> list[tuple]:
    """Source records of several partitions, (topic, partition, offset, timestamp_ms, record, value, ...), merged by
    when they happened (arrival_ms), each partition's own order kept: a view has one watermark, so a partition
    handled whole before the others would make the others' events late."""
    by_place: dict[tuple[str, int], list[tuple]] = {}
    for record in records:
        by_place.setdefault((record[0], record[1]), []).append(record)
    return list(heapq.merge(*by_place.values(), key=lambda r: arrival_ms(r[4], r[5], r[3])))


def backfill(state: FeaturizerState, version: str, history: Iterable[tuple]) -> Made:
    """A new view version computed over its source's history so far: (topic, partition, offset, timestamp_ms,
    record, value), in time order (in_time_order)."""
    made = Made()
    for topic, partition, offset, timestamp_ms, record, value in history:
        part = state.add(topic, partition, offset, timestamp_ms, record, value, only=version)
        made.values += part.values
        made.dropped += part.dropped
    return made
