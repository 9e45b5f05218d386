"""The registry's database writes: messages/s through the registry's handler for a model with a long history,
writing only the rows each message changed (today's registry) beside rewriting the model's every row per
message (the registry before revision 0002), on SQLite and on a local PostgreSQL server (scripts/postgres),
each run on a fresh database. No broker: the handler and its database, as the service runs them."""
from __future__ import annotations

import shutil
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from services.bus.projections.inventory import Inventory
from services.registry.adapters import RegistryDatabase
from services.registry.handlers import Registry
from tests.support.databases import create_database, drop_database, start_postgres, stop_postgres
from tests.support.handlers import received, verified_as

from .figures import Figure, Runs, compare

NOW = datetime(2026, 12, 2, tzinfo=timezone.utc)
MODEL = "m"


class FullRewrite:
    """The registry's database port as it was: every message rewrites all of the model's rows."""

    def __init__(self, database: RegistryDatabase, inventory: Inventory):
        self.database, self.inventory = database, inventory

    def write(self, rows: list) -> None:
        self.database.save(self.inventory, {MODEL})


def messages(first: int, count: int) -> list:
    """Alternately a new version trained and its deployment as champion (which retires the one before)."""
    found = []
    for version in range(first, first + count):
        found.append(received("mlbus.ModelTrained", {
            "model": MODEL, "version": version, "run_id": f"r{version}", "estimator": "logistic_regression",
            "metric": "roc_auc", "metrics": {"roc_auc": 0.9}, "artifact_uri": f"file:///a/{version}",
            "artifact_sha256": "a" * 64, "requested_by": "cli:carl", "trained_at": NOW, "batches": [f"b{version}"]}))
        found.append(received("mlbus.DeploymentChanged", {
            "deployment_id": f"d{version}", "model": MODEL, "phase": "completed", "strategy": "direct",
            "actor": "deployer", "routes": [{"version": version, "variant": "champion", "served": True,
                                             "share": 1.0}]}))
    return found


class Nowhere:
    def write(self, rows: list) -> None:
        pass


def registry(inventory: Inventory, database) -> Registry:
    return Registry(inventory, database, verified_as("ana"),
                    clock=lambda: NOW)


def rate(url: str, history: int, added: int, full_rewrite: bool) -> float:
    """messages/s for `added` versions' messages after `history` versions are in the database already."""
    past = registry(Inventory(), Nowhere())
    for message in messages(1, history):
        past(message)
    database = RegistryDatabase(url)
    database.replace_all(past.inventory)
    now = registry(past.inventory, FullRewrite(database, past.inventory) if full_rewrite else database)
    timed = messages(history + 1, added)
    started = time.perf_counter()
    for message in timed:
        now(message)
    elapsed = time.perf_counter() - started
    database.engine.dispose()
    return len(timed) / elapsed


def pair(fresh_url: Callable[[], str], history: int, added: int, counted: int) -> tuple[Runs, Runs]:
    runs = [(rate(fresh_url(), history, added, False), rate(fresh_url(), history, added, True))
            for _ in range(counted + 1)][1:]                                   # the first pair warms up
    return Runs(tuple(a for a, _ in runs)), Runs(tuple(b for _, b in runs))


def figure(database: str, runs: tuple[Runs, Runs], history: int) -> Figure:
    incremental, rewrite = runs
    return compare(f"registry writes, {database}", incremental, "messages/s",
                   "full rewrite of the model per message", rewrite, goal_ratio=1.0, goal="faster than rewrite",
                   notes=f"the registry's handler on a model with {history} versions and {3 * history} decisions "
                         "already stored; each message a new version or its deployment as champion")


def benchmarks(workdir: Path, quick: bool, counted: int) -> list[Figure]:
    history, added = (50, 10) if quick else (200, 30)
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    sqlite = figure("SQLite", pair(lambda: f"sqlite:///{workdir / uuid.uuid4().hex}.db", history, added, counted),
                    history)
    server = start_postgres(workdir / "postgres")
    names: list[str] = []

    def fresh_postgres() -> str:
        names.append(f"b{uuid.uuid4().hex[:12]}")
        return create_database(server, names[-1])

    try:
        postgres = figure("PostgreSQL", pair(fresh_postgres, history, added, counted), history)
    finally:
        for name in names:
            drop_database(server, name)
        stop_postgres(workdir / "postgres")
    return [sqlite, postgres]
