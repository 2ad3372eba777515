"""Tables of the `indicators` schema (and nothing else).

Every aggregate and the per-generation inbox carry a `generation`: a rebuild replays the
streams into generation N+1 beside the live N, then switches `generations.active` in one
transaction. No table holds a name, a birth date finer than a month, or free text.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Index,
    LargeBinary,
    SmallInteger,
    String,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Field, SQLModel

from libs.common.tables import common_tables, now_column

SCHEMA = "indicators"
metadata = SQLModel.metadata


class Generation(SQLModel, table=True):
    """One complete set of aggregates: the active one answers, a building one is a rebuild."""

    __tablename__ = "generations"
    __table_args__ = (
        Index(
            "ux_indicators_one_active",
            "active",
            unique=True,
            postgresql_where=text("active"),
        ),
        {"schema": SCHEMA},
    )

    generation: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    active: bool = False
    state: str = Field(max_length=10)  # building | active | retired | failed
    # Monthly stock cells are complete up to this month index; NULL: none materialised yet.
    stock_through: int | None = None
    events_replayed: int = 0
    started_at: datetime = Field(sa_column=now_column())
    finished_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


class AppliedEvent(SQLModel, table=True):
    """The events a generation has applied (its own inbox), so each counts exactly once."""

    __tablename__ = "applied_events"
    __table_args__ = {"schema": SCHEMA}

    generation: int = Field(primary_key=True)
    event_id: uuid.UUID = Field(primary_key=True)


class IndicatorCell(SQLModel, table=True):
    """One aggregate: indicator x period x commune x category option combo.

    Flows have month, quarter and year cells; stocks have month cells (period = month).
    """

    __tablename__ = "cells"
    __table_args__ = {"schema": SCHEMA}

    generation: int = Field(primary_key=True)
    indicator: str = Field(primary_key=True, max_length=30)
    period: str = Field(primary_key=True, max_length=8)
    # "C" collation: a commune prefix (LIKE '1201%') is an index range.
    commune: str = Field(sa_column=Column(String(6, collation="C"), primary_key=True))
    combo: str = Field(primary_key=True, max_length=40)
    value: int = Field(sa_column=Column(BigInteger, nullable=False))
    updated_at: datetime = Field(sa_column=now_column())


class ChildVersionRow(SQLModel, table=True):
    """A child as indicators know it, one row per version: codes, sex, birth month only."""

    __tablename__ = "child_versions"
    __table_args__ = {"schema": SCHEMA}

    generation: int = Field(primary_key=True)
    child_id: uuid.UUID = Field(primary_key=True)
    version: int = Field(primary_key=True)
    effective_month: int
    commune: str = Field(max_length=6)
    sex: str = Field(max_length=1)
    birth_month: int
    status: str = Field(max_length=10)
    risk: str = Field(max_length=10)
    vulnerabilities: list[str] = Field(sa_column=Column(ARRAY(String(30)), nullable=False))
    care_setting: str = Field(
        sa_column=Column(String(30), nullable=False, server_default=text("'family'"))
    )


class ProviderVersionRow(SQLModel, table=True):
    """A service provider, one row per version: service types, served areas, active flag."""

    __tablename__ = "provider_versions"
    __table_args__ = {"schema": SCHEMA}

    generation: int = Field(primary_key=True)
    provider_id: uuid.UUID = Field(primary_key=True)
    version: int = Field(primary_key=True)
    effective_month: int
    active: bool
    service_types: list[str] = Field(sa_column=Column(ARRAY(String(30)), nullable=False))
    areas: list[str] = Field(sa_column=Column(ARRAY(String(8)), nullable=False))
    recorded_at: datetime = Field(sa_column=now_column())


class WorkerVersionRow(SQLModel, table=True):
    """A casework worker, one row per version: role, places served, status, contract
    periods and the day child_protection_basics was completed; no name, no phone."""

    __tablename__ = "worker_versions"
    __table_args__ = {"schema": SCHEMA}

    generation: int = Field(primary_key=True)
    worker_id: uuid.UUID = Field(primary_key=True)
    version: int = Field(primary_key=True)
    effective_month: int
    status: str = Field(max_length=10)
    role: str = Field(max_length=40)
    areas: list[str] = Field(sa_column=Column(ARRAY(String(8)), nullable=False))
    # contracts as "start_on/end_on" ("start_on/" when open-ended)
    contracts: list[str] = Field(sa_column=Column(ARRAY(String(21)), nullable=False))
    trained_on: date | None = None
    recorded_at: datetime = Field(sa_column=now_column())


class WorkerCaseloadRow(SQLModel, table=True):
    """A worker's caseload and maximum after one assignment change (one row per event)."""

    __tablename__ = "worker_caseloads"
    __table_args__ = {"schema": SCHEMA}

    generation: int = Field(primary_key=True)
    event_id: uuid.UUID = Field(primary_key=True)
    worker_id: uuid.UUID
    on_day: date
    at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    caseload: int
    max_caseload: int
    recorded_at: datetime = Field(sa_column=now_column())


class AssignmentRow(SQLModel, table=True):
    """A child's assignment to a worker: when it started and (once known) ended."""

    __tablename__ = "assignments"
    __table_args__ = (
        Index("ix_indicators_assignments_child", "generation", "child_id"),
        {"schema": SCHEMA},
    )

    generation: int = Field(primary_key=True)
    assignment_id: uuid.UUID = Field(primary_key=True)
    child_id: uuid.UUID
    worker_id: uuid.UUID
    started_on: date
    ended_on: date | None = None
    recorded_at: datetime = Field(sa_column=now_column())


class VisitFlagRow(SQLModel, table=True):
    """A child flagged overdue for a visit, or its flag cleared (one row per event)."""

    __tablename__ = "visit_flags"
    __table_args__ = (
        Index("ix_indicators_visit_flags_child", "generation", "child_id"),
        {"schema": SCHEMA},
    )

    generation: int = Field(primary_key=True)
    event_id: uuid.UUID = Field(primary_key=True)
    child_id: uuid.UUID
    on_day: date
    at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    overdue: bool
    recorded_at: datetime = Field(sa_column=now_column())


class ReintegrationRow(SQLModel, table=True):
    """A child's move from residential care into a family, kinship or foster setting."""

    __tablename__ = "reintegrations"
    __table_args__ = (
        Index("ix_indicators_reintegrations_child", "generation", "child_id"),
        {"schema": SCHEMA},
    )

    generation: int = Field(primary_key=True)
    event_id: uuid.UUID = Field(primary_key=True)
    child_id: uuid.UUID
    on_day: date
    recorded_at: datetime = Field(sa_column=now_column())


class FollowupRow(SQLModel, table=True):
    """The reintegration follow-ups (months after the move) a visit made."""

    __tablename__ = "followups"
    __table_args__ = (
        Index("ix_indicators_followups_child", "generation", "child_id"),
        {"schema": SCHEMA},
    )

    generation: int = Field(primary_key=True)
    visit_id: uuid.UUID = Field(primary_key=True)
    child_id: uuid.UUID
    on_day: date
    months: list[int] = Field(sa_column=Column(ARRAY(SmallInteger), nullable=False))
    recorded_at: datetime = Field(sa_column=now_column())


class RoundingKey(SQLModel, table=True):
    """The one secret of the small-cell rounding (a single row, made at the first start).

    Every replica, restart and rebuild reads the same key, so a cell always rounds the same
    way. It is not part of a generation: a rebuild keeps it.
    """

    __tablename__ = "rounding_key"
    __table_args__ = (
        CheckConstraint("id = 1", name="ck_rounding_key_one_row"),
        CheckConstraint("length(key) >= 32", name="ck_rounding_key_length"),
        {"schema": SCHEMA},
    )

    id: int = Field(
        default=1,
        sa_column=Column(SmallInteger, primary_key=True, server_default=text("1")),
    )
    key: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = Field(sa_column=now_column())


common = common_tables(metadata, SCHEMA)

generations = Generation.__table__  # type: ignore[attr-defined]
applied_events = AppliedEvent.__table__  # type: ignore[attr-defined]
cells = IndicatorCell.__table__  # type: ignore[attr-defined]
child_versions = ChildVersionRow.__table__  # type: ignore[attr-defined]
provider_versions = ProviderVersionRow.__table__  # type: ignore[attr-defined]
rounding_key = RoundingKey.__table__  # type: ignore[attr-defined]
worker_versions = WorkerVersionRow.__table__  # type: ignore[attr-defined]
worker_caseloads = WorkerCaseloadRow.__table__  # type: ignore[attr-defined]
assignments = AssignmentRow.__table__  # type: ignore[attr-defined]
visit_flags = VisitFlagRow.__table__  # type: ignore[attr-defined]
reintegrations = ReintegrationRow.__table__  # type: ignore[attr-defined]
followups = FollowupRow.__table__  # type: ignore[attr-defined]
AGGREGATES = (
    applied_events,
    cells,
    child_versions,
    provider_versions,
    worker_versions,
    worker_caseloads,
    assignments,
    visit_flags,
    reintegrations,
    followups,
)
