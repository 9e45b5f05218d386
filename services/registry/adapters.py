"""The registry's edges: its database (sqlmodel; SQLite by default, any SQLAlchemy URL) and its history.

The database is a projection of events, never the source of truth: at start the registry rebuilds its
inventory from the topics and rewrites every row, so rows from an aborted transaction cannot linger; then
each message writes only the rows it changed. Alembic owns the tables' shape (migrations/versions)."""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Index, delete, inspect
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Field, Session, SQLModel, create_engine

from services.bus import Bus
from services.bus.settings import ConfigError
from services.adapters import audit_records, decoded
from services.bus.identity import ACT_SIGNERS, TRAINED_SIGNER, ActVerifier, signed_only
from services.bus.projections.identities import IDENTITY_RECORDS, Identities
from services.bus.projections.inventory import INVENTORY_RECORDS, Inventory, ModelVersion, inventory_from
from services.bus.replay import fold_history
from services.bus.signing import verify_act



class ModelVersionRow(SQLModel, table=True):
    __tablename__ = "model_versions"
    model: str = Field(primary_key=True)
    version: int = Field(primary_key=True)
    status: str
    run_id: str
    estimator: str
    metric: str
    metrics_json: str
    artifact_uri: str
    artifact_sha256: str
    requested_by: str
    trained_at: datetime
    spec_sha256: str = ""           # lineage (revision 0002): the spec, the commit and the data batches it was
    git_commit: str | None = None   # trained from, so SQL can answer "which versions saw batch X"
    batches_json: str = "[]"


class LifecycleRow(SQLModel, table=True):
    __tablename__ = "lifecycle_events"
    __table_args__ = (Index("ix_lifecycle_events_model_version", "model", "version"),)
    event_id: str = Field(primary_key=True)
    model: str = Field(index=True)
    version: int
    kind: str
    alias: str | None = None
    actor: str
    reason: str
    policy_version: int | None = None
    evidence_json: str
    cause_id: str
    occurred_at: datetime


class AliasRow(SQLModel, table=True):
    __tablename__ = "aliases"
    model: str = Field(primary_key=True)
    alias: str = Field(primary_key=True)
    version: int


class PolicyRow(SQLModel, table=True):
    __tablename__ = "policies"
    model: str = Field(primary_key=True)
    policy_version: int
    policy_json: str


TABLES = (ModelVersionRow, LifecycleRow, AliasRow, PolicyRow)
MIGRATIONS = Path(__file__).parent / "migrations"
FIRST_REVISION = "0001"          # the tables as create_all made them before migrations were versioned


def migrations_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def migrate(engine: Engine, revision: str = "head") -> None:
    """Upgrade the tables to `revision` (Alembic). A database made before migrations existed — tables but no
    alembic_version — is first stamped as the revision it is, so upgrading adds to it instead of failing."""
    with engine.begin() as connection:
        config = migrations_config(connection)
        tables = inspect(connection).get_table_names()
        if "model_versions" in tables and "alembic_version" not in tables:
            command.stamp(config, FIRST_REVISION)
        command.upgrade(config, revision)


class RegistryDatabase:
    def __init__(self, url: str):
        try:
            if url.startswith("sqlite:///"):
                Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            self.engine = create_engine(url)
            migrate(self.engine)
        except (OSError, SQLAlchemyError) as error:
            where = make_url(url).render_as_string(hide_password=True) if "://" in url else url
            raise ConfigError(f"registry database {where} (MLBUS_DATABASE_URL) is unreachable: {error}") from error

    def write(self, changed: list[SQLModel]) -> None:
        """Insert or update these rows, in one transaction."""
        with Session(self.engine) as session:
            for row in changed:
                session.merge(row)
            session.commit()

    def save(self, inventory: Inventory, models: set[str] | None = None) -> None:
        """Rewrite every row of these models (all models when None) from the inventory: what the registry did
        per message before it wrote only what changed (kept for the benchmark's comparison)."""
        self.write(rows(inventory, models))

    def replace_all(self, inventory: Inventory) -> None:
        """Every table emptied and written again from the inventory, in one transaction (readers never see the
        tables empty; inserts, since nothing is left to merge with)."""
        with Session(self.engine) as session:
            for table in TABLES:
                session.exec(delete(table))
            session.add_all(rows(inventory, None))
            session.commit()


def version_row(entry: ModelVersion) -> ModelVersionRow:
    t = entry.trained
    return ModelVersionRow(model=entry.model, version=entry.version, status=entry.status, run_id=t["run_id"],
                           estimator=t["estimator"], metric=t["metric"], metrics_json=json.dumps(t["metrics"]),
                           artifact_uri=t["artifact_uri"], artifact_sha256=t["artifact_sha256"],
                           requested_by=t["requested_by"], trained_at=t["trained_at"],
                           spec_sha256=t.get("spec_sha256", ""), git_commit=t.get("git_commit"),
                           batches_json=json.dumps(t.get("batches", []), default=str))


def lifecycle_row(event: dict) -> LifecycleRow:
    return LifecycleRow(**{k: event[k] for k in LifecycleRow.model_fields})


def alias_row(inventory: Inventory, model: str, alias: str) -> AliasRow:
    return AliasRow(model=model, alias=alias, version=inventory.aliases[model][alias])


def policy_row(policy: dict) -> PolicyRow:
    return PolicyRow(model=policy["model"], policy_version=policy["policy_version"],
                     policy_json=json.dumps(policy, default=str, sort_keys=True))


def rows(inventory: Inventory, models: set[str] | None) -> list[SQLModel]:
    """Every row of these models (all when None): what a rebuild writes."""
    def wanted(model: str) -> bool:
        return models is None or model in models

    found: list[SQLModel] = []
    for (model, _), entry in inventory.versions.items():
        if wanted(model):
            found += [version_row(entry), *map(lifecycle_row, entry.history)]
    found += [alias_row(inventory, model, alias) for model, aliases in inventory.aliases.items() if wanted(model)
              for alias in aliases]
    found += [policy_row(policy) for model, policy in inventory.policies.items() if wanted(model)]
    return found


def touched(inventory: Inventory, folded: list[tuple[str, dict]]) -> list[SQLModel]:
    """The rows that folding these events into the inventory changed — what the registry writes per message
    instead of rewriting the model's history: a new version, a new policy, or a decision with the status and
    alias it set. Each row once, as it is now."""
    changed: dict[tuple, SQLModel] = {}
    for record, value in folded:
        if record == "mlbus.ModelTrained":
            rows_now = [version_row(inventory.version(value["model"], value["version"]))]
        elif record == "mlbus.PromotionPolicyDefined":
            rows_now = [policy_row(inventory.policy(value["model"]))]
        elif record == "mlbus.ModelLifecycle":
            rows_now = [lifecycle_row(value), version_row(inventory.version(value["model"], value["version"]))]
            if value["kind"] == "promoted" and value["alias"]:
                rows_now.append(alias_row(inventory, value["model"], value["alias"]))
        else:
            rows_now = []
        changed.update({primary_key(row): row for row in rows_now})
    return list(changed.values())


def primary_key(row: SQLModel) -> tuple:
    return (type(row).__name__, *(getattr(row, column.name) for column in row.__table__.primary_key))


def rebuild_inventory(bus: Bus, verify: ActVerifier) -> Inventory:
    """The inventory from the topics: policies and trained versions first, then the decisions in order. As
    when they arrived, only policies an admin signed and versions the trainer signed count."""
    inventory = Inventory()
    fold_history(bus, INVENTORY_RECORDS, signed_only(inventory.apply, verify, {**ACT_SIGNERS, **TRAINED_SIGNER}))
    return inventory


def inventory_from_audit(bus: Bus) -> Inventory:
    """The inventory from audit.log alone: what `mlbus audit rebuild-registry` writes. Policies count only if
    an admin signed them, checked against the identities the log also holds (each key's record carries its
    whole validity, so the last state of every key judges any moment) at the broker's time of the act."""
    events = [e for e in decoded(bus, audit_records(bus, INVENTORY_RECORDS + IDENTITY_RECORDS)) if e.record]
    identities = Identities()
    for event in events:
        identities.apply(event.record, event.value, event.entry["source_timestamp"])
    return inventory_from([(e.record, e.value) for e in events if e.record != "mlbus.PromotionPolicyDefined" or
                           verify_act(identities, e.record, e.value, e.entry["source_timestamp"], ("admin",)).signer])
