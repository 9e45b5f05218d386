"""The feature store's offline store (issue 36): every value ever computed, as Parquet files under
root/<view>/<version[:16]>/<part>.parquet, with its event time and the Kafka offsets it came from: what training
reads. A part is written whole (a temporary file renamed); a part written again after a crash holds the same values,
and `read` drops duplicates. The values' texts are read as the online store reads them (feature_store).
"""
from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from services.domain import (FeatureSetRefused, FeatureValue, FeatureView, UsedValues, ViewColumns,
                             canonical_json as _json, kind_of, number_of, reached_positions, source_places,
                             sources_json as _sources_json, value_json as _value_json,
                             view_identifier as IDENTIFIER, TEXT_VALUE as TEXT)

from services.bus.edge import InvalidField

from .feature_store import _canonical_sources, _newest_offset, _row_value, _sources

Place = tuple[str, int]
T = TypeVar("T")
VERSION = re.compile(r"[0-9a-f]{64}", re.ASCII)
PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}", re.ASCII)     # a file name: no separator, not hidden
COLUMNS = ("view", "version", "feature", "entity", "event_ms", "window_start_ms", "value_json", "sources_json")


class OfflineStore:
    """Every feature value, as Parquet files per view version."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        # at_keys' parts as last read, by path: (mtime, size, inode) and the part — the skew check (every 5 min, the
        # drift-watcher's) reads only the parts written since; the other reads (the trainer's) keep nothing.
        self._parts: dict[Path, tuple[tuple[int, int, int], pa.Table]] = {}

    def folder(self, view: str, version: str) -> Path:
        """root/<view>/<version[:16]>; ValueError for a name that is not a view's or a version that is not sha256
        hex (a path such as ../x or /x would lead outside the root)."""
        if not (isinstance(view, str) and IDENTIFIER.fullmatch(view) and isinstance(version, str)
                and VERSION.fullmatch(version)):
            raise ValueError(f"not a view's name and version: {str(view)[:80]!r}, {str(version)[:80]!r}")
        return self.root / view / version[:16]

    def write(self, values: Sequence[FeatureValue], part: str) -> None:
        """Write `values` (any views) as part `part` of each view version they belong to, atomically."""
        groups: dict[tuple[str, str], list[FeatureValue]] = {}
        for value in values:
            groups.setdefault((value.view, value.view_version), []).append(value)
        if not (isinstance(part, str) and PART.fullmatch(part)):
            raise ValueError(f"a part's name is a file name (letters, digits, . _ -), not {str(part)[:80]!r}")
        for (view, version), found in groups.items():
            folder = self.folder(view, version)
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / f"{part}.parquet"
            temporary = folder / f".{part}.{os.getpid()}.tmp"
            pq.write_table(_table(found), temporary)
            os.replace(temporary, target)

    def read(self, view: str, version: str, until: Mapping[Place, int] | None = None) -> list[FeatureValue]:
        """Every value of the view version, duplicates dropped, in time order; with `until`, only the values whose
        sources all end at or before those offsets (a partition not named: none of it)."""
        frame = self.frame(view, version)
        values = [_row_value(row) for row in frame.to_dict("records")]
        if until is not None:
            values = [v for v in values if all(s.last_offset <= until.get((s.topic, s.partition), -1)
                                               for s in v.sources)]
        return values

    def frame(self, view: str, version: str) -> pd.DataFrame:
        """The view version's rows, one per value, duplicates dropped, sorted by time then key."""
        return _frame(self._table(view, version))

    def at_keys(self, view: str, version: str, keys: Iterable[tuple[str, str, int]]
                ) -> tuple[list[FeatureValue], dict[Place, int]]:
        """The values with these (feature, entity, event_ms), as `read` orders them, and the newest source offset
        per partition among all the view version's values (the skew check: objects only for the keys asked)."""
        wanted = set(keys)
        table = self._table(view, version, kept=True)
        near = _kept(table, pc.and_(pc.is_in(table.column("event_ms"), pa.array({k[2] for k in wanted}, pa.int64())),
                                    pc.is_in(table.column("entity"), pa.array({k[1] for k in wanted}, pa.string()))))
        named = _texts(near, ("feature", "entity", "event_ms"))
        exact = _kept(near, pa.array(pd.MultiIndex.from_frame(named).isin(list(wanted))))  # no cross product
        return [_row_value(row) for row in _frame(exact).to_dict("records")], _positions(table)

    def snapshot(self, views: Sequence[FeatureView], until: Mapping[Place, int] | None = None
                 ) -> tuple[list[ViewColumns], dict[Place, int]]:
        """The views' values up to `until` as columns, and `until`; without one, up to the offsets every view had
        reached (reached_positions): each view's parts read once."""
        tables = [self._table(view.name, view.version) for view in views]
        if until is None:
            until = reached_positions(_positions(table) for table in tables)
        return [_columns(view.name, view.version, _kept(table, _within(table, until)))
                for view, table in zip(views, tables)], dict(until)

    def _table(self, view: str, version: str, kept: bool = False) -> pa.Table:
        """Every part of the view version (`kept`: those read before and unchanged as kept), as one table of the
        store's typed schema (a part written before the typed columns existed is given them), rows of another
        version left out."""
        folder = self.folder(view, version)
        paths = sorted(folder.glob("*.parquet"))
        parts = self._kept_parts(folder, paths) if kept else [_part(path) for path in paths]
        table = pa.concat_tables(parts).unify_dictionaries() if parts else READ_SCHEMA.empty_table()
        ours = pc.and_(pc.equal(table.column("view"), view), pc.equal(table.column("version"), version))
        whole = [pc.is_valid(table.column(name)) for name in ("feature", "entity", "event_ms", "kind")]
        return _kept(table, pc.and_(ours, pc.and_(pc.and_(whole[0], whole[1]), pc.and_(whole[2], whole[3]))))

    def _kept_parts(self, folder: Path, paths: list[Path]) -> list[pa.Table]:
        """The folder's parts as _part reads them, each read again only when its file changed (another mtime, size
        or inode: a part written again is a new file renamed over it); the folder's parts gone are forgotten."""
        listed = set(paths)
        for gone in [path for path in self._parts if path.parent == folder and path not in listed]:
            del self._parts[gone]
        return [self._kept_part(path) for path in paths]

    def _kept_part(self, path: Path) -> pa.Table:
        if not path.is_file():
            return _part(path)              # refused, naming it
        status = path.stat()
        signature = (status.st_mtime_ns, status.st_size, status.st_ino)
        held = self._parts.get(path)
        if held is None or held[0] != signature:
            held = self._parts[path] = (signature, _part(path))     # stat before the read: a change after it is seen
        return held[1]


SPAN = pa.struct([("topic", pa.string()), ("partition", pa.int64()), ("first_offset", pa.int64()),
                  ("last_offset", pa.int64()), ("events", pa.int64())])
# A part's columns: the value's text and its sources' (what `read` and the digest use), and the same typed (what
# the join and the positions use, without parsing text).
SCHEMA = pa.schema([("view", pa.string()), ("version", pa.string()), ("feature", pa.string()),
                    ("entity", pa.string()), ("event_ms", pa.int64()), ("window_start_ms", pa.int64()),
                    ("value_json", pa.string()), ("sources_json", pa.string()), ("newest_offset", pa.int64()),
                    ("kind", pa.int8()), ("number", pa.float64()), ("text", pa.string()),
                    ("sources", pa.list_(SPAN))])
NAMES = ("view", "version", "feature", "entity")        # read as dictionaries: few distinct, the join's codes
READ_SCHEMA = pa.schema([pa.field(f.name, pa.dictionary(pa.int32(), pa.string())) if f.name in NAMES else f
                         for f in SCHEMA])


def _table(values: Sequence[FeatureValue]) -> pa.Table:
    kinds = [kind_of(v.value) for v in values]
    spans = [span for v in values for span in v.sources]
    ends = np.cumsum([0] + [len(v.sources) for v in values], dtype=np.int32)
    sources = pa.ListArray.from_arrays(pa.array(ends), pa.StructArray.from_arrays(
        [pa.array([s.topic for s in spans], pa.string()), pa.array([s.partition for s in spans], pa.int64()),
         pa.array([s.first_offset for s in spans], pa.int64()), pa.array([s.last_offset for s in spans], pa.int64()),
         pa.array([s.events for s in spans], pa.int64())], fields=list(SPAN)))
    return pa.table({
        "view": [v.view for v in values], "version": [v.view_version for v in values],
        "feature": [v.feature for v in values], "entity": [v.entity for v in values],
        "event_ms": [v.event_ms for v in values], "window_start_ms": [v.window_start_ms for v in values],
        "value_json": [_value_json(v.value) for v in values],
        "sources_json": [_sources_json(v.sources) for v in values],
        "newest_offset": [_newest_offset(v) for v in values], "kind": kinds,
        "number": [number_of(v.value) for v in values],
        "text": [v.value if k == TEXT else None for v, k in zip(values, kinds)], "sources": sources}, schema=SCHEMA)


def _part(path: Path) -> pa.Table:
    """A part in the store's typed schema; FeatureSetRefused naming it when it is not a Parquet file of the store's
    columns (corrupt, of other types, not a file) — the machine's own errors (errno set: EIO, EACCES) stay raised."""
    if not path.is_file():
        raise FeatureSetRefused(f"the offline store's part {path} is not a file (a dangling link?)")
    try:
        return _typed(pq.read_table(path, read_dictionary=NAMES))
    except (pa.ArrowException, OSError) as error:
        if isinstance(error, OSError) and error.errno is not None:
            raise
        raise FeatureSetRefused(f"the offline store's part {path} cannot be read as one: "
                                f"{type(error).__name__}: {str(error)[:300]}") from None


def _typed(part: pa.Table) -> pa.Table:
    """A part in the store's typed schema: as written, or (a part from before the typed columns) read value by value
    and given them."""
    if not set(SCHEMA.names) <= set(part.column_names):
        part = _table([_row_value(row) for row in part.select(list(COLUMNS)).to_pylist()])
    return part.select(READ_SCHEMA.names).cast(READ_SCHEMA)


def _columns(view: str, version: str, table: pa.Table) -> ViewColumns:
    table = table.combine_chunks()

    def texts(name: str) -> pd.Series:
        return table.column(name).to_pandas(types_mapper=pd.ArrowDtype)

    start = table.column("window_start_ms").to_numpy(zero_copy_only=False)
    return ViewColumns(
        view, version, _categorical(table.column("feature")), _categorical(table.column("entity")),
        table.column("event_ms").to_numpy(), np.asarray(start, dtype=np.float64), table.column("kind").to_numpy(),
        table.column("number").to_numpy(zero_copy_only=False), texts("text"), texts("value_json"),
        texts("sources_json"), _TableRows(table))


class _TableRows:
    """The rows of a table of the store's schema (the join's columns): an object made from its texts when asked,
    the sources the digest reads made from its typed spans (what the cut at offsets read)."""

    def __init__(self, table: pa.Table):
        self.table = table

    def value_at(self, row: int) -> FeatureValue:
        cells = {name: self.table.column(name)[row].as_py() for name in COLUMNS}      # a dictionary's value
        return _readable(lambda _: _row_value(cells), str(cells))

    def places(self, rows: np.ndarray) -> list[tuple]:
        texts = self.table.column("sources_json").take(pa.array(rows, pa.int64())).to_pylist()
        return [source_places(_readable(_sources, text)) for text in texts]    # as value_at's object has them

    def cut_sources(self, rows: np.ndarray, stored: list[str]) -> list[str]:
        spans = self.table.column("sources").take(pa.array(rows, pa.int64())).to_pylist()
        return [_json([[s["topic"], s["partition"], s["first_offset"], s["last_offset"], s["events"]]
                       for s in found or ()]) for found in spans]

    def canonical_sources(self, text: str) -> str:
        return _readable(_canonical_sources, text)


def _readable(parse: Callable[[str], T], text: str) -> T:
    """A stored text parsed (a row's sources_json, or the row); one that does not read (a part written by hand: an
    offset past a long, a field not JSON, a span of four) is the store's refusal, as a part that is no Parquet file
    is, not the edge's InvalidField or a TypeError."""
    try:
        return parse(text)
    except (InvalidField, TypeError, ValueError) as error:
        raise FeatureSetRefused(f"the offline store holds what it cannot read ({error}): {text[:200]!r}") from None


def _texts(table: pa.Table, columns: Sequence[str]) -> pd.DataFrame:
    """The table's `columns` as a DataFrame, names as text (SCHEMA's types), not dictionaries."""
    return table.select(list(columns)).cast(pa.schema([SCHEMA.field(column) for column in columns])).to_pandas()


def _frame(table: pa.Table) -> pd.DataFrame:
    frame = _texts(table, COLUMNS)
    frame = frame.drop_duplicates(subset=["feature", "entity", "event_ms", "window_start_ms", "sources_json"])
    return frame.sort_values(["event_ms", "feature", "entity", "sources_json"], kind="stable")


def _positions(table: pa.Table) -> dict[Place, int]:
    spans = pc.list_flatten(table.column("sources").combine_chunks())
    newest = pa.table({"topic": spans.field("topic"), "partition": spans.field("partition"),
                       "last": spans.field("last_offset")}).group_by(["topic", "partition"]).aggregate(
                           [("last", "max")])
    return {(topic, partition): last for topic, partition, last in zip(
        *(newest.column(name).to_pylist() for name in ("topic", "partition", "last_max")))}


def _kept(table: pa.Table, keep: pa.Array | pa.ChunkedArray) -> pa.Table:
    """The rows where `keep` holds, a null as False (the table itself when it holds everywhere: no copy)."""
    keep = pc.fill_null(keep, False)
    return table if len(table) == 0 or pc.all(keep).as_py() else table.filter(keep)


def _within(table: pa.Table, until: Mapping[Place, int]) -> pa.Array:
    """Per row, whether every span of its sources ends at or before `until`'s offset for its partition (-1 for a
    partition `until` does not name)."""
    sources = table.column("sources").combine_chunks()
    spans = pc.list_flatten(sources)
    topics = spans.field("topic").dictionary_encode()
    names = topics.dictionary.to_pylist()
    partitions = spans.field("partition").dictionary_encode()
    numbers = partitions.dictionary.to_pylist()
    place = topics.indices.to_numpy().astype(np.int64) * len(numbers) + partitions.indices.to_numpy()
    places, where = np.unique(place, return_inverse=True)
    limits = np.array([until.get((names[p // len(numbers)], numbers[p % len(numbers)]), -1) for p in places.tolist()],
                      dtype=np.int64)
    beyond = spans.field("last_offset").to_numpy() > limits[where]
    keep = np.ones(len(sources), dtype=bool)
    keep[pc.list_parent_indices(sources).to_numpy()[beyond]] = False
    return pa.array(keep)


def _categorical(column: pa.ChunkedArray) -> pd.Categorical:
    """A dictionary column (one chunk, one dictionary: unified) as a pandas Categorical over the same codes."""
    encoded = column.combine_chunks()
    return pd.Categorical.from_codes(encoded.indices.to_numpy(), categories=pd.Index(encoded.dictionary.to_pylist(),
                                                                                      dtype=object))


def snapshot_digest(values: Iterable[FeatureValue] | UsedValues) -> str:
    """SHA-256 of the values in a canonical order: equal for the same values, whatever order they came in (the
    values a training set used are read from the store's texts, which are the texts of their objects)."""
    rows = sorted(values.digest_rows() if isinstance(values, UsedValues) else (
        (v.view, v.view_version, v.feature, v.entity, v.event_ms, v.window_start_ms is None, v.window_start_ms or 0,
         _value_json(v.value), _sources_json(v.sources)) for v in values))
    digest = hashlib.sha256()
    for row in rows:
        digest.update(_json(list(row)).encode() + b"\n")
    return digest.hexdigest()
