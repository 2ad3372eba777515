"""rounding key: the one secret that makes the small-cell rounding of every cell consistent

Revision ID: 0003_rounding_key
Revises: 0002_job_runs
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_rounding_key"
down_revision: str | None = "0002_job_runs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rounding_key",
        sa.Column("id", sa.SmallInteger(), server_default=sa.text("1"), nullable=False),
        sa.Column("key", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("id = 1", name="ck_rounding_key_one_row"),
        sa.CheckConstraint("length(key) >= 32", name="ck_rounding_key_length"),
        sa.PrimaryKeyConstraint("id"),
        schema="indicators",
    )


def downgrade() -> None:
    op.drop_table("rounding_key", schema="indicators")
