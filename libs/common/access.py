"""Who may see and change a child: the one rule every service applies, written once.

A child's place is its listed commune and village (the gazetteer lists a few villages
under a commune their code does not start with; the listed commune owns them). A child is
visible to a principal when one of its areas covers that place and, for a partner, when
its organisation registered the child or holds an active referral for it. An active
referral is one `accepted`, or `completed` less than 30 days ago, evaluated at read time;
a declined or cancelled referral gives nothing. Access through a referral is read-only:
only the registering organisation, or government staff covering the place, may change,
close or reopen a child. docs/api-guide.md#access says the same for clients.

Each service keeps the referral shares it learns from `referrals.referral.*` events in a
table of its own schema (`referral_shares_table`, written by `apply_referral_event`, or by
`apply_referral_events` in one statement for a consumer's batch); the referrals service
reads its own referrals. The Python predicates and the SQL builders below take the columns
of each service's projection, so the rule is the same everywhere.

A casework worker who signs in as a user (their token's `preferred_username` is the
worker's `username`) also reads, read-only, the children assigned to them, within their
areas: a service that serves children to such users keeps each active assignment as a
share to the grantee `@worker/<worker id>` in the same table (`apply_assignment_events`) and
the workers' accounts in a `worker_accounts_table` (`apply_worker_events`), and passes that
table to the SQL builders (the casework service reads its own assignments, as the
referrals service reads its own referrals). Another user of the worker's organisation sees
nothing more than the organisation sees; a new assignment ends the previous worker's share.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    DateTime,
    FromClause,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Uuid,
    and_,
    cast,
    func,
    literal_column,
    or_,
    select,
    text,
    true,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common import store
from libs.common.auth import COUNTRY, Principal
from libs.common.errors import Forbidden
from libs.common.events import CloudEvent
from libs.common.events.casework_events import AssignmentV1, WorkerUpsertedV1
from libs.common.events.referrals_events import ReferralV1

# How long a completed referral still lets its provider's organisation read the child.
ACCESS_AFTER_COMPLETION = timedelta(days=30)
_INTERVAL = f"{ACCESS_AFTER_COMPLETION.days} days"

READ_ONLY = (
    "access through a referral is read-only: only the registering organisation, or "
    "government staff covering the child's place, may change, close or reopen this child"
)


# ---------------------------------------------------------------- the rule, in Python


@dataclass(frozen=True)
class Share:
    """A referral of a child to an organisation, as a service's projection keeps it."""

    org: str
    status: str
    completed_at: datetime | None = None


def share_active(status: str, completed_at: datetime | None, now: datetime | None = None) -> bool:
    """Whether a referral in this state lets its provider's organisation read the child:
    accepted, or completed less than 30 days ago."""
    if status == "accepted":
        return True
    if status != "completed" or completed_at is None:
        return False
    return (now or datetime.now(UTC)) - completed_at < ACCESS_AFTER_COMPLETION


def sees_child(
    principal: Principal,
    *,
    commune: str,
    village: str | None,
    owner_org: str,
    shares: Iterable[Share] = (),
    now: datetime | None = None,
) -> bool:
    """Whether the principal may read a child at the place (listed commune, village)."""
    if not principal.covers_place(commune, village):
        return False
    if not principal.is_partner or owner_org == principal.org:
        return True
    return any(
        s.org == principal.org and share_active(s.status, s.completed_at, now) for s in shares
    )


def may_change_child(principal: Principal, owner_org: str) -> bool:
    """Whether a principal who may read a child may also change, close or reopen it: the
    registering organisation, or a government principal (whose areas cover the place)."""
    return not principal.is_partner or principal.org == owner_org


def require_change(principal: Principal, owner_org: str) -> None:
    """403 for a principal who may read the child but not change it (a referral's)."""
    if not may_change_child(principal, owner_org):
        raise Forbidden(READ_ONLY)


# ---------------------------------------------------------------- the rule, in SQL


def place_key(commune: str, village: str | None) -> str:
    """The string the area patterns match: `<listed commune>/<village or nothing>`."""
    return f"{commune}/{village or ''}"


def area_patterns(principal: Principal) -> list[str] | None:
    """LIKE patterns over place_key, one per area; None for the whole country. An area
    down to commune level prefixes the listed commune; a village area names the village."""
    if COUNTRY in principal.areas:
        return None
    return [f"%/{a}" if len(a) == 8 else f"{a}%" for a in principal.areas]


def place_key_sql(commune: Any, village: Any) -> ColumnElement[str]:
    """place_key over a projection's commune and village columns."""
    # Constants inline (not parameters), so the expression matches an index on it.
    key: ColumnElement[str] = commune.concat(literal_column("'/'")).concat(
        func.coalesce(village, literal_column("''"))
    )
    return key


def covers_sql(principal: Principal, commune: Any, village: Any) -> ColumnElement[bool]:
    """SQL form of Principal.covers_place over a commune and a village column."""
    patterns = area_patterns(principal)
    if patterns is None:
        return true()
    key = place_key_sql(commune, village)
    return or_(*[key.like(p) for p in patterns])


def share_active_sql(status: Any, completed_at: Any) -> ColumnElement[bool]:
    """SQL form of share_active over a status and a completion-time column."""
    return or_(
        status == "accepted",
        and_(status == "completed", completed_at > func.now() - text(f"interval '{_INTERVAL}'")),
    )


@dataclass(frozen=True)
class ShareColumns:
    """Where a service keeps its referral shares: the table (or alias) and its columns."""

    table: FromClause
    child_id: Any
    org: Any
    status: Any
    completed_at: Any


def shares_of(table: Table) -> ShareColumns:
    """The ShareColumns of a referral_shares_table."""
    c = table.c
    return ShareColumns(table, c.child_id, c.org, c.status, c.completed_at)


def child_visible_sql(
    principal: Principal,
    *,
    commune: Any,
    village: Any,
    owner: Any,
    child_id: Any,
    shares: ShareColumns,
    workers: Table | None = None,
) -> ColumnElement[bool]:
    """SQL form of sees_child over a projection's columns and its referral shares (and,
    given the service's `worker_accounts_table`, its assignment shares)."""
    clauses: list[ColumnElement[bool]] = [covers_sql(principal, commune, village)]
    if principal.is_partner:
        grantee = shares.org == principal.org
        if workers is not None and principal.username:
            # the share grantees of the principal's worker records (its account, its org)
            w = workers.c
            grantee = or_(
                grantee,
                shares.org.in_(
                    select(
                        literal_column(f"'{WORKER_GRANTEE}'").concat(cast(w.worker_id, String))
                    ).where(w.username == principal.username, w.org == principal.org)
                ),
            )
        shared = (
            select(shares.child_id)
            .select_from(shares.table)
            .where(grantee, share_active_sql(shares.status, shares.completed_at))
        )
        clauses.append(or_(owner == principal.org, child_id.in_(shared)))
    return and_(*clauses)


def children_visible_sql(
    principal: Principal, children: Table, shares: ShareColumns, workers: Table | None = None
) -> ColumnElement[bool]:
    """child_visible_sql over a children table or projection (its commune_code,
    village_code, owner_org and id): the one form every service's store uses."""
    c = children.c
    return child_visible_sql(
        principal,
        commune=c.commune_code,
        village=c.village_code,
        owner=c.owner_org,
        child_id=c.id,
        shares=shares,
        workers=workers,
    )


def visibility_args(principal: Principal) -> tuple[list[str] | None, str | None]:
    """The two parameters of child_visible_text: the area patterns (None: the whole
    country) and the partner's organisation (None: government)."""
    return area_patterns(principal), principal.org if principal.is_partner else None


def covers_text(patterns: str, commune: str = "commune_code", village: str = "village_code") -> str:
    """SQL text form of covers_sql for hand-written statements: `patterns` an SQL
    expression of visibility_args' area patterns (NULL: the whole country)."""
    return (
        f"({patterns}::text[] IS NULL"
        f" OR ({commune} || '/' || coalesce({village}, '')) LIKE ANY({patterns}))"
    )


def child_visible_text(
    patterns: str,
    org: str,
    *,
    shares: str,
    commune: str = "commune_code",
    village: str = "village_code",
    owner: str = "owner_org",
    child_id: str = "id",
    user: str | None = None,
    workers: str | None = None,
) -> str:
    """SQL text form of sees_child for hand-written statements: `patterns` and `org` are
    SQL expressions of visibility_args' two values, the rest column names (qualified as the
    statement needs) and `shares` a referral_shares_table's qualified name; with `workers`
    (a worker_accounts_table's qualified name), `user` is an SQL expression of the
    principal's username (NULL for an API client), whose assignment shares count too."""
    active = (
        f"(s.status = 'accepted' OR (s.status = 'completed'"
        f" AND s.completed_at > now() - interval '{_INTERVAL}'))"
    )
    grantee = f"s.org = {org}"
    if workers is not None and user is not None:
        grantee = (
            f"(s.org = {org} OR s.org IN (SELECT '{WORKER_GRANTEE}' || w.worker_id::text"
            f" FROM {workers} w WHERE w.username = {user}::text AND w.org = {org}))"
        )
    return (
        f"{covers_text(patterns, commune, village)}"
        f" AND ({org}::text IS NULL OR {owner} = {org} OR {child_id} IN ("
        f"SELECT s.child_id FROM {shares} s WHERE {grantee} AND {active}))"
    )


# ---------------------------------------------------------------- the shares projection


def referral_shares_table(
    metadata: MetaData, schema: str, name: str = "referral_shares", index: str | None = None
) -> Table:
    """A service's projection of referrals: which organisation provides which child's
    referral, in which state, completed when. `version` is the referral's, so an older
    event never overwrites a newer one."""
    return Table(
        name,
        metadata,
        Column("referral_id", Uuid, primary_key=True),
        Column("child_id", Uuid, nullable=False),
        Column("org", String(100), nullable=False),
        Column("status", String(10), nullable=False),
        Column("completed_at", DateTime(timezone=True), nullable=True),
        Column("version", Integer, nullable=False),
        Index(index or f"ix_{schema}_{name}_org_child", "org", "child_id"),
        schema=schema,
    )


async def apply_referral_event(
    conn: AsyncConnection, table: Table, event: CloudEvent, referral: ReferralV1
) -> None:
    """Record a `referrals.referral.*` event in a shares projection (newest version wins);
    a completion is dated by its event."""
    await apply_referral_events(conn, table, [(event, referral)])


async def apply_referral_events(
    conn: AsyncConnection, table: Table, events: Sequence[tuple[CloudEvent, ReferralV1]]
) -> None:
    """`apply_referral_event` for a run of events (in stream order), in one statement: each
    referral's newest version, unless the stored one is as new (the consumer's `batch=`)."""
    await store.upsert_referral_shares(conn, table, [_share_row(e, r) for e, r in events])


def _share_row(event: CloudEvent, referral: ReferralV1) -> dict[str, Any]:
    return {
        "referral_id": uuid.UUID(referral.referral_id),
        "child_id": uuid.UUID(referral.child_id),
        "org": referral.provider_org,
        "status": referral.status,
        "completed_at": _aware(event.time) if referral.status == "completed" else None,
        "version": referral.version,
    }


# ---------------------------------------------------------------- casework assignments

# The grantee of an assignment share, `@worker/<worker id>`: never an organisation's id
# (those have no `@` or `/`: gateway/schemas.py), so no organisation can match it.
WORKER_GRANTEE = "@worker/"


def worker_accounts_table(metadata: MetaData, schema: str) -> Table:
    """A service's projection of casework workers' accounts: which gateway user (by
    username, of the worker's organisation) is which worker. `version` is the worker's."""
    return Table(
        "worker_accounts",
        metadata,
        Column("worker_id", Uuid, primary_key=True),
        Column("username", String(64), nullable=True),
        Column("org", String(100), nullable=False),
        Column("version", Integer, nullable=False),
        Index(f"ix_{schema}_worker_accounts_username", "username"),
        schema=schema,
    )


async def apply_worker_events(
    conn: AsyncConnection, table: Table, events: Sequence[tuple[CloudEvent, WorkerUpsertedV1]]
) -> None:
    """Record `casework.worker.upserted` events' accounts (newest version wins)."""
    rows = [
        {
            "worker_id": uuid.UUID(w.worker_id),
            "username": w.username,
            "org": w.org,
            "version": w.version,
        }
        for _, w in events
    ]
    await store.upsert_newest(
        conn, table, rows, key="worker_id", updated=("username", "org", "version")
    )


async def apply_assignment_events(
    conn: AsyncConnection, table: Table, events: Sequence[tuple[CloudEvent, AssignmentV1]]
) -> None:
    """Record `casework.assignment.*` events as shares of their child to their worker: an
    active assignment lets the worker's account read the child; an ended one no longer."""
    rows = [
        {
            "referral_id": uuid.UUID(a.assignment_id),
            "child_id": uuid.UUID(a.child_id),
            "org": f"{WORKER_GRANTEE}{a.worker_id}",
            "status": "accepted" if a.status == "active" else "cancelled",
            "completed_at": None,
            "version": 1 if a.status == "active" else 2,
        }
        for _, a in events
    ]
    await store.upsert_referral_shares(conn, table, rows)


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


REFERRAL_EVENT_TYPES = tuple(
    f"referrals.referral.{verb}.v1"
    for verb in ("created", "accepted", "declined", "completed", "cancelled", "overdue")
)
