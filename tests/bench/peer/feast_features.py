"""Peer: Feast (SQLite online store, file offline store, a local registry file) on the files the features benchmark
wrote to FOLDER: events.parquet (the last value: customer_id, event_timestamp, last_amount), windows.parquet (the
1-hour windows, precomputed by the benchmark: Feast computes no windows), labels.parquet (customer_id,
event_timestamp) and config.json.

`feast_features.py FOLDER RUNS`: RUNS materialisations (each into a fresh store) and joins, the first of each the
warm-up; writes online.parquet and joined_<view>.parquet (the values, compared by the benchmark) and prints
{"version", "materialize_s", "last_run", "join_s", "join_single_s"}. The join is asked one view at a time (join_s;
what the figure uses): asked both views at once (join_single_s, joined_both), the file offline store leaves out
every label row for which one view has rows of the entity but none within its TTL before the label, and with it the
other view's values.
`feast_features.py FOLDER lookups RUN`: a warm-up pass and one counted pass of single-entity lookups on RUN's store;
prints {"p99_ms", "p50_ms"} (the benchmark alternates these with its own runs, so both see the same machine)."""
import json
import os
import sys
import time
import warnings
from datetime import timedelta
from pathlib import Path

os.environ["FEAST_USAGE"] = "False"
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import feast  # noqa: E402
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, RepoConfig, ValueType  # noqa: E402
from feast.types import Float64, Int64  # noqa: E402

folder, mode = Path(sys.argv[1]), sys.argv[2]
config = json.loads((folder / "config.json").read_text())
WINDOWED = config["windowed"]           # [[name, "int" | "float"], ...]
ttl = timedelta(milliseconds=config["ttl_ms"])
customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.STRING)
last_view = FeatureView(
    name="purchases_last", entities=[customer], ttl=ttl, online=True,
    schema=[Field(name="last_amount", dtype=Float64)],
    source=FileSource(path=str(folder / "events.parquet"), timestamp_field="event_timestamp"))
window_view = FeatureView(
    name="purchases_1h", entities=[customer], ttl=ttl, online=True,
    schema=[Field(name=name, dtype=Int64 if kind == "int" else Float64) for name, kind in WINDOWED],
    source=FileSource(path=str(folder / "windows.parquet"), timestamp_field="event_timestamp"))
FEATURES = ["purchases_last:last_amount"] + [f"purchases_1h:{name}" for name, _ in WINDOWED]
start = pd.Timestamp(config["start_ms"], unit="ms", tz="UTC").to_pydatetime()
end = pd.Timestamp(config["end_ms"], unit="ms", tz="UTC").to_pydatetime()


def store(run: int, apply: bool = True) -> FeatureStore:
    """A fresh registry and online store (each materialisation starts empty, as mlbus's does), or run's as it is."""
    repo = folder / f"repo{run}"
    repo.mkdir(exist_ok=True)
    found = FeatureStore(config=RepoConfig(
        project="bench", provider="local", registry=str(repo / "registry.db"), repo_path=str(repo),
        online_store={"type": "sqlite", "path": str(repo / "online.db")}, offline_store={"type": "file"},
        entity_key_serialization_version=3))
    if apply:
        found.apply([customer, last_view, window_view])
    return found


def lookups(feature_store: FeatureStore, entities: list[str]) -> list[int]:
    latencies = []
    for entity in entities:
        started = time.perf_counter_ns()
        feature_store.get_online_features(features=FEATURES, entity_rows=[{"customer_id": entity}]).to_dict()
        latencies.append(time.perf_counter_ns() - started)
    return latencies


if mode == "lookups":       # one counted run of lookups on the last run's store, after a warm-up pass
    feature_store = store(int(sys.argv[3]), apply=False)
    lookups(feature_store, config["lookup_entities"])
    latencies = lookups(feature_store, config["lookup_entities"])
    print(json.dumps({"p99_ms": float(np.percentile(latencies, 99)) / 1e6,
                      "p50_ms": float(np.percentile(latencies, 50)) / 1e6}))
    sys.exit(0)
runs = int(mode)
materialize_s = []
for run in range(runs):
    feature_store = store(run)
    started = time.perf_counter()
    feature_store.materialize(start, end)
    materialize_s.append(time.perf_counter() - started)

everyone = config["entities"]
online = feature_store.get_online_features(features=FEATURES,
                                           entity_rows=[{"customer_id": e} for e in everyone]).to_dict()
pd.DataFrame(online).to_parquet(folder / "online.parquet", index=False)

labels = pd.read_parquet(folder / "labels.parquet")
join_s, single_s, joined = [], [], {}
for _ in range(runs):
    started = time.perf_counter()
    for view in ("purchases_last", "purchases_1h"):
        wanted = [f for f in FEATURES if f.startswith(f"{view}:")]
        joined[view] = feature_store.get_historical_features(entity_df=labels, features=wanted).to_df()
    join_s.append(time.perf_counter() - started)
    started = time.perf_counter()
    joined["both"] = feature_store.get_historical_features(entity_df=labels, features=FEATURES).to_df()
    single_s.append(time.perf_counter() - started)
for name, frame in joined.items():
    frame.to_parquet(folder / f"joined_{name}.parquet", index=False)
print(json.dumps({"version": feast.__version__, "materialize_s": materialize_s, "last_run": runs - 1,
                  "join_s": join_s, "join_single_s": single_s}))
