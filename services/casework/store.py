"""Every SQL statement of the casework service."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import (
    ColumnElement,
    String,
    and_,
    bindparam,
    func,
    insert,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common import access
from libs.common.auth import COUNTRY, Principal
from libs.common.http import Page
from libs.common.store import (
    driver_connection,
    read_page,
    upsert_newest,
    versioned_update,
    where_given,
)
from services.casework.models import (
    assignments,
    children,
    followups,
    plans,
    referral_shares,
    visits,
    worker_history,
    workers,
)

# A row as read by key: SQLAlchemy's RowMapping, or (the visit's hand-written statements,
# run on asyncpg through libs.common.store.driver_connection) an asyncpg Record; the values
# are the same Python objects either way.
Row = RowMapping


SHARES = access.shares_of(referral_shares)

# ---------------------------------------------------------------- children (projection)


async def apply_children(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> set[Any]:
    """Insert or update children (rows in stream order) in one statement: each child's
    newest version, unless the stored one is as new; the ids written."""
    return await upsert_newest(conn, children, rows, stamped="synced_at")


def child_visible_to(principal: Principal) -> ColumnElement[bool]:
    """Which projected children the principal may read (libs.common.access): and, for a
    user who is a worker (its username and organisation a worker's), the children assigned
    to that worker within the user's areas (read-only, as through a referral)."""
    visible = access.children_visible_sql(principal, children, SHARES)
    if not principal.is_partner or principal.username is None:
        return visible
    a, w, c = assignments.c, workers.c, children.c
    assigned = (
        select(a.child_id)
        .select_from(assignments.join(workers, w.id == a.worker_id))
        .where(a.status == "active", w.username == principal.username, w.org == principal.org)
    )
    mine = and_(access.covers_sql(principal, c.commune_code, c.village_code), c.id.in_(assigned))
    return or_(visible, mine)


async def get_child(
    conn: AsyncConnection,
    child_id: uuid.UUID,
    principal: Principal | None = None,
    *,
    lock: bool = False,
) -> Row | None:
    """A projected child (visible to the principal when one is given); None otherwise."""
    query = select(children).where(children.c.id == child_id)
    if principal is not None:
        query = query.where(child_visible_to(principal))
    if lock:
        query = query.with_for_update(of=children)
    return (await conn.execute(query)).mappings().first()


async def update_child(conn: AsyncConnection, child_id: uuid.UUID, values: dict[str, Any]) -> Row:
    """Change a child's casework state (its visit schedule, overdue flag, reintegration)."""
    result = await conn.execute(
        update(children)
        .where(children.c.id == child_id)
        .values(**values, updated_at=func.now())
        .returning(*children.c)
    )
    return result.mappings().one()


# ---------------------------------------------------------------- workers


def _related(areas: Any, param: str, values: list[str]) -> ColumnElement[bool]:
    """Some area of `areas` (a worker's) covers or lies within one of `values`."""
    clause = text(
        f"EXISTS (SELECT 1 FROM unnest({areas}) AS w(code), unnest(:{param}) AS a(code)"
        f" WHERE w.code = '{COUNTRY}' OR w.code LIKE a.code || '%' OR a.code LIKE w.code || '%')"
    ).bindparams(bindparam(param, values, type_=ARRAY(String)))
    return clause  # type: ignore[return-value]


def worker_visible_to(principal: Principal) -> ColumnElement[bool]:
    """Workers whose areas the principal's cover or lie within; a partner's own only."""
    clauses: list[ColumnElement[bool]] = []
    if not principal.is_national:
        clauses.append(_related("casework.workers.areas", "principal_areas", list(principal.areas)))
    if principal.is_partner:
        clauses.append(workers.c.org == principal.org)
    return and_(true(), *clauses)


async def insert_worker(conn: AsyncConnection, row: dict[str, Any]) -> Row | None:
    """A new worker; None when its username was taken meanwhile (nothing written)."""
    result = await conn.execute(
        pg_insert(workers)
        .values(**row, version=1)
        .on_conflict_do_nothing(index_elements=["username"])
        .returning(*workers.c)
    )
    return result.mappings().first()


async def get_worker(
    conn: AsyncConnection,
    worker_id: uuid.UUID,
    principal: Principal | None = None,
    *,
    lock: bool = False,
) -> Row | None:
    """One worker (visible to the principal when given); None when absent or invisible."""
    query = select(workers).where(workers.c.id == worker_id)
    if principal is not None:
        query = query.where(worker_visible_to(principal))
    if lock:
        query = query.with_for_update(of=workers)
    return (await conn.execute(query)).mappings().first()


async def username_taken(
    conn: AsyncConnection, username: str, other_than: uuid.UUID | None = None
) -> bool:
    query = select(workers.c.id).where(workers.c.username == username)
    if other_than is not None:
        query = query.where(workers.c.id != other_than)
    return (await conn.execute(query)).first() is not None


async def update_worker(
    conn: AsyncConnection, worker_id: uuid.UUID, version: int, values: dict[str, Any]
) -> Row | None:
    """New values and version + 1 of a worker the caller holds locked; None (nothing
    written) when its new username was taken meanwhile."""
    try:
        async with conn.begin_nested():
            result = await conn.execute(versioned_update(workers, worker_id, version, values))
            return result.mappings().one()
    except IntegrityError:
        return None


async def add_worker_history(conn: AsyncConnection, row: dict[str, Any]) -> None:
    """One version of a worker: who changed which fields (in the change's transaction)."""
    await conn.execute(insert(worker_history).values(**row))


async def list_worker_history(conn: AsyncConnection, worker_id: uuid.UUID, page: Page) -> list[Row]:
    """A worker's versions, oldest first, one more than the page (keyed by id)."""
    h = worker_history.c
    query = select(worker_history).where(h.worker_id == worker_id)
    return await read_page(conn, query, page, key=(h.id,), changed_at=h.at)


async def lock_workers(conn: AsyncConnection, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Row]:
    """Lock workers in id order (so two assigners never deadlock); the rows by id."""
    found: dict[uuid.UUID, Row] = {}
    for worker_id in sorted(set(ids), key=str):
        row = await get_worker(conn, worker_id, lock=True)
        if row is not None:
            found[worker_id] = row
    return found


async def change_caseload(conn: AsyncConnection, worker_id: uuid.UUID, delta: int) -> Row:
    """Add `delta` to a locked worker's active assignments (the version is not bumped: the
    caseload is counted, not edited)."""
    result = await conn.execute(
        update(workers)
        .where(workers.c.id == worker_id)
        .values(caseload=workers.c.caseload + delta)
        .returning(*workers.c)
    )
    return result.mappings().one()


@dataclass(frozen=True)
class WorkerFilter:
    role: str | None = None
    status: str | None = None
    area: str | None = None
    org: str | None = None


async def list_workers(
    conn: AsyncConnection, principal: Principal, flt: WorkerFilter, page: Page
) -> list[Row]:
    """Visible workers in (updated_at, id) order, one more than the page."""
    c = workers.c
    query = select(workers).where(worker_visible_to(principal))
    query = where_given(query, (c.role, flt.role), (c.status, flt.status), (c.org, flt.org))
    if flt.area is not None:
        query = query.where(_related("casework.workers.areas", "area", [flt.area]))
    return await read_page(conn, query, page, key=(c.updated_at, c.id), changed_at=c.updated_at)


# ---------------------------------------------------------------- assignments


def _about_visible_child(table: Any, principal: Principal) -> Any:
    """select(table) kept to rows about children the principal may read."""
    return (
        select(table)
        .select_from(table.join(children, children.c.id == table.c.child_id))
        .where(child_visible_to(principal))
    )


async def insert_assignment(conn: AsyncConnection, row: dict[str, Any]) -> Row:
    result = await conn.execute(
        insert(assignments).values(**row, version=1).returning(*assignments.c)
    )
    return result.mappings().one()


async def active_assignment(conn: AsyncConnection, child_id: uuid.UUID) -> Row | None:
    """The child's active assignment, if any."""
    query = select(assignments).where(
        assignments.c.child_id == child_id, assignments.c.status == "active"
    )
    return (await conn.execute(query)).mappings().first()


async def end_assignment(conn: AsyncConnection, assignment: Row, on: date) -> Row:
    """End an active assignment on `on` (the child's row is locked by the caller)."""
    values = {"status": "ended", "ended_on": on}
    result = await conn.execute(
        versioned_update(assignments, assignment["id"], assignment["version"], values)
    )
    return result.mappings().one()


async def get_assignment(
    conn: AsyncConnection, assignment_id: uuid.UUID, principal: Principal
) -> Row | None:
    query = _about_visible_child(assignments, principal).where(assignments.c.id == assignment_id)
    return (await conn.execute(query)).mappings().first()


@dataclass(frozen=True)
class AssignmentFilter:
    worker_id: uuid.UUID | None = None
    child_id: uuid.UUID | None = None
    status: str | None = None


async def list_assignments(
    conn: AsyncConnection, principal: Principal, flt: AssignmentFilter, page: Page
) -> list[Row]:
    c = assignments.c
    query = where_given(
        _about_visible_child(assignments, principal),
        (c.worker_id, flt.worker_id),
        (c.child_id, flt.child_id),
        (c.status, flt.status),
    )
    return await read_page(conn, query, page, key=(c.updated_at, c.id), changed_at=c.updated_at)


# ---------------------------------------------------------------- plans


async def get_plan(conn: AsyncConnection, child_id: uuid.UUID, *, lock: bool = False) -> Row | None:
    query = select(plans).where(plans.c.id == child_id)
    if lock:
        query = query.with_for_update()
    return (await conn.execute(query)).mappings().first()


async def insert_plan(conn: AsyncConnection, row: dict[str, Any]) -> Row | None:
    """A child's first plan; None when one was written meanwhile."""
    result = await conn.execute(
        pg_insert(plans)
        .values(**row, version=1)
        .on_conflict_do_nothing(index_elements=["id"])
        .returning(*plans.c)
    )
    return result.mappings().first()


async def update_plan(
    conn: AsyncConnection, child_id: uuid.UUID, version: int, values: dict[str, Any]
) -> Row:
    result = await conn.execute(versioned_update(plans, child_id, version, values))
    return result.mappings().one()


# ---------------------------------------------------------------- visits
# A visit is casework's most frequent write: its statements are hand-written and run on
# asyncpg (libs.common.store.driver_connection), prepared once per connection, as the
# registry's, referrals' and funds' hot paths are.

# $1 the child; $2 and $3 access.visibility_args' two values; $4 the principal's username
# when it is a partner's user (NULL otherwise), who also reads the children assigned to the
# worker that is that user (child_visible_to).
_VISIT_CHILD_SQL = (
    "SELECT c.*, w.id AS worker_id, w.username AS worker_username, w.org AS worker_org"
    " FROM casework.children c"
    " LEFT JOIN casework.assignments a ON a.child_id = c.id AND a.status = 'active'"
    " LEFT JOIN casework.workers w ON w.id = a.worker_id"
    " WHERE c.id = $1 AND ("
    + access.child_visible_text(
        "$2",
        "$3",
        shares=f'"{referral_shares.schema}"."{referral_shares.name}"',
        commune="c.commune_code",
        village="c.village_code",
        owner="c.owner_org",
        child_id="c.id",
    )
    + " OR ($4::text IS NOT NULL AND w.username = $4 AND w.org = $3 AND "
    + access.covers_text("$2", "c.commune_code", "c.village_code")
    + ")) FOR UPDATE OF c"
)


@dataclass(frozen=True)
class ChildToVisit:
    """A child a visit is recorded for, locked, with the worker actively assigned to it
    (None when none is): its id, username and organisation."""

    child: Row
    worker: dict[str, Any] | None


async def child_to_visit(
    conn: AsyncConnection, child_id: uuid.UUID, principal: Principal
) -> ChildToVisit | None:
    """A projected child visible to the principal (as child_visible_to), locked, with its
    assigned worker, in one statement; None when absent or not visible."""
    areas, org = access.visibility_args(principal)
    user = principal.username if principal.is_partner else None
    pg = await driver_connection(conn)
    row = await pg.fetchrow(_VISIT_CHILD_SQL, child_id, areas, org, user)
    if row is None:
        return None
    worker = None
    if row["worker_id"] is not None:
        worker = {
            "id": row["worker_id"],
            "username": row["worker_username"],
            "org": row["worker_org"],
        }
    return ChildToVisit(row, worker)


_VISIT_COLUMNS = (
    "id, child_id, worker_id, commune_code, village_code, date, kind, outcome, notes,"
    " next_visit_on, followups_made, recorded_by_sub, recorded_by_org"
)
# The visit ($1–$13, in _VISIT_COLUMNS' order) and its child's new schedule in one
# statement: when $14 (the visit is the child's latest) its last and next visit dates,
# and when $15 the overdue flag cleared; the child's updated_at in any case.
_VISIT_SQL = (
    f"WITH v AS (INSERT INTO casework.visits ({_VISIT_COLUMNS}, version)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::smallint[], $12, $13, 1)"
    " RETURNING *), c AS (UPDATE casework.children SET updated_at = now(),"
    " last_visit_on = CASE WHEN $14 THEN $6 ELSE last_visit_on END,"
    " next_visit_on = CASE WHEN $14 THEN $10 ELSE next_visit_on END,"
    " overdue = CASE WHEN $15 THEN false ELSE overdue END,"
    " overdue_due_on = CASE WHEN $15 THEN NULL ELSE overdue_due_on END"
    " WHERE id = $2) SELECT * FROM v"
)


async def insert_visit(
    conn: AsyncConnection, row: dict[str, Any], *, latest: bool, clear_overdue: bool
) -> Row:
    """Record a visit (`row`: every column of _VISIT_COLUMNS) and change its child's
    schedule as it says (`latest`, `clear_overdue`); the visit as stored."""
    pg = await driver_connection(conn)
    values = [row[c.strip()] for c in _VISIT_COLUMNS.split(",")]
    visit: Row = await pg.fetchrow(_VISIT_SQL, *values, latest, clear_overdue)
    return visit


async def get_visit(conn: AsyncConnection, visit_id: uuid.UUID, principal: Principal) -> Row | None:
    query = _about_visible_child(visits, principal).where(visits.c.id == visit_id)
    return (await conn.execute(query)).mappings().first()


async def last_visit(conn: AsyncConnection, child_id: uuid.UUID) -> Row | None:
    query = (
        select(visits)
        .where(visits.c.child_id == child_id)
        .order_by(visits.c.date.desc(), visits.c.created_at.desc())
        .limit(1)
    )
    return (await conn.execute(query)).mappings().first()


async def list_visits(
    conn: AsyncConnection, principal: Principal, child_id: uuid.UUID | None, page: Page
) -> list[Row]:
    c = visits.c
    query = where_given(_about_visible_child(visits, principal), (c.child_id, child_id))
    return await read_page(conn, query, page, key=(c.updated_at, c.id), changed_at=c.updated_at)


async def list_due(
    conn: AsyncConnection, principal: Principal, overdue: bool | None, page: Page
) -> list[Row]:
    """Visible children with a visit due (or overdue), in (updated_at, id) order."""
    c = children.c
    query = select(children).where(
        child_visible_to(principal), c.next_visit_on.is_not(None) | c.overdue
    )
    query = where_given(query, (c.overdue, overdue))
    return await read_page(conn, query, page, key=(c.updated_at, c.id), changed_at=c.updated_at)


async def flag_overdue(conn: AsyncConnection, today: date, batch: int = 500) -> list[Row]:
    """Flag open children whose next visit was due before `today` and who are not flagged,
    each exactly once however many jobs run: rows another transaction holds are skipped
    and seen again next tick; a row a job flagged first no longer matches `NOT overdue`."""
    c = children.c
    due = (
        select(c.id)
        .where(
            c.status == "open",
            c.next_visit_on.is_not(None),
            c.overdue.is_(False),
            c.next_visit_on < today,
        )
        .order_by(c.next_visit_on)
        .limit(batch)
        .with_for_update(skip_locked=True)
        .cte("due")
    )
    result = await conn.execute(
        update(children)
        .where(c.id == due.c.id, c.overdue.is_(False))
        .values(overdue=True, overdue_due_on=c.next_visit_on, updated_at=func.now())
        .returning(*children.c)
    )
    return list(result.mappings().all())


async def active_workers_of(
    conn: AsyncConnection, child_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, uuid.UUID]:
    """The worker of each child's active assignment (children without one left out)."""
    if not child_ids:
        return {}
    a = assignments.c
    query = select(a.child_id, a.worker_id).where(
        a.child_id.in_(list(child_ids)), a.status == "active"
    )
    return {r.child_id: r.worker_id for r in await conn.execute(query)}


# ---------------------------------------------------------------- follow-ups


async def insert_followups(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    """A reintegration's follow-ups; a set already there (the same move) is kept."""
    if rows:
        await conn.execute(
            pg_insert(followups)
            .values(list(rows))
            .on_conflict_do_nothing(index_elements=["child_id", "reintegrated_on", "month"])
        )


async def followups_of(
    conn: AsyncConnection, child_id: uuid.UUID, reintegrated_on: date | None
) -> list[Row]:
    """The follow-ups of the child's reintegration on `reintegrated_on`, by month."""
    if reintegrated_on is None:
        return []
    f = followups.c
    query = (
        select(followups)
        .where(f.child_id == child_id, f.reintegrated_on == reintegrated_on)
        .order_by(f.month)
    )
    return list((await conn.execute(query)).mappings().all())


async def mark_followup_made(
    conn: AsyncConnection, followup_id: uuid.UUID, made_on: date, visit_id: uuid.UUID
) -> None:
    await conn.execute(
        update(followups)
        .where(followups.c.id == followup_id, followups.c.made_on.is_(None))
        .values(made_on=made_on, visit_id=visit_id)
    )


async def reintegrate(conn: AsyncConnection, child_id: uuid.UUID, on: date) -> bool:
    """Record a child's latest reintegration (never moved back to an earlier one)."""
    result = await conn.execute(
        update(children)
        .where(
            children.c.id == child_id,
            (children.c.reintegrated_on.is_(None)) | (children.c.reintegrated_on <= on),
        )
        .values(reintegrated_on=on, updated_at=func.now())
        .returning(children.c.id)
    )
    return result.first() is not None
