"""A user's language: `users.locale`, English for every existing user.

A constant default: PostgreSQL adds the column without rewriting the table.

Revision ID: 0003_user_locale
Revises: 0002_sealed_keys
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_user_locale"
down_revision: str | None = "0002_sealed_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "gateway"


def upgrade() -> None:
    op.add_column(
        "users",
        sa.Column("locale", sa.String(length=5), nullable=False, server_default=sa.text("'en'")),
        schema=SCHEMA,
    )
    op.create_check_constraint(
        "ck_gateway_users_locale", "users", "locale IN ('en', 'km')", schema=SCHEMA
    )


def downgrade() -> None:
    op.drop_constraint("ck_gateway_users_locale", "users", type_="check", schema=SCHEMA)
    op.drop_column("users", "locale", schema=SCHEMA)
