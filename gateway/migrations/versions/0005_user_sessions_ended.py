"""When every sign-in of a user was ended: `users.sessions_ended_at`.

Set with a new password (the user's own change or an administrator's), so that the access
tokens issued before are refused at once, not when they lapse. NULL for every existing user.

Revision ID: 0005_user_sessions_ended
Revises: 0004_refresh_tokens
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_user_sessions_ended"
down_revision: str | None = "0004_refresh_tokens"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "gateway"


def upgrade() -> None:
    op.add_column(
        "users",
        sa.Column("sessions_ended_at", sa.DateTime(timezone=True), nullable=True),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_column("users", "sessions_ended_at", schema=SCHEMA)
