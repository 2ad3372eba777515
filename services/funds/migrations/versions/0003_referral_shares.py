"""referral shares: the referrals of each child, so that a partner with an active referral
sees the child here as in the registry (libs.common.access)

Revision ID: 0003_referral_shares
Revises: 0002_job_runs
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_referral_shares"
down_revision: str | None = "0002_job_runs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "referral_shares",
        sa.Column("referral_id", sa.Uuid(), nullable=False),
        sa.Column("child_id", sa.Uuid(), nullable=False),
        sa.Column("org", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("referral_id"),
        schema="funds",
    )
    op.create_index(
        "ix_funds_referral_shares_org_child",
        "referral_shares",
        ["org", "child_id"],
        schema="funds",
    )


def downgrade() -> None:
    op.drop_index(
        "ix_funds_referral_shares_org_child", table_name="referral_shares", schema="funds"
    )
    op.drop_table("referral_shares", schema="funds")
