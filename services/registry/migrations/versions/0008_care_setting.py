"""a child's care setting (docs/api-guide.md#a-child-record): every existing child lives with its family until told
otherwise; adding a column with a constant default rewrites no row

Revision ID: 0008_care_setting
Revises: 0007_feed_positions
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_care_setting"
down_revision: str | None = "0007_feed_positions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "children",
        sa.Column("care_setting", sa.String(30), nullable=False, server_default="family"),
        schema="registry",
    )


def downgrade() -> None:
    op.drop_column("children", "care_setting", schema="registry")
