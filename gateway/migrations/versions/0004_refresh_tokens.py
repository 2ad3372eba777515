"""Refresh tokens of users signed in with a password: `gateway.refresh_tokens`.

Kept as SHA-256 hashes only, one family per sign-in (rotation and reuse detection).

Revision ID: 0004_refresh_tokens
Revises: 0003_user_locale
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004_refresh_tokens"
down_revision: str | None = "0003_user_locale"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "gateway"


def upgrade() -> None:
    op.create_table(
        "refresh_tokens",
        sa.Column("token_hash", sa.LargeBinary(), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("family_id", sa.String(length=32), nullable=False),
        sa.Column("scopes", postgresql.ARRAY(sa.String(length=40)), nullable=False),
        sa.Column(
            "issued_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("idle_expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("family_expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], [f"{SCHEMA}.users.user_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("token_hash"),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_gateway_refresh_tokens_family", "refresh_tokens", ["family_id"], schema=SCHEMA
    )
    op.create_index("ix_gateway_refresh_tokens_user", "refresh_tokens", ["user_id"], schema=SCHEMA)
    op.create_index(
        "ix_gateway_refresh_tokens_family_expires",
        "refresh_tokens",
        ["family_expires_at"],
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("refresh_tokens", schema=SCHEMA)
