"""Tables of the `webhooks` schema (and nothing else).

- `endpoints`: a partner's URL, the event types it wants, its signing secrets and the
  principal whose access decides what it receives (the one that created or last changed it).
- `deliveries`: one row per (endpoint, event) the endpoint may receive, holding the exact
  body to send (ids and codes only). Its id is the `webhook-id` of every attempt.
- `delivery_attempts`: each attempt's status code, latency and error class (never a
  response body).
- The projections that access is evaluated on, from the streams: `children`,
  `referral_shares` (libs.common.access), `referrals` and `grants`; ids, codes, owners and
  states only.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Field, SQLModel

from libs.common.access import referral_shares_table
from libs.common.tables import clock_column, common_tables, identity_key, now_column
from services.webhooks.domain import DELIVERY_STATUSES, DISABLED_REASONS, RECORD_TYPES

SCHEMA = "webhooks"
metadata = SQLModel.metadata


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Endpoint(SQLModel, table=True):
    """A URL of an organisation that receives signed deliveries of the events it chose."""

    __tablename__ = "endpoints"
    __table_args__ = (
        CheckConstraint(
            f"disabled_reason IS NULL OR {_in('disabled_reason', DISABLED_REASONS)}",
            name="ck_endpoints_disabled_reason",
        ),
        Index("ix_webhooks_endpoints_org", "org", "updated_at", "id"),
        Index("ix_webhooks_endpoints_types", "event_types", postgresql_using="gin"),
        {"schema": SCHEMA},
    )

    id: uuid.UUID = Field(primary_key=True)
    org: str = Field(max_length=100)
    url: str = Field(max_length=2000)
    description: str | None = Field(default=None, max_length=500)
    event_types: list[str] = Field(sa_column=Column(ARRAY(String(100)), nullable=False))
    enabled: bool = True
    disabled_reason: str | None = Field(default=None, max_length=20)
    # whsec_<base64>: shown once; the previous one keeps signing until previous_until.
    secret: str = Field(max_length=200)
    previous_secret: str | None = Field(default=None, max_length=200)
    previous_until: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    # The principal whose access decides what the endpoint receives.
    owner_sub: str = Field(max_length=200)
    owner_org_type: str = Field(max_length=20)
    owner_scopes: list[str] = Field(sa_column=Column(ARRAY(String(50)), nullable=False))
    owner_areas: list[str] = Field(sa_column=Column(ARRAY(String(8)), nullable=False))
    # Since when every attempt has failed (None after a success).
    failing_since: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    created_at: datetime = Field(sa_column=now_column())
    updated_at: datetime = Field(sa_column=now_column())
    version: int = 1


class Delivery(SQLModel, table=True):
    """One event (or test) for one endpoint, sent until a 2xx, given up, or dropped."""

    __tablename__ = "deliveries"
    __table_args__ = (
        CheckConstraint(_in("status", DELIVERY_STATUSES), name="ck_deliveries_status"),
        CheckConstraint(
            f"record_type IS NULL OR {_in('record_type', RECORD_TYPES)}",
            name="ck_deliveries_record_type",
        ),
        # the same event never makes two deliveries to one endpoint
        Index("uq_webhooks_deliveries_event", "endpoint_id", "event_id", unique=True),
        Index(
            "ix_webhooks_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
        # the earlier pending deliveries about the same record, for ordering
        Index(
            "ix_webhooks_deliveries_record",
            "endpoint_id",
            "record_id",
            "record_version",
            "seq",
            postgresql_where=text("status = 'pending'"),
        ),
        Index("ix_webhooks_deliveries_endpoint", "endpoint_id", "seq"),
        {"schema": SCHEMA},
    )

    id: uuid.UUID = Field(primary_key=True)
    seq: int | None = Field(
        default=None,
        sa_column=Column(BigInteger, Identity(), nullable=False, unique=True),
    )
    endpoint_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey(f"{SCHEMA}.endpoints.id", ondelete="CASCADE"), nullable=False)
    )
    event_id: uuid.UUID
    event_type: str = Field(max_length=100)
    record_type: str | None = Field(default=None, max_length=10)
    record_id: uuid.UUID | None = None
    record_version: int | None = None
    body: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(max_length=10)
    attempts: int = 0
    next_attempt_at: datetime = Field(sa_column=now_column())
    # When the current round of tries began (created, or retried by hand): retried until
    # the retry window has passed since then.
    round_started_at: datetime = Field(sa_column=now_column())
    delivered_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    created_at: datetime = Field(sa_column=now_column())
    updated_at: datetime = Field(sa_column=now_column())


class DeliveryAttempt(SQLModel, table=True):
    """One try of a delivery: what came back, how fast, or which kind of error."""

    __tablename__ = "delivery_attempts"
    __table_args__ = (
        Index("ix_webhooks_delivery_attempts_delivery", "delivery_id", "id"),
        {"schema": SCHEMA},
    )

    id: int | None = Field(default=None, sa_column=identity_key())
    delivery_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey(f"{SCHEMA}.deliveries.id", ondelete="CASCADE"), nullable=False)
    )
    at: datetime = Field(sa_column=clock_column())
    outcome: str = Field(max_length=10)
    status_code: int | None = None
    latency_ms: int | None = None
    error: str | None = Field(default=None, max_length=40)


class KnownChild(SQLModel, table=True):
    """A child as the webhooks service knows it, from registry events (no personal data)."""

    __tablename__ = "children"
    __table_args__ = {"schema": SCHEMA}

    id: uuid.UUID = Field(primary_key=True)
    commune_code: str = Field(max_length=6)
    village_code: str | None = Field(default=None, max_length=8)
    owner_org: str = Field(max_length=100)
    status: str = Field(max_length=6)
    version: int


class KnownReferral(SQLModel, table=True):
    """A referral as the webhooks service knows it, from referrals events."""

    __tablename__ = "referrals"
    __table_args__ = {"schema": SCHEMA}

    id: uuid.UUID = Field(primary_key=True)
    child_id: uuid.UUID
    commune_code: str = Field(max_length=6)
    village_code: str | None = Field(default=None, max_length=8)
    provider_org: str = Field(max_length=100)
    referrer_org: str = Field(max_length=100)
    status: str = Field(max_length=10)
    version: int


class KnownGrant(SQLModel, table=True):
    """A grant as the webhooks service knows it, from funds events."""

    __tablename__ = "grants"
    __table_args__ = {"schema": SCHEMA}

    id: uuid.UUID = Field(primary_key=True)
    child_id: uuid.UUID
    commune_code: str = Field(max_length=6)
    requested_org: str | None = Field(default=None, max_length=100)
    status: str = Field(max_length=10)
    version: int


common = common_tables(metadata, SCHEMA)

endpoints = Endpoint.__table__  # type: ignore[attr-defined]
deliveries = Delivery.__table__  # type: ignore[attr-defined]
attempts = DeliveryAttempt.__table__  # type: ignore[attr-defined]
children = KnownChild.__table__  # type: ignore[attr-defined]
referrals = KnownReferral.__table__  # type: ignore[attr-defined]
grants = KnownGrant.__table__  # type: ignore[attr-defined]
# Referrals of the children, from referrals.referral.* events (libs.common.access): a
# provider organisation sees the child while its referral is active.
referral_shares = referral_shares_table(metadata, SCHEMA)
