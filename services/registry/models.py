"""Tables of the `registry` schema (and nothing else)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    LargeBinary,
    Sequence,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlmodel import Field, SQLModel

from libs.common.access import referral_shares_table, worker_accounts_table
from libs.common.tables import clock_column, common_tables, identity_key, now_column

SCHEMA = "registry"
metadata = SQLModel.metadata


class Child(SQLModel, table=True):
    """A child's case record."""

    __tablename__ = "children"
    __table_args__ = (
        Index(
            "ix_registry_children_place",
            "place_code",
            postgresql_ops={"place_code": "text_pattern_ops"},
        ),
        # and ix_registry_children_place_key on libs.common.access's place key (migration 0004)
        Index("ix_registry_children_updated", "updated_at", "id"),
        Index("ix_registry_children_owner", "owner_org", "updated_at"),
        Index("ix_registry_children_vuln", "vulnerabilities", postgresql_using="gin"),
        # Written through at once (no pending list): each registration searches it.
        Index(
            "ix_registry_children_name_keys",
            "name_keys",
            postgresql_using="gin",
            postgresql_with={"fastupdate": "off"},
        ),
        {"schema": SCHEMA},
    )

    id: uuid.UUID = Field(primary_key=True)
    case_number: str = Field(max_length=20, unique=True)
    given_name: str = Field(max_length=100)
    family_name: str = Field(max_length=100)
    name_search: str = Field(max_length=420)
    # services.registry.names.name_keys: where likely duplicates are looked for
    name_keys: list[str] = Field(sa_column=Column(ARRAY(Text), nullable=False))
    sex: str = Field(max_length=6)
    birth_date: date
    birth_date_estimated: bool = False
    commune_code: str = Field(max_length=6)
    village_code: str | None = Field(default=None, max_length=8)
    place_code: str = Field(max_length=8)
    caregiver: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB))
    household_id_poor: str | None = Field(default=None, max_length=40)
    id_poor_level: int | None = None
    vulnerabilities: list[str] = Field(sa_column=Column(ARRAY(String(30)), nullable=False))
    risk_level: str = Field(max_length=6)
    care_setting: str = Field(
        default="family", max_length=30, sa_column_kwargs={"server_default": "family"}
    )
    consent: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    status: str = Field(max_length=6)
    close_reason: str | None = Field(default=None, max_length=500)
    owner_org: str = Field(max_length=100)
    created_by: str = Field(max_length=200)
    external_ids: list[dict[str, str]] = Field(sa_column=Column(JSONB, nullable=False))
    registered_on: date
    created_at: datetime = Field(sa_column=now_column())
    updated_at: datetime = Field(sa_column=now_column())
    version: int = 1


class ExternalId(SQLModel, table=True):
    """An organisation's own id for a child: unique per organisation and system."""

    __tablename__ = "external_ids"
    __table_args__ = {"schema": SCHEMA}

    org: str = Field(primary_key=True, max_length=100)
    system: str = Field(primary_key=True, max_length=100)
    value: str = Field(primary_key=True, max_length=200)
    child_id: uuid.UUID = Field(
        sa_column=Column(
            ForeignKey(f"{SCHEMA}.children.id", deferrable=True, initially="DEFERRED"),
            nullable=False,
            index=True,
        )
    )


case_seq = Sequence("case_seq", schema=SCHEMA, metadata=metadata)


class ChildChange(SQLModel, table=True):
    """One change to a child: who, when, which fields, old and new values."""

    __tablename__ = "child_history"
    __table_args__ = (Index("ix_registry_history_child", "child_id", "version"), {"schema": SCHEMA})

    id: int | None = Field(default=None, sa_column=identity_key())
    child_id: uuid.UUID
    version: int
    action: str = Field(max_length=20)
    at: datetime = Field(sa_column=now_column())
    actor_sub: str = Field(max_length=200)
    actor_org: str = Field(max_length=100)
    request_id: str = Field(max_length=128)
    changes: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))


class AuditEntry(SQLModel, table=True):
    """Append-only record of every read and write of a child; hash-chained by the sealer."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_registry_audit_child", "child_id", "seq"),
        Index("ix_registry_audit_unsealed", "seq", postgresql_where=text("chain_seq IS NULL")),
        {"schema": SCHEMA},
    )

    seq: int | None = Field(default=None, sa_column=identity_key())
    at: datetime = Field(sa_column=clock_column())
    actor_sub: str = Field(max_length=200)
    actor_org: str = Field(max_length=100)
    action: str = Field(max_length=20)
    child_id: uuid.UUID
    request_id: str = Field(max_length=128)
    chain_seq: int | None = Field(default=None, sa_column=Column(BigInteger, unique=True))
    prev_hash: bytes | None = Field(default=None, sa_column=Column(LargeBinary))
    hash: bytes | None = Field(default=None, sa_column=Column(LargeBinary))


class AuditHead(SQLModel, table=True):
    """The newest sealed link of the audit chain (one row)."""

    __tablename__ = "audit_head"
    __table_args__ = {"schema": SCHEMA}

    id: int = Field(default=1, primary_key=True)
    chain_seq: int = 0
    hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


common = common_tables(metadata, SCHEMA)

children = Child.__table__  # type: ignore[attr-defined]
external_ids = ExternalId.__table__  # type: ignore[attr-defined]
child_history = ChildChange.__table__  # type: ignore[attr-defined]
audit_log = AuditEntry.__table__  # type: ignore[attr-defined]
audit_head = AuditHead.__table__  # type: ignore[attr-defined]
# An organisation's referrals of a child (libs.common.access): read access while active.
referral_access = referral_shares_table(
    metadata, SCHEMA, "referral_access", index="ix_registry_access_org_child"
)
# Casework workers' accounts: with the assignments kept in referral_access, a worker who
# signs in reads the children assigned to them (libs.common.access).
worker_accounts = worker_accounts_table(metadata, SCHEMA)
