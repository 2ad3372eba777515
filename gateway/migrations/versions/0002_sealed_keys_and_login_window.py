"""Sealed signing keys (AES-GCM under KOMAR_KEK) and a time window for failed logins.

Stored Idempotency-Key answers that held a client secret are deleted. The private key
column becomes nullable: the gateway seals every plaintext key at its next
start (it holds the KEK; migrations do not) and clears the column.

Revision ID: 0002_sealed_keys
Revises: 0001_gateway
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_sealed_keys"
down_revision: str | None = "0001_gateway"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "gateway"


def upgrade() -> None:
    op.add_column("signing_keys", sa.Column("kek_id", sa.String(length=16)), schema=SCHEMA)
    op.add_column("signing_keys", sa.Column("sealed_key", sa.LargeBinary()), schema=SCHEMA)
    op.alter_column("signing_keys", "private_pem", nullable=True, schema=SCHEMA)
    op.create_check_constraint(
        "ck_gateway_signing_keys_key_kept",
        "signing_keys",
        "private_pem IS NOT NULL OR (sealed_key IS NOT NULL AND kek_id IS NOT NULL)",
        schema=SCHEMA,
    )
    op.add_column("users", sa.Column("failures_since", sa.DateTime(timezone=True)), schema=SCHEMA)
    # Stored answers of client creates held the new client's secret: no longer kept.
    op.execute(
        "DELETE FROM gateway.idempotency_keys "
        "WHERE position(convert_to('\"client_secret\":\"', 'UTF8') IN body) > 0"
    )


def downgrade() -> None:
    op.drop_column("users", "failures_since", schema=SCHEMA)
    op.drop_constraint(
        "ck_gateway_signing_keys_key_kept", "signing_keys", type_="check", schema=SCHEMA
    )
    # Sealed keys cannot be opened here (no KEK): downgrading drops them, and the gateway
    # of the older version makes a new signing key at its start.
    op.execute("DELETE FROM gateway.signing_keys WHERE private_pem IS NULL")
    op.alter_column("signing_keys", "private_pem", nullable=False, schema=SCHEMA)
    op.drop_column("signing_keys", "sealed_key", schema=SCHEMA)
    op.drop_column("signing_keys", "kek_id", schema=SCHEMA)
