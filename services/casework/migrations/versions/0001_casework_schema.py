"""casework schema: workers, assignments, plans, visits, reintegration follow-ups, the
projections of children and referral shares, and the plumbing tables every service has

Revision ID: 0001_casework
Revises:
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from libs.common.migrations import create_common_tables, stamp_column

revision: str = "0001_casework"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "casework"


def upgrade() -> None:
    create_common_tables(S)

    # ---------------------------------------------------------------- projections
    op.create_table(
        "children",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("commune_code", sa.String(length=6), nullable=False),
        sa.Column("village_code", sa.String(length=8), nullable=True),
        sa.Column("owner_org", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=6), nullable=False),
        sa.Column("care_setting", sa.String(length=30), nullable=False),
        sa.Column("sex", sa.String(length=10), nullable=False),
        sa.Column("birth_month", sa.String(length=7), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        stamp_column("synced_at"),
        sa.Column("last_visit_on", sa.Date(), nullable=True),
        sa.Column("next_visit_on", sa.Date(), nullable=True),
        sa.Column("overdue", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("overdue_due_on", sa.Date(), nullable=True),
        sa.Column("reintegrated_on", sa.Date(), nullable=True),
        stamp_column("updated_at"),
        sa.PrimaryKeyConstraint("id"),
        schema=S,
    )
    op.create_index("ix_casework_children_updated", "children", ["updated_at", "id"], schema=S)
    op.create_index(
        "ix_casework_children_due",
        "children",
        ["next_visit_on"],
        schema=S,
        postgresql_where=sa.text("next_visit_on IS NOT NULL AND NOT overdue"),
    )
    op.create_table(
        "referral_shares",
        sa.Column("referral_id", sa.Uuid(), nullable=False),
        sa.Column("child_id", sa.Uuid(), nullable=False),
        sa.Column("org", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("referral_id"),
        schema=S,
    )
    op.create_index(
        "ix_casework_referral_shares_org_child", "referral_shares", ["org", "child_id"], schema=S
    )

    # ---------------------------------------------------------------- casework
    op.create_table(
        "workers",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("org", sa.String(length=100), nullable=False),
        sa.Column("org_type", sa.String(length=10), nullable=False),
        sa.Column("role", sa.String(length=30), nullable=False),
        sa.Column("given_name", sa.String(length=100), nullable=False),
        sa.Column("family_name", sa.String(length=100), nullable=False),
        sa.Column("sex", sa.String(length=10), nullable=False),
        sa.Column("phone", sa.String(length=30), nullable=True),
        sa.Column("areas", postgresql.ARRAY(sa.String(length=8)), nullable=False),
        sa.Column("username", sa.String(length=100), nullable=True),
        sa.Column("max_caseload", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("trainings", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("contracts", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("caseload", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        stamp_column("created_at"),
        stamp_column("updated_at"),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("username"),
        schema=S,
    )
    op.create_index("ix_casework_workers_updated", "workers", ["updated_at", "id"], schema=S)
    op.create_index(
        "ix_casework_workers_areas", "workers", ["areas"], schema=S, postgresql_using="gin"
    )
    op.create_index("ix_casework_workers_org", "workers", ["org", "updated_at"], schema=S)
    op.create_table(
        "worker_history",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("worker_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("changed", postgresql.ARRAY(sa.String(length=30)), nullable=False),
        sa.Column("actor_sub", sa.String(length=200), nullable=False),
        sa.Column("actor_org", sa.String(length=100), nullable=False),
        sa.Column("request_id", sa.String(length=200), nullable=False),
        stamp_column("at"),
        sa.PrimaryKeyConstraint("id"),
        schema=S,
    )
    op.create_index(
        "ix_casework_worker_history_worker", "worker_history", ["worker_id", "id"], schema=S
    )
    op.create_table(
        "assignments",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("child_id", sa.Uuid(), nullable=False),
        sa.Column("worker_id", sa.Uuid(), nullable=False),
        sa.Column("commune_code", sa.String(length=6), nullable=False),
        sa.Column("village_code", sa.String(length=8), nullable=True),
        sa.Column("org", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("started_on", sa.Date(), nullable=False),
        sa.Column("ended_on", sa.Date(), nullable=True),
        sa.Column("override", sa.Boolean(), nullable=False),
        sa.Column("override_justification", sa.Text(), nullable=True),
        sa.Column("assigned_by_sub", sa.String(length=200), nullable=False),
        sa.Column("assigned_by_org", sa.String(length=100), nullable=False),
        stamp_column("created_at"),
        stamp_column("updated_at"),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        schema=S,
    )
    op.create_index(
        "ix_casework_assignments_updated", "assignments", ["updated_at", "id"], schema=S
    )
    op.create_index(
        "ix_casework_assignments_worker", "assignments", ["worker_id", "status"], schema=S
    )
    op.create_index(
        "ux_casework_assignments_active_child",
        "assignments",
        ["child_id"],
        unique=True,
        schema=S,
        postgresql_where=sa.text("status = 'active'"),
    )
    op.create_index(
        "ix_casework_assignments_child", "assignments", ["child_id", "started_on"], schema=S
    )
    op.create_table(
        "plans",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("goals", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("updated_by_sub", sa.String(length=200), nullable=False),
        sa.Column("updated_by_org", sa.String(length=100), nullable=False),
        stamp_column("created_at"),
        stamp_column("updated_at"),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        schema=S,
    )
    op.create_table(
        "visits",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("child_id", sa.Uuid(), nullable=False),
        sa.Column("worker_id", sa.Uuid(), nullable=True),
        sa.Column("commune_code", sa.String(length=6), nullable=False),
        sa.Column("village_code", sa.String(length=8), nullable=True),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("outcome", sa.String(length=10), nullable=False),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("next_visit_on", sa.Date(), nullable=True),
        sa.Column("followups_made", postgresql.ARRAY(sa.SmallInteger()), nullable=False),
        sa.Column("recorded_by_sub", sa.String(length=200), nullable=False),
        sa.Column("recorded_by_org", sa.String(length=100), nullable=False),
        stamp_column("created_at"),
        stamp_column("updated_at"),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        schema=S,
    )
    op.create_index("ix_casework_visits_updated", "visits", ["updated_at", "id"], schema=S)
    op.create_index("ix_casework_visits_child", "visits", ["child_id", "date"], schema=S)
    op.create_table(
        "followups",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("child_id", sa.Uuid(), nullable=False),
        sa.Column("reintegrated_on", sa.Date(), nullable=False),
        sa.Column("month", sa.SmallInteger(), nullable=False),
        sa.Column("opens_on", sa.Date(), nullable=False),
        sa.Column("due_on", sa.Date(), nullable=False),
        sa.Column("made_on", sa.Date(), nullable=True),
        sa.Column("visit_id", sa.Uuid(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        schema=S,
    )
    op.create_index(
        "ux_casework_followups_child_month",
        "followups",
        ["child_id", "reintegrated_on", "month"],
        unique=True,
        schema=S,
    )


def downgrade() -> None:
    for table in (
        "followups",
        "visits",
        "plans",
        "assignments",
        "worker_history",
        "workers",
        "referral_shares",
        "children",
        "job_runs",
        "processed_events",
        "outbox",
        "idempotency_keys",
    ):
        op.drop_table(table, schema=S)
