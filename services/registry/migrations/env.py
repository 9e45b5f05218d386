"""Alembic's entry for the registry's tables. The registry runs migrations itself at start (adapters.migrate),
handing over its connection; `alembic -c services/registry/migrations/alembic.ini upgrade head` does the same
from a shell against MLBUS_DATABASE_URL."""
from alembic import context
from sqlalchemy import create_engine

from services.bus.settings import Settings


def run(connection) -> None:
    context.configure(connection=connection, render_as_batch=True)    # batch: SQLite alters by copying tables
    with context.begin_transaction():
        context.run_migrations()


if context.config.attributes.get("connection") is not None:
    run(context.config.attributes["connection"])
else:
    with create_engine(Settings.from_env().storage.database_url).begin() as connection:
        run(connection)
