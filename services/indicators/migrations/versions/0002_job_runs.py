"""job runs: the last tick each periodic job was claimed for, so one replica runs it

Revision ID: 0002_job_runs
Revises: 0001_indicators
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_job_runs"
down_revision: str | None = "0001_indicators"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "job_runs",
        sa.Column("job", sa.String(length=100), nullable=False),
        sa.Column("last_tick", sa.BigInteger(), nullable=False),
        sa.Column(
            "last_run_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("job"),
        schema="indicators",
    )


def downgrade() -> None:
    op.drop_table("job_runs", schema="indicators")
