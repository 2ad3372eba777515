"""Tables of the `gateway` schema (and nothing else)."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY

from libs.common.http import idempotency_table

SCHEMA = "gateway"
metadata = MetaData(schema=SCHEMA)


def _created() -> Column[object]:
    return Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now())


def _updated() -> Column[object]:
    return Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now())


def _principal_columns() -> list[Column[object]]:
    """What an API client and a user both are: a name, an organisation, and the scopes and
    areas their tokens carry (libs.common.auth.Principal)."""
    return [
        Column("name", String(200), nullable=False),
        Column("org", String(100), nullable=False),
        Column("org_type", String(20), nullable=False),
        Column("scopes", ARRAY(String(40)), nullable=False),
        Column("areas", ARRAY(String(8)), nullable=False),
    ]


signing_keys = Table(
    "signing_keys",
    metadata,
    Column("kid", String(64), primary_key=True),
    # Only in a database from before keys were sealed, until the gateway's next start
    # seals it: a private key is kept AES-GCM-sealed under the KEK named by kek_id.
    Column("private_pem", Text),
    Column("kek_id", String(16)),
    Column("sealed_key", LargeBinary),
    _created(),
    Column("retired_at", DateTime(timezone=True)),
    CheckConstraint(
        "private_pem IS NOT NULL OR (sealed_key IS NOT NULL AND kek_id IS NOT NULL)",
        name="ck_gateway_signing_keys_key_kept",
    ),
)
# At most one active (unretired) key: the one every replica signs with.
Index(
    "uq_gateway_signing_keys_one_active",
    signing_keys.c.retired_at.is_(None),
    unique=True,
    postgresql_where=signing_keys.c.retired_at.is_(None),
)

clients = Table(
    "clients",
    metadata,
    Column("client_id", String(64), primary_key=True),
    *_principal_columns(),
    Column("secret_hash", String(200), nullable=False),
    Column("rate_limit_per_second", Float),
    Column("active", Boolean, nullable=False, server_default=text("true")),
    Column("version", Integer, nullable=False, server_default=text("1")),
    _created(),
    _updated(),
    CheckConstraint("org_type IN ('government', 'partner')", name="ck_gateway_clients_org_type"),
    Index("ix_gateway_clients_updated", "updated_at", "client_id"),
    Index("ix_gateway_clients_inactive", "client_id", postgresql_where=text("NOT active")),
)

users = Table(
    "users",
    metadata,
    Column("user_id", String(64), primary_key=True),
    Column("username", String(64), nullable=False),
    *_principal_columns(),
    Column("password_hash", String(200), nullable=False),
    Column("rate_limit_per_second", Float),
    Column("active", Boolean, nullable=False, server_default=text("true")),
    # Login attempts reserved (each one before its password is checked) since failures_since.
    Column("failed_logins", Integer, nullable=False, server_default=text("0")),
    Column("failures_since", DateTime(timezone=True)),
    Column("locked_until", DateTime(timezone=True)),
    # The language the user chose for what Komar shows them (domain.LOCALES).
    Column("locale", String(5), nullable=False, server_default=text("'en'")),
    # When every sign-in of the user was ended (a new password): tokens issued before refused.
    Column("sessions_ended_at", DateTime(timezone=True)),
    Column("version", Integer, nullable=False, server_default=text("1")),
    _created(),
    _updated(),
    CheckConstraint("org_type IN ('government', 'partner')", name="ck_gateway_users_org_type"),
    CheckConstraint("locale IN ('en', 'km')", name="ck_gateway_users_locale"),
    UniqueConstraint("username", name="uq_gateway_users_username"),
    Index("ix_gateway_users_updated", "updated_at", "user_id"),
    Index("ix_gateway_users_inactive", "user_id", postgresql_where=text("NOT active")),
)

# Refresh tokens of users who signed in with a password (RFC 6749 §6), rotated at each use.
# A token is kept as its SHA-256 only (it carries 256 random bits: no slow hash is needed).
# One sign-in is one family: each refresh marks the token used and adds the family's next
# one. A used token stays until the family ends, so that presenting it again is seen (and
# revokes the family); a revoked one stays too, and its family is refused while it does.
refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("token_hash", LargeBinary, primary_key=True),
    Column(
        "user_id",
        String(64),
        ForeignKey("gateway.users.user_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("family_id", String(32), nullable=False),
    # The scopes granted at the sign-in: no refresh of the family gets more.
    Column("scopes", ARRAY(String(40)), nullable=False),
    Column("issued_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("idle_expires_at", DateTime(timezone=True), nullable=False),
    Column("family_expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    Index("ix_gateway_refresh_tokens_family", "family_id"),
    Index("ix_gateway_refresh_tokens_user", "user_id"),
    Index("ix_gateway_refresh_tokens_family_expires", "family_expires_at"),
)

idempotency_keys = idempotency_table(metadata, SCHEMA)
