"""The registry's four tables as they were before migrations were versioned (SQLModel's create_all).

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_versions",
        sa.Column("model", sa.String(), nullable=False), sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(), nullable=False), sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("estimator", sa.String(), nullable=False), sa.Column("metric", sa.String(), nullable=False),
        sa.Column("metrics_json", sa.String(), nullable=False), sa.Column("artifact_uri", sa.String(), nullable=False),
        sa.Column("artifact_sha256", sa.String(), nullable=False),
        sa.Column("requested_by", sa.String(), nullable=False), sa.Column("trained_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("model", "version"))
    op.create_table(
        "lifecycle_events",
        sa.Column("event_id", sa.String(), nullable=False), sa.Column("model", sa.String(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False), sa.Column("kind", sa.String(), nullable=False),
        sa.Column("alias", sa.String(), nullable=True), sa.Column("actor", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False), sa.Column("policy_version", sa.Integer(), nullable=True),
        sa.Column("evidence_json", sa.String(), nullable=False), sa.Column("cause_id", sa.String(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("event_id"))
    op.create_index("ix_lifecycle_events_model", "lifecycle_events", ["model"])
    op.create_table(
        "aliases",
        sa.Column("model", sa.String(), nullable=False), sa.Column("alias", sa.String(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("model", "alias"))
    op.create_table(
        "policies",
        sa.Column("model", sa.String(), nullable=False), sa.Column("policy_version", sa.Integer(), nullable=False),
        sa.Column("policy_json", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("model"))


def downgrade() -> None:
    for table in ("policies", "aliases", "lifecycle_events", "model_versions"):
        op.drop_table(table)
