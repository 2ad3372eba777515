"""webhooks schema: endpoints, deliveries and their attempts, the projections access is
decided on, and the plumbing tables every service has

Revision ID: 0001_webhooks
Revises:
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from libs.common.migrations import create_common_tables, stamp_column

revision: str = "0001_webhooks"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "webhooks"


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
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        schema=S,
    )
    op.create_table(
        "referrals",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("child_id", sa.Uuid(), nullable=False),
        sa.Column("commune_code", sa.String(length=6), nullable=False),
        sa.Column("village_code", sa.String(length=8), nullable=True),
        sa.Column("provider_org", sa.String(length=100), nullable=False),
        sa.Column("referrer_org", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        schema=S,
    )
    op.create_table(
        "grants",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("child_id", sa.Uuid(), nullable=False),
        sa.Column("commune_code", sa.String(length=6), nullable=False),
        sa.Column("requested_org", sa.String(length=100), nullable=True),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        schema=S,
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
        "ix_webhooks_referral_shares_org_child",
        "referral_shares",
        ["org", "child_id"],
        schema=S,
    )

    # ---------------------------------------------------------------- endpoints, deliveries
    op.create_table(
        "endpoints",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("org", sa.String(length=100), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column("event_types", postgresql.ARRAY(sa.String(length=100)), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("disabled_reason", sa.String(length=20), nullable=True),
        sa.Column("secret", sa.String(length=200), nullable=False),
        sa.Column("previous_secret", sa.String(length=200), nullable=True),
        sa.Column("previous_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("owner_sub", sa.String(length=200), nullable=False),
        sa.Column("owner_org_type", sa.String(length=20), nullable=False),
        sa.Column("owner_scopes", postgresql.ARRAY(sa.String(length=50)), nullable=False),
        sa.Column("owner_areas", postgresql.ARRAY(sa.String(length=8)), nullable=False),
        sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True),
        stamp_column("created_at"),
        stamp_column("updated_at"),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "disabled_reason IS NULL OR disabled_reason IN ('manual', 'gone', 'failing')",
            name="ck_endpoints_disabled_reason",
        ),
        sa.PrimaryKeyConstraint("id"),
        schema=S,
    )
    op.create_index("ix_webhooks_endpoints_org", "endpoints", ["org", "updated_at", "id"], schema=S)
    op.create_index(
        "ix_webhooks_endpoints_types",
        "endpoints",
        ["event_types"],
        schema=S,
        postgresql_using="gin",
    )
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("endpoint_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("event_type", sa.String(length=100), nullable=False),
        sa.Column("record_type", sa.String(length=10), nullable=True),
        sa.Column("record_id", sa.Uuid(), nullable=True),
        sa.Column("record_version", sa.Integer(), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        stamp_column("next_attempt_at"),
        stamp_column("round_started_at"),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        stamp_column("created_at"),
        stamp_column("updated_at"),
        sa.CheckConstraint(
            "status IN ('pending', 'delivered', 'failed', 'dropped')",
            name="ck_deliveries_status",
        ),
        sa.CheckConstraint(
            "record_type IS NULL OR record_type IN ('child', 'referral', 'grant')",
            name="ck_deliveries_record_type",
        ),
        sa.ForeignKeyConstraint(["endpoint_id"], [f"{S}.endpoints.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("seq"),
        schema=S,
    )
    op.create_index(
        "uq_webhooks_deliveries_event",
        "deliveries",
        ["endpoint_id", "event_id"],
        unique=True,
        schema=S,
    )
    op.create_index(
        "ix_webhooks_deliveries_due",
        "deliveries",
        ["next_attempt_at"],
        schema=S,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_webhooks_deliveries_record",
        "deliveries",
        ["endpoint_id", "record_id", "record_version", "seq"],
        schema=S,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_webhooks_deliveries_endpoint", "deliveries", ["endpoint_id", "seq"], schema=S
    )
    op.create_table(
        "delivery_attempts",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("delivery_id", sa.Uuid(), nullable=False),
        sa.Column(
            "at",
            sa.DateTime(timezone=True),
            server_default=sa.text("clock_timestamp()"),
            nullable=False,
        ),
        sa.Column("outcome", sa.String(length=10), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(length=40), nullable=True),
        sa.ForeignKeyConstraint(["delivery_id"], [f"{S}.deliveries.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        schema=S,
    )
    op.create_index(
        "ix_webhooks_delivery_attempts_delivery",
        "delivery_attempts",
        ["delivery_id", "id"],
        schema=S,
    )


def downgrade() -> None:
    for table in (
        "delivery_attempts",
        "deliveries",
        "endpoints",
        "referral_shares",
        "grants",
        "referrals",
        "children",
        "job_runs",
        "processed_events",
        "outbox",
        "idempotency_keys",
    ):
        op.drop_table(table, schema=S)
