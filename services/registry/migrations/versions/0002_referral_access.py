"""referral access: provider organisations may read children they accepted referrals for

Revision ID: 0002_referral_access
Revises: 0001_registry
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_referral_access"
down_revision: str | None = "0001_registry"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "referral_access",
        sa.Column("referral_id", sa.Uuid(), nullable=False),
        sa.Column("child_id", sa.Uuid(), nullable=False),
        sa.Column("org", sa.String(length=100), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("referral_id"),
        schema="registry",
    )
    op.create_index(
        "ix_registry_access_org_child", "referral_access", ["org", "child_id"], schema="registry"
    )


def downgrade() -> None:
    op.drop_index("ix_registry_access_org_child", table_name="referral_access", schema="registry")
    op.drop_table("referral_access", schema="registry")
