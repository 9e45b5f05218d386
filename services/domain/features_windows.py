"""A feature view's values computed from its source's events, in event time (issue 36, the featurizer's core).

Times are epoch milliseconds, what Kafka timestamps and Avro timestamp-millis hold. A `last` feature has a value
at each event's time. A windowed feature has one per window: windows start at multiples of the slide from the
epoch and span `window` (tumbling: slide = window), each event counting in every window [start, start + window)
that holds its time; a window's value holds from its end, the moment it is known, so a label at time t never sees
a window that ends after t. The window that follows a non-empty one, if it gets no event, has a value too (count 0,
sum 0.0, mean / min / max None): the count of a quiet hour is 0, not the last busy hour's.

Events may arrive out of event-time order. The watermark is the newest event time seen less the view's lateness;
a window closes (its value is emitted) when the watermark reaches its end. An event arriving for a closed window is
dropped for that window, a `last` event older than the watermark too, each with its reason, never raised: once
emitted, a value never changes. An event whose offset is not past the last one seen from its partition is a
redelivery, dropped. Sums are exact sums of the window's values, rounded once (math.fsum's value, kept as one
integer: bounded room), so arrival order changes no value.
The result carries, for each value, the spans of Kafka offsets it came from (the offline store keeps them).
"""
from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field as dataclass_field
from datetime import datetime, timedelta, timezone
from typing import Any

from services.bus.edge import CONTROL, MAX_IDENTIFIER

from .features_views import MAX_LATENESS_MS, MAX_WINDOW_MS, Feature, FeatureView

MAX_EVENT_MS = 253_402_300_799_999       # 9999-12-31T23:59:59.999Z: what a datetime holds
# The latest event time a view takes: its values (a window's end, plus the lateness) still fit in a datetime.
LATEST_EVENT_MS = MAX_EVENT_MS - MAX_WINDOW_MS - MAX_LATENESS_MS
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
Scalar = float | int | str | bool | None


@dataclass(frozen=True)
class SourceEvent:
    entity: str
    event_ms: int
    values: Mapping[str, Any]           # the record's fields
    topic: str                          # where it was read: its place on the bus
    partition: int
    offset: int


@dataclass(frozen=True)
class SourceSpan:
    """The events of one partition a value came from: offsets first_offset..last_offset, `events` of them."""
    topic: str
    partition: int
    first_offset: int
    last_offset: int
    events: int


@dataclass(frozen=True)
class FeatureValue:
    view: str
    view_version: str
    feature: str
    entity: str
    event_ms: int                       # from when the value holds: its event's time, or its window's end
    value: Scalar
    window_start_ms: int | None         # None for a `last` feature
    sources: tuple[SourceSpan, ...]


@dataclass(frozen=True)
class Dropped:
    event: SourceEvent
    feature: str | None                 # None: the event as a whole
    reason: str


@dataclass(frozen=True)
class Aggregated:
    values: tuple[FeatureValue, ...]    # by feature, entity, time
    dropped: tuple[Dropped, ...]
    watermark_ms: int | None


LEAST_DOUBLE_BITS = 1074                # every finite double is a whole number of 2**-1074, the least one


@dataclass
class Numbers:
    """A window's numbers, in room that does not grow with them: their exact sum as one integer of units of
    2**-1074 (a few hundred bytes at most: the range of doubles, plus the bits of the count), how many, the least
    and the most. The sum is that integer rounded once, correctly (what math.fsum gives wherever fsum's own
    running sums stay finite): whatever order the numbers came in, the same sum, and past what a double holds
    only when the exact sum is. (math.fsum's partials, kept before, are no bound: crafted numbers leave hundreds
    of them, each walked in Python for every later number; and fsum's intermediate overflow made a window's value
    depend on the order its events arrived in.)"""
    units: int = 0
    count: int = 0
    least: float = math.inf
    most: float = -math.inf

    def add(self, number: float) -> None:
        self.count += 1
        self.least, self.most = min(self.least, number), max(self.most, number)
        numerator, denominator = number.as_integer_ratio()          # the denominator: a power of two
        self.units += numerator << (LEAST_DOUBLE_BITS - denominator.bit_length() + 1)

    def sum(self) -> float:
        """The exact sum, correctly rounded; OverflowError past what a double holds."""
        return self.units / (1 << LEAST_DOUBLE_BITS)


@dataclass
class _Window:
    numbers: Numbers = dataclass_field(default_factory=Numbers)
    events: int = 0
    offsets: dict[tuple[str, int], list[int]] = dataclass_field(default_factory=dict)   # place → first, last, n


def aggregate(view: FeatureView, events: Iterable[SourceEvent], final: bool = True) -> Aggregated:
    """The values `events` (in arrival order) give `view`; `final`: the source is bounded and ends here, so every
    window closes (a dataset's batches, a backfill), else only those the watermark has passed."""
    windows = Windows(view)
    values = [value for event in events for value in windows.add(event)]
    if final:
        values += windows.close()
    return Aggregated(tuple(sorted(values, key=_order)), tuple(windows.dropped), windows.watermark_ms)


def _order(value: FeatureValue) -> tuple:
    return value.feature, value.entity, value.event_ms, value.window_start_ms or 0, source_places(value.sources)


def source_places(sources: Iterable[SourceSpan]) -> tuple:
    """Where a value came from, (topic, partition, last offset) per span: how values of the same time are ordered
    (the later place wins: features_lookups.time_and_place)."""
    return tuple((s.topic, s.partition, s.last_offset) for s in sources)


class Windows:
    """One view's open windows, folded one event at a time: `add` returns the values an event makes known."""

    def __init__(self, view: FeatureView):
        self.view = view
        self.features = {feature.name: feature for feature in view.features}
        self.newest_ms: int | None = None
        self.last_offsets: dict[tuple[str, int], int] = {}
        self.open: dict[tuple[str, str, int], _Window] = {}             # (feature, entity, start) → accumulated
        self.quiet: set[tuple[str, str, int]] = set()                   # windows after a non-empty one, no event yet
        self.closing: list[tuple[int, str, str, int]] = []              # heap of (end, feature, entity, start)
        self.dropped: list[Dropped] = []

    @property
    def watermark_ms(self) -> int | None:
        return None if self.newest_ms is None else self.newest_ms - self.view.lateness_ms

    def add(self, event: SourceEvent) -> list[FeatureValue]:
        problem = event_problem(event) or self._redelivered(event)
        if problem:
            self.dropped.append(Dropped(event, None, problem))
            return []
        self.last_offsets[(event.topic, event.partition)] = event.offset
        self.newest_ms = max(self.newest_ms or 0, event.event_ms)
        watermark = self.newest_ms - self.view.lateness_ms
        made = []
        for feature in self.view.features:
            if feature.aggregate == "last":
                made += self._last(feature, event, watermark)
            else:
                self._count_in(feature, event, watermark)
        return made + self._close_until(watermark)

    def close(self) -> list[FeatureValue]:
        """Every window still open, and the quiet ones after them: the source has ended."""
        return self._close_until(MAX_EVENT_MS * 2)

    def _redelivered(self, event: SourceEvent) -> str | None:
        seen = self.last_offsets.get((event.topic, event.partition))
        return None if seen is None or event.offset > seen else \
            f"offset {event.offset} of {event.topic}[{event.partition}] is not past {seen}: delivered again"

    def _last(self, feature: Feature, event: SourceEvent, watermark: int) -> list[FeatureValue]:
        value = event.values.get(str(feature.field))
        if event.event_ms < watermark:
            return self._drop(event, feature, f"its time is before the watermark {watermark}")
        if value is None or not _scalar(value):
            return self._drop(event, feature, f"field {feature.field!r} holds no value (text, number or boolean)")
        span = SourceSpan(event.topic, event.partition, event.offset, event.offset, 1)
        # known from its time plus the lateness, as a window's value: an earlier event may still arrive until then
        return [FeatureValue(self.view.name, self.view.version, feature.name, event.entity,
                             event.event_ms + self.view.lateness_ms, value, None, (span,))]

    def _count_in(self, feature: Feature, event: SourceEvent, watermark: int) -> None:
        number = None
        if feature.field is not None:
            number = _number(event.values.get(feature.field))
            if number is None:
                self._drop(event, feature, f"field {feature.field!r} holds no finite number")
                return
        window_ms, slide_ms = int(feature.window_ms or 0), int(feature.slide_ms or 0)
        starts = range((event.event_ms - window_ms) // slide_ms * slide_ms + slide_ms, event.event_ms + 1, slide_ms)
        closed = [start for start in starts if start + window_ms <= watermark]
        if closed:
            self._drop(event, feature, f"{len(closed)} of its windows closed at the watermark {watermark}")
        for start in starts[len(closed):]:
            key = (feature.name, event.entity, start)
            if key not in self.open:
                self.open[key] = _Window()
                self.quiet.discard(key)
                heapq.heappush(self.closing, (start + window_ms, *key))
            window = self.open[key]
            window.events += 1
            if number is not None:
                window.numbers.add(number)
            place = window.offsets.setdefault((event.topic, event.partition), [event.offset, event.offset, 0])
            place[0], place[1], place[2] = min(place[0], event.offset), max(place[1], event.offset), place[2] + 1

    def _close_until(self, watermark: int) -> list[FeatureValue]:
        made = []
        while self.closing and self.closing[0][0] <= watermark:
            end, name, entity, start = heapq.heappop(self.closing)
            feature = self.features[name]
            assert feature.slide_ms is not None
            key = (name, entity, start)
            if key in self.open:
                made.append(self._value(feature, entity, start, end, self.open.pop(key)))
                following = (name, entity, start + feature.slide_ms)
                if following not in self.open:
                    self.quiet.add(following)
                    heapq.heappush(self.closing, (end + feature.slide_ms, *following))
            elif key in self.quiet:
                self.quiet.discard(key)
                made.append(self._value(feature, entity, start, end, _Window()))
        return made

    def _value(self, feature: Feature, entity: str, start: int, end: int, window: _Window) -> FeatureValue:
        sources = tuple(SourceSpan(topic, partition, first, last, count)
                        for (topic, partition), (first, last, count) in sorted(window.offsets.items()))
        # Known from its end plus the lateness: only then can no event still change it, so a label at any earlier
        # moment never sees a value that events arriving after that moment made (serving could not have had it).
        return FeatureValue(self.view.name, self.view.version, feature.name, entity, end + self.view.lateness_ms,
                            summary(feature.aggregate, window.numbers, window.events), start, sources)

    def _drop(self, event: SourceEvent, feature: Feature, reason: str) -> list[FeatureValue]:
        self.dropped.append(Dropped(event, feature.name, reason))
        return []


def summary(aggregate: str, numbers: Numbers, events: int) -> float | int | None:
    """A window's value: its count of events (those with a number when the feature names a field), or the sum,
    mean, min or max of its numbers (None for an empty window's mean, min, max, and for a sum or mean whose
    sum is past what a double holds, e.g. 1e308 + 1e308: no value rather than an error)."""
    if aggregate == "count":
        return events
    try:
        if aggregate == "sum":
            return numbers.sum()
        if not numbers.count:
            return None
        if aggregate == "mean":
            return numbers.sum() / numbers.count
    except OverflowError:
        return None
    return numbers.least if aggregate == "min" else numbers.most


def source_event(view: FeatureView, values: Mapping[str, Any], record_ms: int, topic: str, partition: int,
                 offset: int) -> SourceEvent:
    """A source record as an event of `view`: the entity from its entity field (text, or a whole number), the time
    from its event-time field (epoch milliseconds or an aware datetime) or else the record's own time. A value that
    cannot serve is kept as it is, for aggregate to drop the event with its reason."""
    fields = values if isinstance(values, Mapping) else {}
    entity: Any = fields.get(view.entity)
    at: Any = fields.get(view.event_time) if view.event_time else record_ms
    if isinstance(at, datetime) and at.tzinfo is not None:
        at = (at - EPOCH) // timedelta(milliseconds=1)
    return SourceEvent(str(entity) if _whole(entity, 2**63) else entity, at, values, topic, partition, offset)


def event_problem(event: Any) -> str | None:
    """Why an event cannot count anywhere (its entity, time, values or place are unusable), or None."""
    if not isinstance(event, SourceEvent):
        return f"not a source event: {type(event).__name__}"
    if not isinstance(event.entity, str) or not 0 < len(event.entity) <= MAX_IDENTIFIER or \
            CONTROL.search(event.entity):
        return f"entity {str(event.entity)[:80]!r} is not text of 1 to {MAX_IDENTIFIER} printable characters"
    if not _whole(event.event_ms, LATEST_EVENT_MS):
        return f"event time {str(event.event_ms)[:40]} is not epoch milliseconds from 0 to {LATEST_EVENT_MS}"
    if not isinstance(event.values, Mapping):
        return "its values are not a mapping of field to value"
    if not isinstance(event.topic, str) or not _whole(event.partition, 2**31) or not _whole(event.offset, 2**63):
        return "its place (topic, partition, offset) is not a topic's name and two whole numbers"
    return None


def _whole(value: Any, most: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= most


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, bool)) or _number(value) is not None
