"""unmatched needs: the referrals routing found no provider for, once per child, service
type and month (Cambodia time), however often they were asked for

Revision ID: 0004_unmatched_needs
Revises: 0003_feed_positions
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0004_unmatched_needs"
down_revision: str | None = "0003_feed_positions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "unmatched_needs",
        sa.Column("child_id", sa.Uuid(), nullable=False),
        sa.Column("service_type", sqlmodel.sql.sqltypes.AutoString(length=30), nullable=False),
        sa.Column("month", sqlmodel.sql.sqltypes.AutoString(length=7), nullable=False),
        sa.Column("urgency", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("commune_code", sqlmodel.sql.sqltypes.AutoString(length=6), nullable=False),
        sa.Column("village_code", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("child_id", "service_type", "month"),
        schema="referrals",
    )


def downgrade() -> None:
    op.drop_table("unmatched_needs", schema="referrals")
