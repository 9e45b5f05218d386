"""Lineage on each version row (spec hash, git commit, data batches), an index for one version's decisions, and
times stored with their time zone (PostgreSQL's timestamptz; SQLite keeps text either way).

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("model_versions") as table:
        table.add_column(sa.Column("spec_sha256", sa.String(), nullable=False, server_default=""))
        table.add_column(sa.Column("git_commit", sa.String(), nullable=True))
        table.add_column(sa.Column("batches_json", sa.String(), nullable=False, server_default="[]"))
        table.alter_column("trained_at", type_=sa.DateTime(timezone=True), existing_nullable=False)
    with op.batch_alter_table("lifecycle_events") as table:
        table.alter_column("occurred_at", type_=sa.DateTime(timezone=True), existing_nullable=False)
    op.create_index("ix_lifecycle_events_model_version", "lifecycle_events", ["model", "version"])


def downgrade() -> None:
    op.drop_index("ix_lifecycle_events_model_version", "lifecycle_events")
    with op.batch_alter_table("lifecycle_events") as table:
        table.alter_column("occurred_at", type_=sa.DateTime(), existing_nullable=False)
    with op.batch_alter_table("model_versions") as table:
        table.alter_column("trained_at", type_=sa.DateTime(), existing_nullable=False)
        for column in ("batches_json", "git_commit", "spec_sha256"):
            table.drop_column(column)
