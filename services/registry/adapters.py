"""The registry's edges: its database (sqlmodel; SQLite by default, any SQLAlchemy URL) and its history.

The database is a projection of events, never the source of truth: at start the registry rebuilds its
inventory from the topics and rewrites every row, so rows from an aborted transaction cannot linger."""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from sqlalchemy import delete
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Field, Session, SQLModel, create_engine

from services.bus import Bus
from services.bus.settings import ConfigError
from services.domain import audit_records, decoded
from services.bus.identity import ActVerifier
from services.bus.projections.identities import IDENTITY_RECORDS, Identities
from services.bus.projections.inventory import INVENTORY_RECORDS, Inventory, inventory_from
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


class LifecycleRow(SQLModel, table=True):
    __tablename__ = "lifecycle_events"
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


class RegistryDatabase:
    def __init__(self, url: str):
        try:
            if url.startswith("sqlite:///"):
                Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            self.engine = create_engine(url)
            SQLModel.metadata.create_all(self.engine, tables=[t.__table__ for t in TABLES])
        except (OSError, SQLAlchemyError) as error:
            where = make_url(url).render_as_string(hide_password=True) if "://" in url else url
            raise ConfigError(f"registry database {where} (MLBUS_DATABASE_URL) is unreachable: {error}") from error

    def save(self, inventory: Inventory, models: set[str] | None = None) -> None:
        """Rewrite the rows of these models (all models when None) from the inventory."""
        with Session(self.engine) as session:
            for row in rows(inventory, models):
                session.merge(row)
            session.commit()

    def replace_all(self, inventory: Inventory) -> None:
        with Session(self.engine) as session:
            for table in TABLES:
                session.exec(delete(table))
            session.commit()
        self.save(inventory)


def rows(inventory: Inventory, models: set[str] | None) -> list[SQLModel]:
    wanted = (lambda model: models is None or model in models)
    found: list[SQLModel] = []
    for (model, version), entry in inventory.versions.items():
        if not wanted(model):
            continue
        t = entry.trained
        found.append(ModelVersionRow(model=model, version=version, status=entry.status, run_id=t["run_id"],
                                     estimator=t["estimator"], metric=t["metric"], metrics_json=json.dumps(t["metrics"]),
                                     artifact_uri=t["artifact_uri"], artifact_sha256=t["artifact_sha256"],
                                     requested_by=t["requested_by"], trained_at=t["trained_at"]))
        found += [LifecycleRow(**{k: e[k] for k in LifecycleRow.model_fields}) for e in entry.history]
    for model, aliases in inventory.aliases.items():
        found += [AliasRow(model=model, alias=a, version=v) for a, v in aliases.items() if wanted(model)]
    for model, policy in inventory.policies.items():
        if wanted(model):
            found.append(PolicyRow(model=model, policy_version=policy["policy_version"],
                                   policy_json=json.dumps(policy, default=str, sort_keys=True)))
    return found


def rebuild_inventory(bus: Bus, verify: ActVerifier) -> Inventory:
    """The inventory from the topics: policies and trained versions first, then the decisions in order. As
    when they arrived, only policies an admin signed count."""
    inventory = Inventory()
    fold_history(bus, INVENTORY_RECORDS, inventory.apply,
                 keep=lambda r: r.record != "mlbus.PromotionPolicyDefined" or verify(r, ("admin",)).refusal is None)
    return inventory


def inventory_from_audit(bus: Bus) -> Inventory:
    """The inventory from audit.log alone: what `mlbus audit rebuild-registry` writes. Policies count only if
    an admin signed them, checked against the identities the log also holds (each key's record carries its
    whole validity, so the last state of every key judges any moment) at the broker's time of the act."""
    events = [e for e in decoded(bus, audit_records(bus, INVENTORY_RECORDS + IDENTITY_RECORDS)) if e.record]
    identities = Identities()
    for event in events:
        identities.apply(event.record, event.value)
    return inventory_from([(e.record, e.value) for e in events if e.record != "mlbus.PromotionPolicyDefined" or
                           verify_act(identities, e.record, e.value, e.entry["source_timestamp"], ("admin",)).signer])
