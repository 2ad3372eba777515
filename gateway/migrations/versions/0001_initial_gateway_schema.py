"""Initial gateway schema: signing keys, API clients, users, idempotency keys.

Revision ID: 0001_gateway
Revises:
Create Date: 2026-11-26 13:51:32
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001_gateway"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "gateway"


def _timestamps() -> list[sa.Column]:
    return [
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
    ]


def upgrade() -> None:
    op.create_table(
        "signing_keys",
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("private_pem", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("kid"),
        schema=SCHEMA,
    )
    # At most one active key: every replica signs with the same one.
    op.execute(
        "CREATE UNIQUE INDEX uq_gateway_signing_keys_one_active "
        "ON gateway.signing_keys ((retired_at IS NULL)) WHERE retired_at IS NULL"
    )

    op.create_table(
        "clients",
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("org", sa.String(length=100), nullable=False),
        sa.Column("org_type", sa.String(length=20), nullable=False),
        sa.Column("scopes", postgresql.ARRAY(sa.String(length=40)), nullable=False),
        sa.Column("areas", postgresql.ARRAY(sa.String(length=8)), nullable=False),
        sa.Column("secret_hash", sa.String(length=200), nullable=False),
        sa.Column("rate_limit_per_second", sa.Float(), nullable=True),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        *_timestamps(),
        sa.CheckConstraint(
            "org_type IN ('government', 'partner')", name="ck_gateway_clients_org_type"
        ),
        sa.PrimaryKeyConstraint("client_id"),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_gateway_clients_updated", "clients", ["updated_at", "client_id"], schema=SCHEMA
    )
    op.create_index(
        "ix_gateway_clients_inactive",
        "clients",
        ["client_id"],
        schema=SCHEMA,
        postgresql_where=sa.text("NOT active"),
    )

    op.create_table(
        "users",
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("org", sa.String(length=100), nullable=False),
        sa.Column("org_type", sa.String(length=20), nullable=False),
        sa.Column("scopes", postgresql.ARRAY(sa.String(length=40)), nullable=False),
        sa.Column("areas", postgresql.ARRAY(sa.String(length=8)), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("rate_limit_per_second", sa.Float(), nullable=True),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("failed_logins", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        *_timestamps(),
        sa.CheckConstraint(
            "org_type IN ('government', 'partner')", name="ck_gateway_users_org_type"
        ),
        sa.PrimaryKeyConstraint("user_id"),
        sa.UniqueConstraint("username", name="uq_gateway_users_username"),
        schema=SCHEMA,
    )
    op.create_index("ix_gateway_users_updated", "users", ["updated_at", "user_id"], schema=SCHEMA)
    op.create_index(
        "ix_gateway_users_inactive",
        "users",
        ["user_id"],
        schema=SCHEMA,
        postgresql_where=sa.text("NOT active"),
    )

    # Stored first answers to Idempotency-Key requests (libs.common.http.idempotency_table).
    # A replayed client-create answer holds that client's secret: never log this table.
    op.create_table(
        "idempotency_keys",
        sa.Column("client_id", sa.String(length=200), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("headers", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("client_id", "key"),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("idempotency_keys", schema=SCHEMA)
    op.drop_table("users", schema=SCHEMA)
    op.drop_table("clients", schema=SCHEMA)
    op.drop_table("signing_keys", schema=SCHEMA)
