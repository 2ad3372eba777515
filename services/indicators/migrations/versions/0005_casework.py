"""casework indicators (docs/api-guide.md#casework): a child's care setting, and the projections of workers,
caseloads, assignments, overdue flags, reintegrations and follow-ups

Existing child versions get `family` (events published before care_setting existed mean
it); nothing is dropped or rewritten.

Revision ID: 0005_casework
Revises: 0004_feed_positions
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005_casework"
down_revision: str | None = "0004_feed_positions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "indicators"


def _recorded_at() -> sa.Column:
    return sa.Column(
        "recorded_at",
        sa.DateTime(timezone=True),
        server_default=sa.text("now()"),
        nullable=False,
    )


def upgrade() -> None:
    op.add_column(
        "child_versions",
        sa.Column(
            "care_setting",
            sa.String(length=30),
            server_default=sa.text("'family'"),
            nullable=False,
        ),
        schema=SCHEMA,
    )
    op.create_table(
        "worker_versions",
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("worker_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("effective_month", sa.Integer(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("role", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("areas", postgresql.ARRAY(sa.String(length=8)), nullable=False),
        sa.Column("contracts", postgresql.ARRAY(sa.String(length=21)), nullable=False),
        sa.Column("trained_on", sa.Date(), nullable=True),
        _recorded_at(),
        sa.PrimaryKeyConstraint("generation", "worker_id", "version"),
        schema=SCHEMA,
    )
    op.create_table(
        "worker_caseloads",
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("worker_id", sa.Uuid(), nullable=False),
        sa.Column("on_day", sa.Date(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("caseload", sa.Integer(), nullable=False),
        sa.Column("max_caseload", sa.Integer(), nullable=False),
        _recorded_at(),
        sa.PrimaryKeyConstraint("generation", "event_id"),
        schema=SCHEMA,
    )
    op.create_table(
        "assignments",
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("assignment_id", sa.Uuid(), nullable=False),
        sa.Column("child_id", sa.Uuid(), nullable=False),
        sa.Column("worker_id", sa.Uuid(), nullable=False),
        sa.Column("started_on", sa.Date(), nullable=False),
        sa.Column("ended_on", sa.Date(), nullable=True),
        _recorded_at(),
        sa.PrimaryKeyConstraint("generation", "assignment_id"),
        schema=SCHEMA,
    )
    op.create_table(
        "visit_flags",
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("child_id", sa.Uuid(), nullable=False),
        sa.Column("on_day", sa.Date(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("overdue", sa.Boolean(), nullable=False),
        _recorded_at(),
        sa.PrimaryKeyConstraint("generation", "event_id"),
        schema=SCHEMA,
    )
    op.create_table(
        "reintegrations",
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("child_id", sa.Uuid(), nullable=False),
        sa.Column("on_day", sa.Date(), nullable=False),
        _recorded_at(),
        sa.PrimaryKeyConstraint("generation", "event_id"),
        schema=SCHEMA,
    )
    op.create_table(
        "followups",
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("visit_id", sa.Uuid(), nullable=False),
        sa.Column("child_id", sa.Uuid(), nullable=False),
        sa.Column("on_day", sa.Date(), nullable=False),
        sa.Column("months", postgresql.ARRAY(sa.SmallInteger()), nullable=False),
        _recorded_at(),
        sa.PrimaryKeyConstraint("generation", "visit_id"),
        schema=SCHEMA,
    )
    for table in ("assignments", "visit_flags", "reintegrations", "followups"):
        op.create_index(
            f"ix_indicators_{table}_child",
            table,
            ["generation", "child_id"],
            unique=False,
            schema=SCHEMA,
        )


def downgrade() -> None:
    for table in (
        "followups",
        "reintegrations",
        "visit_flags",
        "assignments",
        "worker_caseloads",
        "worker_versions",
    ):
        op.drop_table(table, schema=SCHEMA)
    op.drop_column("child_versions", "care_setting", schema=SCHEMA)
