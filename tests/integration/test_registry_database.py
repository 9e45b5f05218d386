"""The registry's database on SQLite and on a real PostgreSQL server: Alembic makes exactly the tables the
code declares, upgrades a database made before migrations were versioned without losing its rows, and the
per-message incremental writes leave the same rows as a full rebuild."""
from __future__ import annotations

from datetime import datetime, timezone

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlmodel import SQLModel, create_engine

from services.bus.projections.inventory import Inventory
from services.registry.adapters import FIRST_REVISION, RegistryDatabase, migrate
from services.registry.handlers import Registry
from tests.support.databases import table_rows
from tests.support.handlers import received, verified_as

NOW = datetime(2026, 12, 2, tzinfo=timezone.utc)


def trained(version: int) -> dict:
    return {"model": "m", "version": version, "run_id": f"r{version}", "estimator": "logistic_regression",
            "metric": "roc_auc", "metrics": {"roc_auc": 0.8 + version / 100}, "artifact_uri": f"file:///a/{version}",
            "artifact_sha256": "a" * 64, "requested_by": "cli:carl", "trained_at": NOW,
            "spec_sha256": "b" * 64, "git_commit": None, "batches": [f"batch-{version}"]}


def deployed(version: int) -> dict:
    return {"deployment_id": f"d{version}", "model": "m", "phase": "completed", "strategy": "direct",
            "actor": "deployer", "routes": [{"version": version, "variant": "champion", "served": True, "share": 1.0}]}


def test_a_fresh_database_has_exactly_the_declared_tables_at_the_newest_revision(database_url):
    RegistryDatabase(database_url).engine.dispose()
    engine = create_engine(database_url)
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), SQLModel.metadata) == []
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0002"
    engine.dispose()


def test_a_database_from_before_migrations_is_upgraded_and_keeps_its_rows(database_url):
    engine = create_engine(database_url)
    migrate(engine, FIRST_REVISION)                    # the tables as create_all made them, rows in them
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE alembic_version"))
        connection.execute(text(
            "INSERT INTO model_versions VALUES ('old', 1, 'approved', 'r1', 'lr', 'roc_auc', '{}', 'file:///a', "
            "'aa', 'cli:carl', '2026-11-01 10:00:00')"))
    engine.dispose()

    database = RegistryDatabase(database_url)
    [row] = table_rows(database_url)["model_versions"]
    assert (row["model"], row["status"], row["spec_sha256"], row["batches_json"]) == ("old", "approved", "", "[]")
    indexes = {index["name"] for index in inspect(database.engine).get_indexes("lifecycle_events")}
    assert "ix_lifecycle_events_model_version" in indexes
    database.engine.dispose()


def test_incremental_writes_leave_the_same_rows_as_a_full_rebuild(database_url, tmp_path):
    live = RegistryDatabase(database_url)
    registry = Registry(Inventory(), live, verified_as("ana"),
                        clock=lambda: NOW)
    for version in range(1, 6):                        # each better than the last: each deployed as champion
        registry(received("mlbus.ModelTrained", trained(version), offset=version))
        registry(received("mlbus.DeploymentChanged", deployed(version), offset=version))
    incremental = table_rows(database_url)
    live.engine.dispose()

    rebuilt_url = f"sqlite:///{tmp_path / 'rebuilt.db'}"
    RegistryDatabase(rebuilt_url).replace_all(registry.inventory)
    assert table_rows(rebuilt_url) == incremental
    assert [r["version"] for r in incremental["aliases"] if r["alias"] == "champion"] == [5]
    assert {r["kind"] for r in incremental["lifecycle_events"]} >= {"registered", "promoted", "retired"}
    assert incremental["model_versions"][0]["batches_json"]
