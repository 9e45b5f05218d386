"""Features: the feature store (services/adapters/feature_store.py over services/domain/features_*) against Feast
(SQLite online store, file offline store, a local registry file; its own virtualenv, var/bench-peers-feast), on the
same generated purchases (customer_id, amount, time), with equal values required (a difference fails the run):

- online lookup p99 for one entity: OnlineStore.get vs Feast's get_online_features (every feature of the view),
  the runs of the two alternating (a p99 on a shared machine moves with its load);
- materialisation: OnlineStore.put + OfflineStore.write of the view's values vs Feast's materialize (offline
  Parquet → online SQLite), in feature values per second;
- point-in-time join: the trainer's path (OfflineStore.snapshot + features_training.training_set, the join on
  columns) vs Feast's get_historical_features, in label rows per second.

The view: the last amount and four 1-hour tumbling windows (count, sum, mean, max). mlbus computes the windows with
features_windows.aggregate; Feast computes no windows, so they are precomputed here with pandas into its source
Parquet (one row per window, stamped at its end, and the quiet window after a busy one: count 0, sum 0). Neither
is timed, and the pandas windows must equal mlbus's. Amounts are whole cents, so every sum is exact in any order;
label times are odd milliseconds and event times even ones, so no label falls on a value's time (mlbus sees values
strictly before a label, Feast at or before it)."""
from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from services.adapters.feature_store import OnlineStore
from services.adapters.offline_store import OfflineStore, snapshot_digest
from services.domain.features_lookups import column_name
from services.domain.features_training import FeatureSettings, TrainingSet, training_set
from services.domain.features_views import FeatureView, parse_views
from services.domain.features_windows import FeatureValue, SourceEvent, aggregate

from . import peers
from .figures import Figure, Runs, compare, measure, number

HOUR_MS = 3_600_000
START_MS = 1_793_491_200_000            # 2026-11-01T00:00Z, a whole hour
TOPIC = "purchases"
WINDOWED = (("count_1h", "count", "int"), ("spend_1h", "sum", "float"), ("mean_1h", "mean", "float"),
            ("max_1h", "max", "float"))
FEATURES = ("last_amount",) + tuple(name for name, _, _ in WINDOWED)


def purchases_view(ttl: str = "6h") -> FeatureView:
    features = [{"name": "last_amount", "aggregate": "last", "field": "amount"}]
    features += [{"name": name, "aggregate": kind, "window": "1h"} | ({} if kind == "count" else {"field": "amount"})
                 for name, kind, _ in WINDOWED]
    [view] = parse_views({"views": [{"name": "purchases", "entity": "customer_id", "event_time": "time",
                                     "source": {"topic": TOPIC}, "ttl": ttl, "owner": "bench",
                                     "features": features}]})
    return view


@dataclass(frozen=True)
class Data:
    events: pd.DataFrame                # customer_id, event_ms (even, unique, ascending), amount (cents, whole)
    labels: pd.DataFrame                # customer_id, event_ms (odd), unique pairs
    customers: tuple[str, ...]
    end_ms: int                         # past the last event


def generate(customers: int, events: int, labels: int, hours: int, seed: int = 0) -> Data:
    """Purchases of `customers` over `hours` from START_MS, and label rows over the same hours and two more."""
    rng = np.random.default_rng(seed)
    names = tuple(f"c{i:06d}" for i in range(customers))
    span_ms = hours * HOUR_MS
    times = START_MS + 2 * np.sort(rng.choice(span_ms // 2, size=events, replace=False))
    frame = pd.DataFrame({"customer_id": np.array(names, dtype=object)[rng.integers(0, customers, events)],
                          "event_ms": times.astype("int64"),
                          "amount": rng.integers(1, 100_000, events).astype("float64")})
    label_ms = START_MS + 2 * rng.integers(0, (span_ms + 2 * HOUR_MS) // 2, labels) + 1
    rows = pd.DataFrame({"customer_id": np.array(names, dtype=object)[rng.integers(0, customers, labels)],
                         "event_ms": label_ms.astype("int64")}).drop_duplicates(ignore_index=True)
    return Data(frame, rows, names, START_MS + span_ms)


def source_events(data: Data) -> list[SourceEvent]:
    return [SourceEvent(entity, int(at), {"customer_id": entity, "time": int(at), "amount": float(amount)}, TOPIC, 0,
                        offset)
            for offset, (entity, at, amount) in enumerate(data.events[["customer_id", "event_ms", "amount"]]
                                                           .itertuples(index=False, name=None))]


def mlbus_values(view: FeatureView, data: Data) -> tuple[FeatureValue, ...]:
    """The view's values from the purchases, by features_windows.aggregate; none may be dropped."""
    result = aggregate(view, source_events(data))
    if result.dropped:
        raise AssertionError(f"aggregate dropped {len(result.dropped)} events: {result.dropped[0].reason}")
    return result.values


def pandas_windows(events: pd.DataFrame) -> pd.DataFrame:
    """Feast's windows source, computed independently: one row per customer and 1-hour window that has an event,
    stamped at its end (event_ms), and one for the quiet hour after it (count 0, sum 0, mean and max missing)."""
    start = events["event_ms"] // HOUR_MS * HOUR_MS
    busy = (events.assign(start=start).groupby(["customer_id", "start"], sort=True)
            .agg(count_1h=("amount", "size"), spend_1h=("amount", "sum"), max_1h=("amount", "max")).reset_index())
    busy["mean_1h"] = busy["spend_1h"] / busy["count_1h"]
    following = busy[["customer_id"]].assign(start=busy["start"] + HOUR_MS)
    held = pd.MultiIndex.from_frame(busy[["customer_id", "start"]])
    quiet = following[~pd.MultiIndex.from_frame(following).isin(held)]
    quiet = quiet.assign(count_1h=0, spend_1h=0.0, max_1h=np.nan, mean_1h=np.nan)
    windows = pd.concat([busy, quiet], ignore_index=True)
    windows["event_ms"] = windows.pop("start") + HOUR_MS
    windows["count_1h"] = windows["count_1h"].astype("int64")
    return windows.sort_values(["customer_id", "event_ms"], ignore_index=True)[
        ["customer_id", "event_ms"] + [name for name, _, _ in WINDOWED]]


Table = Mapping[tuple, object]


def values_table(values: Sequence[FeatureValue]) -> dict[tuple, object]:
    """(feature, entity, event_ms) → value."""
    return {(v.feature, v.entity, v.event_ms): v.value for v in values}


def frames_table(events: pd.DataFrame, windows: pd.DataFrame) -> dict[tuple, object]:
    """The same table from Feast's two source frames."""
    table: dict[tuple, object] = {("last_amount", e, int(t)): a for e, t, a in
                                  events[["customer_id", "event_ms", "amount"]].itertuples(index=False, name=None)}
    for name, _, _ in WINDOWED:
        table.update({(name, e, int(t)): v for e, t, v in
                      windows[["customer_id", "event_ms", name]].itertuples(index=False, name=None)})
    return table


def frame_table(frame: pd.DataFrame, time_column: str | None = "event_ms") -> dict[tuple, object]:
    """(entity, label ms, feature) → value from a frame with customer_id, the label time and one column per
    feature; without a time column, (entity, feature) → value."""
    table = {}
    for record in frame.to_dict("records"):
        key = (record["customer_id"],) + (() if time_column is None else (int(record[time_column]),))
        table.update({key + (name,): record[name] for name in FEATURES if name in record})
    return table


def set_table(built: TrainingSet, view: FeatureView) -> dict[tuple, object]:
    """frame_table of a training set, its columns named by feature (a set's are view__feature)."""
    return frame_table(built.frame.rename(columns={column_name(view.name, name): name for name in FEATURES}))


def same(ours: object, theirs: object) -> bool:
    """Equal values: missing (None, NaN, NA) equals missing, numbers equal as floats, exactly."""
    if _missing(ours) or _missing(theirs):
        return _missing(ours) and _missing(theirs)
    if isinstance(ours, (bool, np.bool_)) or isinstance(theirs, (bool, np.bool_)):
        return bool(ours) == bool(theirs) and type(ours) is type(theirs)
    if isinstance(ours, (int, float, np.number)) and isinstance(theirs, (int, float, np.number)):
        return float(ours) == float(theirs)
    return ours == theirs


def _missing(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, (float, np.floating)) and math.isnan(value))


def differences(ours: Table, theirs: Table, peer: str = "Feast", limit: int = 5) -> list[str]:
    """Up to `limit` keys whose values differ or that only one side has, each said, and the count of all."""
    found = [f"{key}: mlbus {ours.get(key, '(absent)')!r}, {peer} {theirs.get(key, '(absent)')!r}"
             for key in sorted(set(ours) | set(theirs), key=repr)
             if key not in ours or key not in theirs or not same(ours[key], theirs[key])]
    return found[:limit] + ([f"… {len(found)} differences in all"] if len(found) > limit else [])


def require_same(what: str, ours: Table, theirs: Table, peer: str = "Feast") -> None:
    """A difference fails the benchmark: it is not a figure."""
    problems = differences(ours, theirs, peer)
    if problems:
        raise AssertionError(f"{what}: the values differ: " + "; ".join(problems))


def feast_files(folder: Path, view: FeatureView, data: Data, windows: pd.DataFrame, lookups: list[str]) -> None:
    """What the Feast peer reads: its two sources, the labels and its settings."""
    def stamped(frame: pd.DataFrame) -> pd.DataFrame:
        at = pd.to_datetime(frame["event_ms"], unit="ms", utc=True).astype("datetime64[ms, UTC]")
        return frame.drop(columns="event_ms").assign(event_timestamp=at)

    folder.mkdir(parents=True, exist_ok=True)
    stamped(data.events.rename(columns={"amount": "last_amount"})).to_parquet(folder / "events.parquet", index=False)
    stamped(windows).to_parquet(folder / "windows.parquet", index=False)
    stamped(data.labels).to_parquet(folder / "labels.parquet", index=False)
    (folder / "config.json").write_text(json.dumps({
        "ttl_ms": view.ttl_ms, "windowed": [[name, kind] for name, _, kind in WINDOWED],
        "start_ms": START_MS - 24 * HOUR_MS, "end_ms": data.end_ms + 24 * HOUR_MS,
        "lookup_entities": lookups, "entities": list(data.customers)}))


def feast_table(frame: pd.DataFrame) -> dict[tuple, object]:
    if "event_timestamp" in frame:
        at = pd.to_datetime(frame["event_timestamp"], utc=True)
        frame = frame.assign(event_ms=(at - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1))
    return frame_table(frame, "event_ms" if "event_timestamp" in frame else None)


def feast_join_table(frames: Sequence[pd.DataFrame], labels: pd.DataFrame) -> tuple[dict[tuple, object], int]:
    """Feast's join (one frame per get_historical_features call) as one table, and how many label rows the frames
    left out in all. Its file offline store leaves out a label row when a view holds rows of the entity but none
    within the TTL before the label: that view's values are missing (None) for it, as mlbus says (with a reason);
    asked for two views at once, it loses the row for both."""
    table: dict[tuple, object] = {}
    everyone = {(e, int(t)) for e, t in labels[["customer_id", "event_ms"]].itertuples(index=False, name=None)}
    left_out = 0
    for frame in frames:
        found = feast_table(frame)
        names = [name for name in FEATURES if name in frame.columns]
        absent = everyone - {key[:2] for key in found}
        left_out += len(absent)
        table.update({key: value for key, value in found.items() if key[2] in names})
        table.update({(e, t, name): None for e, t in absent for name in names})
    return table, left_out


def ratio(ours: Runs, theirs: Runs) -> str:
    return f"{ours.median / theirs.median:.3g}×"


def p99_ms(latencies_ns: list[int]) -> float:
    return float(np.percentile(latencies_ns, 99)) / 1e6


def benchmarks(workdir: Path, quick: bool, counted: int) -> list[Figure]:
    customers, events, labels, hours, lookups = ((300, 3_000, 2_000, 24, 300) if quick
                                                 else (5_000, 60_000, 30_000, 72, 2_000))
    view = purchases_view()
    data = generate(customers, events, labels, hours)
    values = mlbus_values(view, data)
    windows = pandas_windows(data.events)
    require_same("mlbus's windows vs pandas's (Feast's source)", values_table(values),
                 frames_table(data.events, windows), "pandas")
    rng = np.random.default_rng(1)
    entities = [data.customers[i] for i in rng.integers(0, customers, lookups)]
    workdir.mkdir(parents=True, exist_ok=True)
    feast_folder = workdir / "feast"
    feast_files(feast_folder, view, data, windows, entities)
    peers.ensure(venv=peers.FEAST_VENV)
    answer = peers.run("feast_features.py", str(feast_folder), str(counted + 1), venv=peers.FEAST_VENV)

    stores: list[tuple[OnlineStore, OfflineStore]] = []
    split: dict[str, list[float]] = {"put": [], "write": [], "snapshot": [], "join": [], "digest": []}

    def materialise() -> float:
        """Into fresh stores each run, as Feast's."""
        online = OnlineStore(f"sqlite:///{workdir / f'online{len(stores)}.db'}")
        offline = OfflineStore(workdir / f"offline{len(stores)}")
        started = time.perf_counter()
        online.put(values)
        put = time.perf_counter()
        offline.write(values, "part-0")
        done = time.perf_counter()
        split["put"].append(put - started)
        split["write"].append(done - put)
        stores.append((online, offline))
        return len(values) / (done - started)

    for stale in [*workdir.glob("online*.db"), *workdir.glob("offline*")]:
        shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    materialised = measure(materialise, counted)
    online, offline = stores[-1]
    medians: list[float] = []

    def lookup_p99() -> float:
        latencies = []
        for entity in entities:
            started = time.perf_counter_ns()
            online.get(view.name, view.version, entity)
            latencies.append(time.perf_counter_ns() - started)
        medians.append(float(np.percentile(latencies, 50)) / 1e6)
        return p99_ms(latencies)

    lookup_p99()                                    # warm-up; then runs alternate with Feast's, on the same machine
    ours_p99, feast_lookups = [], []
    for _ in range(counted):
        ours_p99.append(lookup_p99())
        feast_lookups.append(peers.run("feast_features.py", str(feast_folder), "lookups", str(answer["last_run"]),
                                       venv=peers.FEAST_VENV))
    looked = Runs(tuple(ours_p99))
    ours_online = {(entity, v.feature): v.value for entity in data.customers
                   for v in online.get(view.name, view.version, entity)}
    ours_online |= {(entity, name): None for entity in data.customers for name in FEATURES
                    if (entity, name) not in ours_online}
    require_same("online values after materialisation", ours_online,
                 feast_table(pd.read_parquet(feast_folder / "online.parquet")))

    settings = FeatureSettings((view.name,), "customer_id", "event_ms")
    built: dict[str, TrainingSet] = {}

    def join() -> float:
        """The trainer's path (TrainerHandler._join_features): the views' values read as columns up to the offsets
        the views reached, and the label rows joined with them."""
        started = time.perf_counter()
        history, _ = offline.snapshot([view])
        read = time.perf_counter()
        built["set"] = training_set(data.labels, settings, [view], history)
        done = time.perf_counter()
        snapshot_digest(built["set"].used)
        split["snapshot"].append(read - started)
        split["join"].append(done - read)
        split["digest"].append(time.perf_counter() - done)
        return len(data.labels) / (done - started)

    joins = measure(join, counted)
    ours_joined = set_table(built["set"], view)
    theirs, left_out = feast_join_table([pd.read_parquet(feast_folder / f"joined_{name}.parquet")
                                         for name in ("purchases_last", "purchases_1h")], data.labels)
    require_same("point-in-time join", ours_joined, theirs)
    both, both_left_out = feast_join_table([pd.read_parquet(feast_folder / "joined_both.parquet")], data.labels)
    lost = sum(1 for key, value in ours_joined.items() if not same(value, both.get(key)))
    spent = {name: float(np.median(times[-counted:])) for name, times in split.items()}
    theirs_join = Runs(tuple(len(data.labels) / s for s in answer["join_s"][1:]))
    single = Runs(tuple(len(data.labels) / s for s in answer["join_single_s"][1:]))
    feast_rows = len(data.events) + len(windows)
    label = f"Feast {answer['version']}"
    size = (f"{customers:,} customers, {len(data.events):,} purchases over {hours} h: {len(values):,} feature "
            f"values ({feast_rows:,} Feast source rows)")
    windows_note = ("Feast computes no windows: the benchmark precomputes them with pandas into Feast's source "
                    "Parquet (untimed), mlbus with features_windows.aggregate (untimed); the two are required equal")
    return [
        compare(f"features online lookup p99, 1 entity × {len(FEATURES)} features vs Feast", looked, "ms", label,
                Runs(tuple(run["p99_ms"] for run in feast_lookups)), higher_is_better=False, goal_ratio=5,
                goal="≥ 5× Feast, equal values",
                notes=f"{lookups:,} lookups a run, runs of the two alternating, SQLite files on both sides; mlbus "
                      f"OnlineStore.get (p50 {float(np.median(medians[-counted:])):.3g} ms), Feast "
                      f"get_online_features(...).to_dict() over its two views (p50 "
                      f"{float(np.median([run['p50_ms'] for run in feast_lookups])):.3g} ms); values equal for all "
                      f"{customers:,} customers; {size}"),
        compare("features materialisation vs Feast", materialised, "values/s", label,
                Runs(tuple(len(values) / s for s in answer["materialize_s"][1:])),
                notes=f"mlbus OnlineStore.put ({spent['put']:.2f} s) + OfflineStore.write ({spent['write']:.2f} s) "
                      f"of every value (online: the newest per feature and entity; offline: all, with their "
                      f"offsets) into fresh stores each run; Feast materialize of its source Parquet into a fresh "
                      f"SQLite online store (the newest row per entity and view; it writes nothing offline; "
                      f"{float(np.median(answer['materialize_s'][1:])):.2f} s); {windows_note}"),
        compare(f"features point-in-time join, {len(data.labels):,} labels vs Feast", joins, "rows/s", label,
                theirs_join, goal_ratio=3, goal="≥ 3× Feast, equal values",
                notes=f"mlbus's trainer path: OfflineStore.snapshot ({spent['snapshot']:.3f} s: the Parquet parts' "
                      f"typed columns, the offsets reached) + training_set ({spent['join']:.3f} s: "
                      f"features_join on columns, strictly before, TTL {view.ttl_ms // HOUR_MS} h); after it, "
                      f"untimed, the snapshot digest of the {len(built['set'].used):,} values used that the trainer "
                      f"records ({spent['digest']:.2f} s); Feast get_historical_features(...).to_df()"
                      f" (file offline store, dask), one view at a time; every label's {len(FEATURES)} values "
                      f"equal (Feast's answers leave out {left_out:,} label rows of a view that has no value within "
                      f"the TTL: missing, as mlbus says). Asked both views in one call ({number(single.median)} "
                      f"rows/s, {ratio(joins, single)} for mlbus), Feast leaves out {both_left_out:,} of "
                      f"{len(data.labels):,} rows and so loses {lost:,} values the other view had"),
    ]
