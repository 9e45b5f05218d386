"""The feature store's online store and its records on the bus (issue 36), over the pure core in services/domain.

- OnlineStore: each (view, version, feature, entity)'s newest value in a SQL database (SQLite by default,
  PostgreSQL alike): what serving reads. A value replaces the one held only when it is newer (event time, then
  source offset), so applying the same values twice, or out of order, leaves the same store.
- The stored texts of a value and its sources read back (_value, _sources, _row_value), as both stores read them;
  the offline store (every value ever computed, as Parquet: what training reads) is offline_store.
- The records: FeatureViewDefined (features.views) and FeatureValue (features.online) to and from the domain's
  FeatureView and FeatureValue.
"""
from __future__ import annotations

import math
import re
import threading
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from typing import cast

import pandas as pd
import sqlalchemy as sa

from services.bus.edge import content
from services.bus.errors import BadInput
from services.domain import (EPOCH, FeatureValue, FeatureView, SourceSpan, ViewsRefused, canonical_view as canonical,
                             parse_views, view_json_bytes as canonical_bytes, source_places,
                             sources_json as _sources_json, time_and_place, value_json as _value_json)

Scalar = float | int | str | bool | None            # a FeatureValue's value (the domain's Scalar)
_METADATA = sa.MetaData()
ONLINE = sa.Table(
    "feature_online", _METADATA,
    sa.Column("view", sa.String(64), primary_key=True),
    sa.Column("version", sa.String(64), primary_key=True),
    sa.Column("entity", sa.String(256), primary_key=True),
    sa.Column("feature", sa.String(64), primary_key=True),
    sa.Column("event_ms", sa.BigInteger, nullable=False),
    sa.Column("window_start_ms", sa.BigInteger, nullable=True),
    sa.Column("value_json", sa.Text, nullable=False),
    sa.Column("sources_json", sa.Text, nullable=False),
    sa.Column("newest_offset", sa.BigInteger, nullable=False),
)
# The lookup on a SQLite file (OnlineStore.get): view, version and entity are the ones asked for (compared as bytes:
# no collation), so only the rest is read.
_GET = ("SELECT feature, event_ms, window_start_ms, value_json, sources_json FROM feature_online"
        " WHERE view = ? AND version = ? AND entity = ?")


def _sources(text: str) -> tuple[SourceSpan, ...]:
    fast = _SEEN_SOURCES.get(text)
    if fast is None:
        fast = _stored_sources(text)
        if fast is not None and len(text) <= 1024:
            _remember(_SEEN_SOURCES, text, fast)
    if fast is not None:
        return fast
    return tuple(SourceSpan(str(t), int(p), int(f), int(last), int(n)) for t, p, f, last, n in content(text, []))


# The store's own text, as _sources_json and _value_json write it, read without the edge's JSON parse (the lookup's
# hot path): only the exact shapes the store writes, bounded, by whole-text regular expressions (no backtracking
# past a bounded span); anything else — a row written otherwise, an escape, a huge number — goes to the edge's
# parser (content), so the results are the same.
_INT = r"-?(?:0|[1-9][0-9]{0,18})"
_SPAN_TEXT = r'\["[A-Za-z0-9._-]{1,249}",' + ",".join([_INT] * 4) + r"\]"
_SPAN = re.compile(r'\["([A-Za-z0-9._-]{1,249})",' + ",".join([f"({_INT})"] * 4) + r"\]", re.ASCII)
_SPANS = re.compile(rf"\[(?:{_SPAN_TEXT}(?:,{_SPAN_TEXT})*)?\]", re.ASCII)
_NUMBER = re.compile(r"\[(-?(?:0|[1-9][0-9]{0,18}))(\.[0-9]{1,30})?([eE][-+]?[0-9]{1,4})?\]", re.ASCII)
_PLAIN_STRING = re.compile(r'\["([^"\\\x00-\x1f\x7f-\U0010ffff]{0,4096})"\]')
# What the fast path read, by text (values and spans are immutable): a dict of at most _SEEN_MAX short texts each,
# emptied when full (texts repeat: a view's values, the spans of a partition's recent offsets).
_SEEN_MAX = 4096
_SEEN_VALUES: dict[str, object] = {}
_SEEN_SOURCES: dict[str, tuple[SourceSpan, ...]] = {"[]": ()}
_CONSTANTS = {"[null]": None, "[true]": True, "[false]": False}
_LONG = 2 ** 63
_MISSING = object()


def _remember(seen: dict, text: str, parsed: object) -> None:
    if len(seen) >= _SEEN_MAX:
        seen.clear()
    seen[text] = parsed


def _canonical_sources(text: str) -> str:
    """A sources_json as the store writes it (parsed and written again: -0 is 0)."""
    return _sources_json(_sources(text))


def _stored_sources(text: str) -> tuple[SourceSpan, ...] | None:
    """The spans of a sources_json the store wrote ([[topic, partition, first, last, events], ...]), or None for
    any other text (then the edge's parser reads it)."""
    if len(text) > 65_536 or not _SPANS.fullmatch(text):
        return None
    spans = []
    for topic, partition, first, last, events in _SPAN.findall(text):
        numbers = (int(partition), int(first), int(last), int(events))
        if not all(-_LONG <= n < _LONG for n in numbers):
            return None
        spans.append(SourceSpan(topic, *numbers))
    return tuple(spans)


def _stored_value(text: str) -> object:
    """The scalar of a value_json the store wrote ([<scalar>]), or _MISSING for any other text."""
    constant = _CONSTANTS.get(text, _MISSING)
    if constant is not _MISSING:
        return constant
    number = _NUMBER.fullmatch(text)
    if number is not None:
        whole, fraction, exponent = number.groups()
        if fraction is None and exponent is None:
            value = int(whole)
            return value if -_LONG <= value < _LONG else _MISSING
        real = float(text[1:-1])
        return real if math.isfinite(real) else _MISSING
    string = _PLAIN_STRING.fullmatch(text)
    return string.group(1) if string is not None else _MISSING


def _value(text: str) -> Scalar:
    fast = _SEEN_VALUES.get(text, _MISSING)
    if fast is _MISSING:
        fast = _stored_value(text)
        if fast is not _MISSING and len(text) <= 64:
            _remember(_SEEN_VALUES, text, fast)
    return content(text)[0] if fast is _MISSING else cast(Scalar, fast)


def _newest_offset(value: FeatureValue) -> int:
    return max((s.last_offset for s in value.sources), default=-1)


def _row_value(row: Mapping) -> FeatureValue:
    start = row["window_start_ms"]
    return FeatureValue(row["view"], row["version"], row["feature"], row["entity"], int(row["event_ms"]),
                        _value(row["value_json"]), None if start is None or pd.isna(start) else int(start),
                        _sources(row["sources_json"]))


class OnlineStore:
    """Each feature's newest value per entity, in a SQL database (the table feature_online)."""

    def __init__(self, url: str):
        self.engine = sa.create_engine(str(url))
        _METADATA.create_all(self.engine, tables=[ONLINE], checkfirst=True)
        self._get = sa.select(ONLINE).where(ONLINE.c.view == sa.bindparam("view"),
                                            ONLINE.c.version == sa.bindparam("version"),
                                            ONLINE.c.entity == sa.bindparam("entity"))
        # A SQLite file: lookups go through one kept DB-API connection (sqlite3 caches the prepared statement), not
        # SQLAlchemy's per-call connection and statement handling; a lock, as one sqlite3 connection is not to be
        # used by two threads at once. In-memory SQLite (a connection per thread) and PostgreSQL keep SQLAlchemy.
        self._kept: object | None = None
        self._lock = threading.Lock()
        database = self.engine.url.database or ""
        self._raw = self.engine.dialect.name == "sqlite" and bool(database) and ":memory:" not in database \
            and "mode=memory" not in str(self.engine.url)

    def put(self, values: Iterable[FeatureValue]) -> list[FeatureValue]:
        """Store each value not older than the one held for its (view, version, feature, entity): the newest of
        each key given; return those (a value given again is returned again: a redelivered batch publishes it)."""
        newest: dict[tuple, FeatureValue] = {}
        for value in values:
            key = (value.view, value.view_version, value.entity, value.feature)
            if key not in newest or time_and_place(value) > time_and_place(newest[key]):
                newest[key] = value
        if not newest:
            return []
        stored = []
        with self.engine.begin() as connection:
            held = self._held(connection, list(newest))
            for key, value in newest.items():
                if key in held and held[key] > time_and_place(value):  # the training join's rule: one value of a tie
                    continue
                row = {"view": value.view, "version": value.view_version, "entity": value.entity,
                       "feature": value.feature, "event_ms": value.event_ms, "window_start_ms": value.window_start_ms,
                       "value_json": _value_json(value.value), "sources_json": _sources_json(value.sources),
                       "newest_offset": _newest_offset(value)}
                if key in held:
                    connection.execute(ONLINE.update().where(*_match(key)).values(**row))
                else:
                    connection.execute(ONLINE.insert().values(**row))
                stored.append(value)
        return stored

    def get(self, view: str, version: str, entity: str) -> list[FeatureValue]:
        """Every feature's newest value of this view version for `entity`."""
        if self._raw and type(view) is str and type(version) is str and type(entity) is str:
            with self._lock:
                if self._kept is None:
                    self._kept = self.engine.raw_connection()
                cursor = self._kept.cursor()        # type: ignore[attr-defined]
                try:
                    cursor.execute(_GET, (view, version, entity))
                    rows = cursor.fetchall()
                finally:
                    cursor.close()
            return [FeatureValue(view, version, feature, entity, int(ms), _value(value),
                                 None if start is None else int(start), _sources(sources))
                    for feature, ms, start, value, sources in rows]
        with self.engine.connect() as connection:
            rows = connection.execute(self._get, {"view": view, "version": version, "entity": entity}).mappings()
            return [_row_value(row) for row in rows]

    def all(self, view: str | None = None) -> list[FeatureValue]:
        query = sa.select(ONLINE) if view is None else sa.select(ONLINE).where(ONLINE.c.view == view)
        with self.engine.connect() as connection:
            return [_row_value(row) for row in connection.execute(query.order_by(*ONLINE.primary_key)).mappings()]

    def _held(self, connection: sa.Connection, keys: list[tuple]) -> dict[tuple, tuple]:
        held = {}
        for view, version in {(k[0], k[1]) for k in keys}:
            entities = sorted({k[2] for k in keys if k[:2] == (view, version)})
            for chunk in range(0, len(entities), 500):
                query = sa.select(ONLINE.c.view, ONLINE.c.version, ONLINE.c.entity, ONLINE.c.feature,
                                  ONLINE.c.event_ms, ONLINE.c.sources_json).where(
                    ONLINE.c.view == view, ONLINE.c.version == version,
                    ONLINE.c.entity.in_(entities[chunk:chunk + 500]))
                for row in connection.execute(query):
                    held[(row[0], row[1], row[2], row[3])] = (int(row[4]), source_places(_sources(row[5])))
        return held

    def close(self) -> None:
        with self._lock:
            kept, self._kept = self._kept, None
        if kept is not None:
            kept.close()                            # type: ignore[attr-defined]
        self.engine.dispose()


def _match(key: tuple) -> tuple:
    view, version, entity, feature = key
    return (ONLINE.c.view == view, ONLINE.c.version == version, ONLINE.c.entity == entity,
            ONLINE.c.feature == feature)


def online_key(value: FeatureValue) -> str:
    """features.online's key: the newest value per view version, feature and entity survives compaction."""
    return f"{value.view}/{value.view_version}/{value.feature}/{value.entity}"


def _time(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


def _ms(at: datetime | int) -> int:
    return at if isinstance(at, int) else (at - EPOCH) // timedelta(milliseconds=1)


def value_record(value: FeatureValue, computed_at: datetime | None = None) -> dict:
    """A FeatureValue as features.online's Avro value."""
    return {"view": value.view, "version": value.view_version, "feature": value.feature, "entity": value.entity,
            "event_time": _time(value.event_ms), "value": value.value,
            "window_start": None if value.window_start_ms is None else _time(value.window_start_ms),
            "sources": [{"topic": s.topic, "partition": s.partition, "first_offset": s.first_offset,
                         "last_offset": s.last_offset, "events": s.events} for s in value.sources],
            "computed_at": computed_at or datetime.now(timezone.utc)}


def value_from_record(record: Mapping) -> FeatureValue:
    """features.online's Avro value as a FeatureValue."""
    start = record.get("window_start")
    return FeatureValue(record["view"], record["version"], record["feature"], record["entity"],
                        _ms(record["event_time"]), record.get("value"), None if start is None else _ms(start),
                        tuple(SourceSpan(s["topic"], s["partition"], s["first_offset"], s["last_offset"], s["events"])
                              for s in record.get("sources", ())))


def views_key(view: FeatureView) -> str:
    """features.views's key: one per view and version, so compaction keeps every version."""
    return f"{view.name}@{view.version}"


def views_record(view: FeatureView, defined_by: str, now: datetime | None = None) -> dict:
    """A view as an unsigned FeatureViewDefined value (the CLI signs it)."""
    return {"view": view.name, "version": view.version, "definition_json": canonical_bytes(canonical(view)).decode(),
            "source_topic": view.source_topic, "source_kind": view.source_kind, "source_dataset": view.source_dataset,
            "owner": view.owner, "defined_by": defined_by, "defined_at": now or datetime.now(timezone.utc)}


def view_from_record(record: Mapping) -> FeatureView:
    """The view a FeatureViewDefined declares; ViewsRefused when its definition is not a view, is not the one its
    fields name, or its version is not the definition's."""
    try:
        form = content(record["definition_json"])
    except (BadInput, TypeError, KeyError) as error:
        raise ViewsRefused([f"definition_json is not a view's JSON: {str(error)[:160]}"]) from None
    if not isinstance(form, dict):
        raise ViewsRefused(["definition_json is not one view"])
    [view] = parse_views({"views": [_as_written(form)]})
    claims = {"view": view.name, "version": view.version, "source_topic": view.source_topic,
              "source_kind": view.source_kind, "source_dataset": view.source_dataset, "owner": view.owner}
    wrong = [f"{field} says {str(record.get(field))[:80]!r}, the definition {str(value)[:80]!r}"
             for field, value in claims.items() if record.get(field) != value]
    if wrong:
        raise ViewsRefused(wrong)
    return view


def _as_written(form: dict) -> dict:
    """A canonical form (durations in ms) as a definition parse_views reads (durations as text in ms)."""
    def ms(value: object) -> object:
        return f"{value}ms" if isinstance(value, int) and not isinstance(value, bool) else value
    written = {k: v for k, v in form.items() if k not in ("lateness_ms", "ttl_ms", "features", "event_time")}
    if form.get("event_time") is not None:
        written["event_time"] = form["event_time"]
    written["lateness"], written["ttl"] = ms(form.get("lateness_ms")), ms(form.get("ttl_ms"))
    features = form.get("features")
    written["features"] = [
        {k: v for k, v in {"name": f.get("name"), "aggregate": f.get("aggregate"), "field": f.get("field"),
                           "window": ms(f.get("window_ms")),
                           "slide": ms(f.get("slide_ms")) if f.get("slide_ms") != f.get("window_ms") else None
                           }.items() if v is not None}
        if isinstance(f, dict) else f for f in features] if isinstance(features, list) else features
    return written
