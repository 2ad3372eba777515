"""Tables of the `funds` schema (and nothing else).

Money is whole riel in BIGINT columns. The fund row keeps running totals, changed only in
the transaction that appends the matching ledger entry, and `available_khr` is a stored
generated column with a CHECK that it never goes below zero.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Computed,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from libs.common.access import referral_shares_table
from libs.common.tables import clock_column, common_tables, identity_key, now_column
from services.funds.domain import CATEGORIES, GRANT_STATUSES, LEDGER_KINDS, METHODS, SHOCKS

SCHEMA = "funds"
metadata = SQLModel.metadata


def _money(*, default: int | None = None) -> Any:
    return Column(
        BigInteger,
        nullable=False,
        server_default=text(str(default)) if default is not None else None,
    )


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class FundChild(SQLModel, table=True):
    """A child as the funds service knows it, from registry events (no personal data)."""

    __tablename__ = "children"
    __table_args__ = {"schema": SCHEMA}

    id: uuid.UUID = Field(primary_key=True)
    commune_code: str = Field(max_length=6)
    village_code: str | None = Field(default=None, max_length=8)
    owner_org: str = Field(max_length=100)
    status: str = Field(max_length=6)
    version: int


class Fund(SQLModel, table=True):
    """A commune (or district, or province) emergency fund for one fiscal year."""

    __tablename__ = "funds"
    __table_args__ = (
        UniqueConstraint("commune_code", "fiscal_year", "name", name="uq_funds_place_year_name"),
        CheckConstraint("available_khr >= 0", name="ck_funds_available_not_negative"),
        CheckConstraint("budget_khr >= 0", name="ck_funds_budget_not_negative"),
        CheckConstraint("topped_up_khr >= 0", name="ck_funds_topped_up_not_negative"),
        CheckConstraint("committed_khr >= 0", name="ck_funds_committed_not_negative"),
        CheckConstraint("disbursed_khr >= 0", name="ck_funds_disbursed_not_negative"),
        CheckConstraint("max_grant_khr > 0", name="ck_funds_max_grant_positive"),
        CheckConstraint("approval_threshold_khr >= 0", name="ck_funds_threshold_not_negative"),
        Index(
            "ix_funds_funds_place",
            "commune_code",
            postgresql_ops={"commune_code": "text_pattern_ops"},
        ),
        Index("ix_funds_funds_updated", "updated_at", "id"),
        {"schema": SCHEMA},
    )

    id: uuid.UUID = Field(primary_key=True)
    commune_code: str = Field(max_length=6)
    fiscal_year: int
    name: str = Field(max_length=200)
    budget_khr: int = Field(sa_column=_money())
    max_grant_khr: int = Field(sa_column=_money())
    approval_threshold_khr: int = Field(sa_column=_money())
    topped_up_khr: int = Field(sa_column=_money(default=0))
    committed_khr: int = Field(sa_column=_money(default=0))
    disbursed_khr: int = Field(sa_column=_money(default=0))
    available_khr: int | None = Field(
        default=None,
        sa_column=Column(
            BigInteger,
            Computed("budget_khr + topped_up_khr - committed_khr - disbursed_khr", persisted=True),
            nullable=False,
        ),
    )
    created_by: str = Field(max_length=200)
    created_org: str = Field(max_length=100)
    created_at: datetime = Field(sa_column=now_column())
    updated_at: datetime = Field(sa_column=now_column())
    version: int = 1


class Grant(SQLModel, table=True):
    """Money or material for one child from one fund."""

    __tablename__ = "grants"
    __table_args__ = (
        # the ledger's composite key points here, so an entry cannot name another fund's grant
        UniqueConstraint("id", "fund_id", name="uq_funds_grants_id_fund"),
        CheckConstraint("amount_khr > 0", name="ck_grants_amount_positive"),
        CheckConstraint(_in("status", GRANT_STATUSES), name="ck_grants_status"),
        CheckConstraint(_in("category", CATEGORIES), name="ck_grants_category"),
        CheckConstraint(f"shock IS NULL OR {_in('shock', SHOCKS)}", name="ck_grants_shock"),
        CheckConstraint(
            "(category = 'emergency_disaster') = (shock IS NOT NULL)",
            name="ck_grants_shock_for_disasters",
        ),
        CheckConstraint(
            f"disbursement_method IS NULL OR {_in('disbursement_method', METHODS)}",
            name="ck_grants_method",
        ),
        # at most one open (requested or approved) grant per child and category
        Index(
            "uq_funds_grants_one_open",
            "child_id",
            "category",
            unique=True,
            postgresql_where=text("status IN ('requested', 'approved')"),
        ),
        Index("ix_funds_grants_child", "child_id", "category", "disbursed_at"),
        Index("ix_funds_grants_fund", "fund_id", "status"),
        Index("ix_funds_grants_updated", "updated_at", "id"),
        {"schema": SCHEMA},
    )

    id: uuid.UUID = Field(primary_key=True)
    fund_id: uuid.UUID = Field(foreign_key=f"{SCHEMA}.funds.id")
    child_id: uuid.UUID = Field(foreign_key=f"{SCHEMA}.children.id")
    commune_code: str = Field(max_length=6)
    category: str = Field(max_length=30)
    shock: str | None = Field(default=None, max_length=10)
    items: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSONB))
    amount_khr: int = Field(sa_column=_money())
    justification: str | None = Field(default=None, max_length=2000)
    status: str = Field(max_length=10)
    repeat_within_30_days: bool = False
    approvals_required: int
    requested_by: str = Field(max_length=200)
    requested_org: str = Field(max_length=100)
    disbursement_method: str | None = Field(default=None, max_length=20)
    disbursement_reference: str | None = Field(default=None, max_length=100)
    disbursed_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    created_at: datetime = Field(sa_column=now_column())
    updated_at: datetime = Field(sa_column=now_column())
    version: int = 1


class GrantAction(SQLModel, table=True):
    """Who did what to a grant, and when (append-only)."""

    __tablename__ = "grant_actions"
    __table_args__ = (
        CheckConstraint(
            _in("action", ("requested", "approved", *GRANT_STATUSES[2:])),
            name="ck_grant_actions_action",
        ),
        # one approval per principal and grant, whatever races
        Index(
            "uq_funds_grant_actions_one_approval",
            "grant_id",
            "actor_sub",
            unique=True,
            postgresql_where=text("action = 'approved'"),
        ),
        Index("ix_funds_grant_actions_grant", "grant_id", "id"),
        {"schema": SCHEMA},
    )

    id: int | None = Field(default=None, sa_column=identity_key())
    grant_id: uuid.UUID = Field(foreign_key=f"{SCHEMA}.grants.id")
    action: str = Field(max_length=20)
    actor_sub: str = Field(max_length=200)
    actor_org: str = Field(max_length=100)
    district_level: bool
    reason: str | None = Field(default=None, max_length=2000)
    at: datetime = Field(sa_column=clock_column())
    request_id: str = Field(max_length=128)


class LedgerEntry(SQLModel, table=True):
    """One movement of a fund's money. Append-only: a trigger refuses UPDATE and DELETE."""

    __tablename__ = "ledger"
    __table_args__ = (
        CheckConstraint(_in("kind", LEDGER_KINDS), name="ck_ledger_kind"),
        CheckConstraint("amount_khr > 0", name="ck_ledger_amount_positive"),
        CheckConstraint(
            "(kind = 'top_up') = (grant_id IS NULL)", name="ck_ledger_grant_unless_top_up"
        ),
        CheckConstraint(f"method IS NULL OR {_in('method', METHODS)}", name="ck_ledger_method"),
        CheckConstraint(
            "(kind = 'disbursement') = (method IS NOT NULL)", name="ck_ledger_method_on_payment"
        ),
        CheckConstraint(
            "(kind IN ('top_up', 'disbursement')) = (reference IS NOT NULL)",
            name="ck_ledger_reference_on_money_in_or_out",
        ),
        ForeignKeyConstraint(
            ["grant_id", "fund_id"],
            [f"{SCHEMA}.grants.id", f"{SCHEMA}.grants.fund_id"],
            name="fk_ledger_grant_of_fund",
        ),
        # each kind at most once per grant: one commitment, one disbursement, ...
        UniqueConstraint("grant_id", "kind", name="uq_ledger_grant_kind"),
        # a payment reference pays once per fund and method
        Index(
            "uq_funds_ledger_payment_reference",
            "fund_id",
            "method",
            "reference",
            unique=True,
            postgresql_where=text("kind = 'disbursement'"),
        ),
        # a top-up reference (a transfer slip) is booked once per fund
        Index(
            "uq_funds_ledger_top_up_reference",
            "fund_id",
            "reference",
            unique=True,
            postgresql_where=text("kind = 'top_up'"),
        ),
        Index("ix_funds_ledger_fund", "fund_id", "id"),
        {"schema": SCHEMA},
    )

    id: int | None = Field(default=None, sa_column=identity_key())
    fund_id: uuid.UUID = Field(sa_column=Column(ForeignKey(f"{SCHEMA}.funds.id"), nullable=False))
    kind: str = Field(max_length=20)
    amount_khr: int = Field(sa_column=_money())
    grant_id: uuid.UUID | None = None
    method: str | None = Field(default=None, max_length=20)
    reference: str | None = Field(default=None, max_length=100)
    at: datetime = Field(sa_column=clock_column())
    actor_sub: str = Field(max_length=200)
    actor_org: str = Field(max_length=100)
    request_id: str = Field(max_length=128)


common = common_tables(metadata, SCHEMA)
outbox = common.outbox  # where the use cases write their events
inbox = common.inbox

children = FundChild.__table__  # type: ignore[attr-defined]
funds = Fund.__table__  # type: ignore[attr-defined]
grants = Grant.__table__  # type: ignore[attr-defined]
grant_actions = GrantAction.__table__  # type: ignore[attr-defined]
ledger = LedgerEntry.__table__  # type: ignore[attr-defined]
# Referrals of the children, from referrals.referral.* events (libs.common.access): a
# provider organisation sees the child, and may request a grant for it, while active.
referral_shares = referral_shares_table(metadata, SCHEMA)
