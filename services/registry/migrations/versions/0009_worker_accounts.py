"""casework workers' accounts: a worker who signs in reads the children assigned to them
(their assignments are kept in referral_access as shares to `@worker/<worker id>`)

Revision ID: 0009_worker_accounts
Revises: 0008_care_setting
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_worker_accounts"
down_revision: str | None = "0008_care_setting"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "worker_accounts",
        sa.Column("worker_id", sa.Uuid(), primary_key=True),
        sa.Column("username", sa.String(64), nullable=True),
        sa.Column("org", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        schema="registry",
    )
    op.create_index(
        "ix_registry_worker_accounts_username",
        "worker_accounts",
        ["username"],
        schema="registry",
    )


def downgrade() -> None:
    op.drop_table("worker_accounts", schema="registry")
