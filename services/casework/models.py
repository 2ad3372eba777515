"""Tables of the `casework` schema (and nothing else)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Identity,
    Index,
    Integer,
    SmallInteger,
    String,
    Table,
    Text,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlmodel import SQLModel

from libs.common.access import referral_shares_table
from libs.common.tables import common_tables

SCHEMA = "casework"
metadata = SQLModel.metadata

# What casework knows of a child from registry.child.* events (never a name), and the
# child's casework state: its visit schedule, the overdue flag and the latest reintegration.
children = Table(
    "children",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("commune_code", String(6), nullable=False),
    Column("village_code", String(8), nullable=True),
    Column("owner_org", String(100), nullable=False),
    Column("status", String(6), nullable=False),
    Column("care_setting", String(30), nullable=False),
    Column("sex", String(10), nullable=False),
    Column("birth_month", String(7), nullable=False),
    Column("version", Integer, nullable=False),
    Column("synced_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    # casework's own state of the child
    Column("last_visit_on", Date, nullable=True),
    Column("next_visit_on", Date, nullable=True),
    Column("overdue", Boolean, nullable=False, server_default=text("false")),
    Column("overdue_due_on", Date, nullable=True),
    Column("reintegrated_on", Date, nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Index("ix_casework_children_updated", "updated_at", "id"),
    Index(
        "ix_casework_children_due",
        "next_visit_on",
        postgresql_where=text("next_visit_on IS NOT NULL AND NOT overdue"),
    ),
    schema=SCHEMA,
)

# A worker: the people who follow children. Names and phone never leave this table.
workers = Table(
    "workers",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("org", String(100), nullable=False),
    Column("org_type", String(10), nullable=False),
    Column("role", String(30), nullable=False),
    Column("given_name", String(100), nullable=False),
    Column("family_name", String(100), nullable=False),
    Column("sex", String(10), nullable=False),
    Column("phone", String(30), nullable=True),
    Column("areas", ARRAY(String(8)), nullable=False),
    Column("username", String(100), nullable=True, unique=True),
    Column("max_caseload", Integer, nullable=False),
    Column("status", String(10), nullable=False),
    Column("trainings", JSONB, nullable=False),
    Column("contracts", JSONB, nullable=False),
    # Active assignments: changed only under the worker's row lock.
    Column("caseload", Integer, nullable=False, server_default=text("0")),
    Column("created_by", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("version", Integer, nullable=False),
    Index("ix_casework_workers_updated", "updated_at", "id"),
    Index("ix_casework_workers_areas", "areas", postgresql_using="gin"),
    Index("ix_casework_workers_org", "org", "updated_at"),
    schema=SCHEMA,
)

# Every version of a worker: who changed which fields, when (not the values: the worker's
# row holds the current ones).
worker_history = Table(
    "worker_history",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("worker_id", Uuid, nullable=False),
    Column("version", Integer, nullable=False),
    Column("changed", ARRAY(String(30)), nullable=False),
    Column("actor_sub", String(200), nullable=False),
    Column("actor_org", String(100), nullable=False),
    Column("request_id", String(200), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Index("ix_casework_worker_history_worker", "worker_id", "id"),
    schema=SCHEMA,
)

# A child's worker over a period: at most one active per child.
assignments = Table(
    "assignments",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("child_id", Uuid, nullable=False),
    Column("worker_id", Uuid, nullable=False),
    Column("commune_code", String(6), nullable=False),
    Column("village_code", String(8), nullable=True),
    Column("org", String(100), nullable=False),
    Column("status", String(10), nullable=False),
    Column("started_on", Date, nullable=False),
    Column("ended_on", Date, nullable=True),
    Column("override", Boolean, nullable=False),
    Column("override_justification", Text, nullable=True),
    Column("assigned_by_sub", String(200), nullable=False),
    Column("assigned_by_org", String(100), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("version", Integer, nullable=False),
    Index("ix_casework_assignments_updated", "updated_at", "id"),
    Index("ix_casework_assignments_worker", "worker_id", "status"),
    Index(
        "ux_casework_assignments_active_child",
        "child_id",
        unique=True,
        postgresql_where=text("status = 'active'"),
    ),
    Index("ix_casework_assignments_child", "child_id", "started_on"),
    schema=SCHEMA,
)

# A child's case plan (one per child), versioned.
plans = Table(
    "plans",
    metadata,
    Column("id", Uuid, primary_key=True),  # the child's id
    Column("goals", JSONB, nullable=False),
    Column("updated_by_sub", String(200), nullable=False),
    Column("updated_by_org", String(100), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("version", Integer, nullable=False),
    schema=SCHEMA,
)

# A visit made; `notes` never leave this table.
visits = Table(
    "visits",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("child_id", Uuid, nullable=False),
    Column("worker_id", Uuid, nullable=True),
    Column("commune_code", String(6), nullable=False),
    Column("village_code", String(8), nullable=True),
    Column("date", Date, nullable=False),
    Column("kind", String(20), nullable=False),
    Column("outcome", String(10), nullable=False),
    Column("notes", Text, nullable=True),
    Column("next_visit_on", Date, nullable=True),
    Column("followups_made", ARRAY(SmallInteger), nullable=False),
    Column("recorded_by_sub", String(200), nullable=False),
    Column("recorded_by_org", String(100), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("version", Integer, nullable=False, server_default=text("1")),
    Index("ix_casework_visits_updated", "updated_at", "id"),
    Index("ix_casework_visits_child", "child_id", "date"),
    schema=SCHEMA,
)

# The follow-up visits of a reintegration: due 1, 3, 6 and 12 months after the move.
followups = Table(
    "followups",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("child_id", Uuid, nullable=False),
    Column("reintegrated_on", Date, nullable=False),
    Column("month", SmallInteger, nullable=False),
    Column("opens_on", Date, nullable=False),
    Column("due_on", Date, nullable=False),
    Column("made_on", Date, nullable=True),
    Column("visit_id", Uuid, nullable=True),
    Index(
        "ux_casework_followups_child_month",
        "child_id",
        "reintegrated_on",
        "month",
        unique=True,
    ),
    schema=SCHEMA,
)

# Which organisation provides which child's referral (read access, libs.common.access).
referral_shares = referral_shares_table(metadata, SCHEMA)

common = common_tables(metadata, SCHEMA)
outbox = common.outbox  # where the use cases write their events
