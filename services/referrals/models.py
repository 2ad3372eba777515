"""Tables of the `referrals` schema (and nothing else)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Column, DateTime, ForeignKey, Index, String, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlmodel import Field, SQLModel

from libs.common.tables import common_tables, now_column

SCHEMA = "referrals"
metadata = SQLModel.metadata


class Provider(SQLModel, table=True):
    """A service provider on the social services map.

    `open_referrals` counts its pending and accepted referrals; it changes only under the
    provider's row lock, and the database refuses it above `capacity`.
    """

    __tablename__ = "providers"
    __table_args__ = (
        Index("ix_referrals_providers_updated", "updated_at", "id"),
        Index("ix_referrals_providers_areas", "areas", postgresql_using="gin"),
        Index("ix_referrals_providers_services", "service_types", postgresql_using="gin"),
        {"schema": SCHEMA},
    )

    id: uuid.UUID = Field(primary_key=True)
    name: str = Field(max_length=200)
    org: str = Field(max_length=100, index=True)
    service_types: list[str] = Field(sa_column=Column(ARRAY(String(30)), nullable=False))
    areas: list[str] = Field(sa_column=Column(ARRAY(String(8)), nullable=False))
    contact: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB))
    capacity: int
    open_referrals: int = 0
    active: bool = True
    created_by: str = Field(max_length=200)
    created_at: datetime = Field(sa_column=now_column())
    updated_at: datetime = Field(sa_column=now_column())
    version: int = 1


class KnownChild(SQLModel, table=True):
    """What referrals knows of a child, from registry.child.* events: never a name."""

    __tablename__ = "children"
    __table_args__ = {"schema": SCHEMA}

    id: uuid.UUID = Field(primary_key=True)
    commune_code: str = Field(max_length=6)
    village_code: str | None = Field(default=None, max_length=8)
    place_code: str = Field(max_length=8)
    owner_org: str = Field(max_length=100)
    status: str = Field(max_length=6)
    data_sharing_consent: bool
    version: int
    synced_at: datetime = Field(sa_column=now_column())


class Referral(SQLModel, table=True):
    """A child referred to a provider for one service, followed to its outcome."""

    __tablename__ = "referrals"
    __table_args__ = (
        Index("ix_referrals_referrals_updated", "updated_at", "id"),
        Index(
            "ix_referrals_referrals_place",
            "place_code",
            postgresql_ops={"place_code": "text_pattern_ops"},
        ),
        Index("ix_referrals_referrals_child", "child_id", "status"),
        Index("ix_referrals_referrals_provider", "provider_id", "status"),
        Index("ix_referrals_referrals_provider_org", "provider_org", "updated_at"),
        Index("ix_referrals_referrals_referrer_org", "referrer_org", "updated_at"),
        Index(
            "ix_referrals_referrals_due",
            "due_at",
            postgresql_where=text("status = 'pending' AND NOT overdue"),
        ),
        {"schema": SCHEMA},
    )

    id: uuid.UUID = Field(primary_key=True)
    child_id: uuid.UUID
    service_type: str = Field(max_length=30)
    urgency: str = Field(max_length=10)
    reason: str = Field(max_length=1000)
    provider_id: uuid.UUID = Field(foreign_key=f"{SCHEMA}.providers.id")
    provider_org: str = Field(max_length=100)
    status: str = Field(max_length=10)
    due_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    overdue: bool = False
    commune_code: str = Field(max_length=6)
    village_code: str | None = Field(default=None, max_length=8)
    place_code: str = Field(max_length=8)
    referrer_sub: str = Field(max_length=200)
    referrer_org: str = Field(max_length=100)
    consent_override: bool = False
    override_justification: str | None = Field(default=None, max_length=1000)
    override_by_sub: str | None = Field(default=None, max_length=200)
    override_by_org: str | None = Field(default=None, max_length=100)
    previous_referral_id: uuid.UUID | None = Field(
        default=None,
        sa_column=Column(ForeignKey(f"{SCHEMA}.referrals.id"), unique=True, nullable=True),
    )
    decline_reason: str | None = Field(default=None, max_length=1000)
    cancel_reason: str | None = Field(default=None, max_length=1000)
    outcome_code: str | None = Field(default=None, max_length=20)
    outcome_note: str | None = Field(default=None, max_length=2000)
    accepted_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    closed_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    acted_by_sub: str | None = Field(default=None, max_length=200)
    acted_by_org: str | None = Field(default=None, max_length=100)
    created_at: datetime = Field(sa_column=now_column())
    updated_at: datetime = Field(sa_column=now_column())
    version: int = 1


class UnmatchedNeed(SQLModel, table=True):
    """A referral routing found no provider for: the child, the service and the month
    (Cambodia time, `YYYY-MM`) it was asked for, once however often it was asked, with the
    child's place and the urgency when first asked. Never the reason, nor who asked: the
    request was answered 422 and left no referral."""

    __tablename__ = "unmatched_needs"
    __table_args__ = {"schema": SCHEMA}

    child_id: uuid.UUID = Field(primary_key=True)
    service_type: str = Field(primary_key=True, max_length=30)
    month: str = Field(primary_key=True, max_length=7)
    urgency: str = Field(max_length=10)
    commune_code: str = Field(max_length=6)
    village_code: str | None = Field(default=None, max_length=8)
    occurred_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


common = common_tables(metadata, SCHEMA)
outbox = common.outbox  # where the use cases write their events

providers = Provider.__table__  # type: ignore[attr-defined]
children = KnownChild.__table__  # type: ignore[attr-defined]
referrals = Referral.__table__  # type: ignore[attr-defined]
unmatched_needs = UnmatchedNeed.__table__  # type: ignore[attr-defined]
