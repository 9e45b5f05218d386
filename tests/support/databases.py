"""The registry's tables read back through SQLAlchemy, the same way from SQLite and PostgreSQL, and a local
PostgreSQL server for the session (scripts/postgres)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlmodel import Session, create_engine, select

from services.bus.settings import PROJECT_ROOT
from services.registry.adapters import TABLES

POSTGRES_SCRIPT = PROJECT_ROOT / "scripts" / "postgres"


def table_rows(url: str) -> dict[str, list[dict]]:
    """Every row of the registry's tables, as dicts in a stable order (types as the ORM gives them, so a
    SQLite and a PostgreSQL copy of the same rows compare equal)."""
    engine = create_engine(url)
    try:
        with Session(engine) as session:
            return {table.__tablename__: sorted((row.model_dump() for row in session.exec(select(table))), key=repr)
                    for table in TABLES}
    finally:
        engine.dispose()


def start_postgres(state: Path) -> str:
    """A fresh local server in `state`; its admin URL."""
    started = subprocess.run([sys.executable, str(POSTGRES_SCRIPT), "start", "--dir", str(state), "--fresh"],
                             stdout=subprocess.PIPE, text=True)
    assert started.returncode == 0, f"local PostgreSQL did not start:\n{started.stdout}"
    return started.stdout.strip().splitlines()[-1].removeprefix("url=")


def stop_postgres(state: Path) -> None:
    subprocess.run([sys.executable, str(POSTGRES_SCRIPT), "stop", "--dir", str(state)], stdout=subprocess.DEVNULL)


def create_database(server_url: str, name: str) -> str:
    """A new empty database on the server; its URL."""
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def drop_database(server_url: str, name: str) -> None:
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
