"""Every SQL statement of the referrals service."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    String,
    and_,
    cast,
    exists,
    func,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common import access, places
from libs.common.auth import COUNTRY, Principal
from libs.common.http import Page
from libs.common.store import (
    driver_connection,
    read_page,
    upsert_newest,
    versioned_update,
    where_given,
)
from services.referrals.models import children, providers, referrals, unmatched_needs

# A row as read by key: SQLAlchemy's RowMapping, or (the hand-written statements below, run
# on asyncpg through libs.common.store.driver_connection) an asyncpg Record; the values are the
# same Python objects either way.
Row = RowMapping


def _codes(values: Sequence[str]) -> Any:
    return cast(literal(list(values), ARRAY(String)), ARRAY(String))


async def now(conn: AsyncConnection) -> datetime:
    """The transaction's clock (one clock for every replica: the database's)."""
    value: datetime = (await conn.execute(select(func.now()))).scalar_one()
    return value


# ---------------------------------------------------------------- providers


def provider_visible_to(principal: Principal) -> ColumnElement[bool]:
    """A provider is visible when one of its served areas overlaps the principal's areas."""
    prefixes = principal.area_prefixes()
    if prefixes is None:
        return true()
    around = sorted({p for area in prefixes for p in places.parents(area)})
    served = func.unnest(providers.c.areas).table_valued("code").render_derived()
    inside = exists(
        select(literal(1))
        .select_from(served)
        .where(or_(*[served.c.code.startswith(p) for p in prefixes]))
    )
    return or_(providers.c.areas.overlap(_codes(around)), inside)


async def insert_provider(conn: AsyncConnection, row: dict[str, Any]) -> Row:
    result = await conn.execute(insert(providers).values(**row).returning(*providers.c))
    return result.mappings().one()


async def get_provider(
    conn: AsyncConnection,
    provider_id: uuid.UUID,
    principal: Principal | None = None,
    *,
    lock: bool = False,
) -> Row | None:
    """One provider (visible to the principal when one is given); None otherwise."""
    query = select(providers).where(providers.c.id == provider_id)
    if principal is not None:
        query = query.where(provider_visible_to(principal))
    if lock:
        query = query.with_for_update(of=providers)
    return (await conn.execute(query)).mappings().first()


async def lock_providers(conn: AsyncConnection, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Row]:
    """Lock providers in id order (one global order, so two routers never deadlock)."""
    rows = (
        await conn.execute(
            select(providers)
            .where(providers.c.id.in_(list(ids)))
            .order_by(providers.c.id)
            .with_for_update()
        )
    ).mappings()
    return {r["id"]: r for r in rows}


async def change_open_referrals(conn: AsyncConnection, provider_id: uuid.UUID, delta: int) -> None:
    """Add to a provider's count of open referrals (its row is locked by the caller)."""
    if delta:
        await conn.execute(
            update(providers)
            .where(providers.c.id == provider_id)
            .values(open_referrals=providers.c.open_referrals + delta)
        )


@dataclass(frozen=True)
class ProviderFilter:
    service_type: str | None = None
    commune_code: str | None = None
    active: bool | None = None


async def list_providers(
    conn: AsyncConnection, principal: Principal, flt: ProviderFilter, page: Page
) -> list[Row]:
    """Visible providers in (updated_at, id) order, one more than the page."""
    c = providers.c
    query = select(providers).where(provider_visible_to(principal))
    if flt.service_type:
        query = query.where(c.service_types.contains(_codes([flt.service_type])))
    if flt.commune_code:
        query = query.where(c.areas.overlap(_codes(places.parents(flt.commune_code))))
    query = where_given(query, (c.active, flt.active))
    return await read_page(conn, query, page, key=(c.updated_at, c.id), changed_at=c.updated_at)


async def update_provider(
    conn: AsyncConnection, provider_id: uuid.UUID, version: int, values: dict[str, Any]
) -> Row:
    """Write new values and bump the version (the row is already locked by the caller)."""
    result = await conn.execute(versioned_update(providers, provider_id, version, values))
    return result.mappings().one()


async def routing_candidates(
    conn: AsyncConnection, service_type: str, path: Sequence[str], exclude: Sequence[uuid.UUID]
) -> list[Row]:
    """Active providers of the service serving the place with room left (not locked); the
    place as domain.path_of gives it (through the commune it is listed in)."""
    c = providers.c
    query = select(providers).where(
        c.active.is_(True),
        c.service_types.contains(_codes([service_type])),
        c.areas.overlap(_codes(path)),
        c.open_referrals < c.capacity,
    )
    if exclude:
        query = query.where(c.id.not_in(list(exclude)))
    return list((await conn.execute(query)).mappings().all())


# ---------------------------------------------------------------- children (projection)


async def apply_children(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> set[Any]:
    """Insert or update children (rows in stream order) in one statement: each child's
    newest version, unless the stored one is as new; the ids written."""
    return await upsert_newest(conn, children, rows, stamped="synced_at")


# Referrals are the shares of this service: the provider's organisation reads the child
# while its referral is active (libs.common.access).
SHARES = access.ShareColumns(
    referrals,
    referrals.c.child_id,
    referrals.c.provider_org,
    referrals.c.status,
    referrals.c.closed_at,
)


def child_visible_to(principal: Principal) -> ColumnElement[bool]:
    """Which projected children the principal may read (libs.common.access)."""
    return access.children_visible_sql(principal, children, SHARES)


async def get_child(
    conn: AsyncConnection, child_id: uuid.UUID, principal: Principal | None = None
) -> Row | None:
    """A projected child (visible to the principal when one is given); None otherwise."""
    query = select(children).where(children.c.id == child_id)
    if principal is not None:
        query = query.where(child_visible_to(principal))
    return (await conn.execute(query)).mappings().first()


# Referrals' columns under the names access.child_visible_text gives a shares table's.
_SHARES_TEXT = (
    "(SELECT child_id, provider_org AS org, status, closed_at AS completed_at"
    " FROM referrals.referrals)"
)
# $1 the child, $2 and $3 access.visibility_args' two values.
_CHILD_WHERE = "c.id = $1 AND " + access.child_visible_text(
    "$2",
    "$3",
    shares=_SHARES_TEXT,
    commune="c.commune_code",
    village="c.village_code",
    owner="c.owner_org",
    child_id="c.id",
)
_CHILD_COLUMNS = "c.id, c.commune_code, c.village_code, c.status, c.data_sharing_consent"
_CHILD_SQL = f"SELECT {_CHILD_COLUMNS} FROM referrals.children c WHERE {_CHILD_WHERE}"
# The child's place and the places above it: every code of domain.path_of (and, for codes
# of odd lengths, a few more; the candidates are ranked on the exact path afterwards).
_CHILD_PATH = (
    "ARRAY[c.village_code, left(c.commune_code, 6), left(c.commune_code, 4),"
    f" left(c.commune_code, 2), '{COUNTRY}']::varchar[]"
)
# One row per provider of the service ($4) that could take the child's referral (as
# routing_candidates reads them), or one with a NULL provider_id when none could.
_CHILD_ROUTING_SQL = (
    f"SELECT {_CHILD_COLUMNS}, p.id AS provider_id, p.active, p.service_types, p.areas,"
    " p.capacity, p.open_referrals FROM referrals.children c LEFT JOIN LATERAL ("
    "SELECT id, active, service_types, areas, capacity, open_referrals"
    " FROM referrals.providers WHERE active IS TRUE AND service_types @> ARRAY[$4::varchar]"
    f" AND areas && {_CHILD_PATH} AND open_referrals < capacity) p ON true"
    f" WHERE {_CHILD_WHERE}"
)


@dataclass(frozen=True)
class ChildToRefer:
    """A child as a new referral reads it (id, commune_code, village_code, status,
    data_sharing_consent), and the providers that could take the referral, unlocked (the
    columns domain.Candidate.of reads)."""

    child: Row
    candidates: list[dict[str, Any]]


async def child_to_refer(
    conn: AsyncConnection, child_id: uuid.UUID, principal: Principal, service_type: str | None
) -> ChildToRefer | None:
    """A projected child visible to the principal, in one statement with the active
    providers of `service_type` serving the child's place with room left (none looked for
    without one); None when the child is absent or not visible."""
    areas, org = access.visibility_args(principal)
    pg = await driver_connection(conn)
    if service_type is None:
        child = await pg.fetchrow(_CHILD_SQL, child_id, areas, org)
        return None if child is None else ChildToRefer(child, [])
    rows = await pg.fetch(_CHILD_ROUTING_SQL, child_id, areas, org, service_type)
    if not rows:
        return None
    candidates = [
        {
            "id": r["provider_id"],
            "active": r["active"],
            "service_types": r["service_types"],
            "areas": r["areas"],
            "capacity": r["capacity"],
            "open_referrals": r["open_referrals"],
        }
        for r in rows
        if r["provider_id"] is not None
    ]
    return ChildToRefer(rows[0], candidates)


# ---------------------------------------------------------------- referrals


def referral_visible_to(principal: Principal) -> ColumnElement[bool]:
    """The principal's areas cover the child's place; a partner must also be the provider's
    or the referrer's organisation."""
    r = referrals.c
    clauses = [access.covers_sql(principal, r.commune_code, r.village_code)]
    if principal.is_partner:
        clauses.append(or_(r.provider_org == principal.org, r.referrer_org == principal.org))
    return and_(*clauses) if clauses else true()


# A new referral's columns but its provider's, and their types (a column not given is NULL);
# its provider_id and provider_org, overdue (false), version (1) and due_at are the
# statement's, created_at and updated_at the transaction's clock.
_NEW_REFERRAL = {
    "id": "uuid",
    "child_id": "uuid",
    "service_type": "text",
    "urgency": "text",
    "reason": "text",
    "status": "text",
    "commune_code": "text",
    "village_code": "text",
    "place_code": "text",
    "referrer_sub": "text",
    "referrer_org": "text",
    "consent_override": "boolean",
    "override_justification": "text",
    "override_by_sub": "text",
    "override_by_org": "text",
    "previous_referral_id": "uuid",
}
_PROVIDER = ("provider_id", "provider_org")
_N = len(_NEW_REFERRAL)  # parameters 1 to _N: the columns; _N + 1: the seconds until due


def _insert_referral_sql(provider: str, source: str = "") -> str:
    """INSERT ... SELECT of a new referral: its columns parameters 1 to _N (in _NEW_REFERRAL's
    order), due parameter _N + 1 seconds after the transaction's clock, its provider_id and
    provider_org the SQL `provider`, selected from `source` (a FROM clause, or nothing)."""
    values = ", ".join(f"${n}::{t}" for n, t in enumerate(_NEW_REFERRAL.values(), 1))
    return (
        f"INSERT INTO referrals.referrals ({', '.join(_NEW_REFERRAL)},"
        " provider_id, provider_org, overdue, version, due_at)"
        f" SELECT {values}, {provider}, false, 1,"
        # Whole seconds, not days: `now() + interval '7 days'` would follow the session time
        # zone's daylight-saving shifts, which Python's `now + timedelta(days=7)` never did.
        f" now() + make_interval(0, 0, 0, 0, 0, 0, ${_N + 1}::float8){source} RETURNING *"
    )


# A referral to a provider: its id and organisation the last two parameters.
_INSERT_REFERRAL_SQL = _insert_referral_sql(f"${_N + 2}::uuid, ${_N + 3}::text")
# A referral to a provider (parameter _N + 2), counted in the provider's load in the same
# statement if it can still take one: active, offering the service (_N + 3), serving one of
# the places (_N + 4), with room left. The UPDATE locks the provider's row and checks these
# conditions again on its latest version; when they fail, nothing is written.
_INSERT_ROUTED_SQL = (
    "WITH p AS (UPDATE referrals.providers SET open_referrals = open_referrals + 1"
    f" WHERE id = ${_N + 2}::uuid AND active IS TRUE"
    f" AND service_types @> ARRAY[${_N + 3}::varchar] AND areas && ${_N + 4}::varchar[]"
    " AND open_referrals < capacity RETURNING id, org) "
) + _insert_referral_sql("p.id, p.org", " FROM p")


def _new_referral_args(row: dict[str, Any], due_in: timedelta, *extra: str) -> list[Any]:
    """Parameters 1 to _N + 1 of a new referral's row (columns of _NEW_REFERRAL, and the
    `extra` ones), due `due_in` after the transaction's clock."""
    unknown = row.keys() - _NEW_REFERRAL.keys() - set(extra)
    if unknown:
        raise ValueError(f"a new referral has no columns {sorted(unknown)}")
    return [row.get(column) for column in _NEW_REFERRAL] + [due_in.total_seconds()]


async def insert_referral(conn: AsyncConnection, row: dict[str, Any], due_in: timedelta) -> Row:
    """Insert a referral (columns of _NEW_REFERRAL, provider_id and provider_org) due `due_in`
    after the transaction's clock (the database's)."""
    args = _new_referral_args(row, due_in, *_PROVIDER)
    pg = await driver_connection(conn)
    referral: Row = await pg.fetchrow(
        _INSERT_REFERRAL_SQL, *args, row["provider_id"], row["provider_org"]
    )
    return referral


async def insert_routed_referral(
    conn: AsyncConnection,
    row: dict[str, Any],
    due_in: timedelta,
    provider_id: uuid.UUID,
    service_type: str,
    path: Sequence[str],
) -> Row | None:
    """Insert a referral (as insert_referral, its provider aside) to a provider and count it
    in the provider's load, in one statement, if the provider can still take it: active,
    offering the service, serving the place (a path, as domain.path_of gives it), with room
    left; its row locked and the conditions checked again on its latest version. None,
    nothing written, when it cannot."""
    args = _new_referral_args(row, due_in)
    pg = await driver_connection(conn)
    referral: Row | None = await pg.fetchrow(
        _INSERT_ROUTED_SQL, *args, provider_id, service_type, list(path)
    )
    return referral


async def get_referral(
    conn: AsyncConnection, referral_id: uuid.UUID, principal: Principal, *, lock: bool = False
) -> Row | None:
    """One referral visible to the principal (None when absent or not visible)."""
    query = select(referrals).where(referrals.c.id == referral_id, referral_visible_to(principal))
    if lock:
        query = query.with_for_update(of=referrals)
    return (await conn.execute(query)).mappings().first()


async def update_referral(
    conn: AsyncConnection,
    referral_id: uuid.UUID,
    version: int,
    values: dict[str, Any],
    stamped: Sequence[str] = (),
) -> Row:
    """Write new values, the `stamped` columns set to the transaction's clock, and bump the
    version (the row is already locked by the caller)."""
    values = {**values, **{column: func.now() for column in stamped}}
    result = await conn.execute(versioned_update(referrals, referral_id, version, values))
    return result.mappings().one()


# $1 the referral, $2 and $3 access.visibility_args' two values, $4 the principal's
# organisation and $5 its sub, $6 the state it must be in and $7 the one it moves to.
_ACCEPT_SQL = (
    "UPDATE referrals.referrals SET status = $7, acted_by_sub = $5, acted_by_org = $4,"
    " accepted_at = now(), version = version + 1, updated_at = now()"
    f" WHERE id = $1 AND {access.covers_text('$2')}"
    " AND ($3::text IS NULL OR provider_org = $3 OR referrer_org = $3)"
    " AND provider_org = $4 AND status = $6 RETURNING *"
)


async def accept_at_once(
    conn: AsyncConnection, referral_id: uuid.UUID, principal: Principal, status: str, to: str
) -> Row | None:
    """An acceptance in one statement: a referral visible to the principal (as
    referral_visible_to), of its organisation and in `status`, moves to `to`, acted on by
    the principal, `accepted_at` now and its version bumped (under the UPDATE's row lock,
    its conditions checked again on the latest version); None, nothing changed, when it is
    not such a referral."""
    areas, org = access.visibility_args(principal)
    pg = await driver_connection(conn)
    referral: Row | None = await pg.fetchrow(
        _ACCEPT_SQL, referral_id, areas, org, principal.org, principal.sub, status, to
    )
    return referral


async def chain_providers(conn: AsyncConnection, referral_id: uuid.UUID) -> list[uuid.UUID]:
    """Providers of a referral and of every referral it was re-routed from."""
    r = referrals.c
    chain = (
        select(r.id, r.provider_id, r.previous_referral_id)
        .where(r.id == referral_id)
        .cte("chain", recursive=True)
    )
    earlier = referrals.alias("earlier")
    chain = chain.union_all(
        select(earlier.c.id, earlier.c.provider_id, earlier.c.previous_referral_id).where(
            earlier.c.id == chain.c.previous_referral_id
        )
    )
    return list((await conn.execute(select(chain.c.provider_id).distinct())).scalars())


@dataclass(frozen=True)
class ReferralFilter:
    child_id: uuid.UUID | None = None
    provider_id: uuid.UUID | None = None
    status: str | None = None
    overdue: bool | None = None
    service_type: str | None = None


async def list_referrals(
    conn: AsyncConnection, principal: Principal, flt: ReferralFilter, page: Page
) -> list[Row]:
    """Visible referrals in (updated_at, id) order, one more than the page."""
    c = referrals.c
    query = select(referrals).where(referral_visible_to(principal))
    query = where_given(
        query,
        (c.child_id, flt.child_id),
        (c.provider_id, flt.provider_id),
        (c.status, flt.status),
        (c.overdue, flt.overdue),
        (c.service_type, flt.service_type),
    )
    return await read_page(conn, query, page, key=(c.updated_at, c.id), changed_at=c.updated_at)


async def flag_overdue(conn: AsyncConnection, batch: int = 500) -> list[Row]:
    """Flag pending referrals past due, each exactly once however many sweepers run.

    One statement: rows another transaction holds (a sweeper, or a provider accepting
    right now) are skipped and looked at again next sweep; a row flagged by a sweeper
    that committed first no longer matches `NOT overdue` when re-checked.
    """
    r = referrals.c
    due = (
        select(r.id)
        .where(r.status == "pending", r.overdue.is_(False), r.due_at < func.now())
        .order_by(r.due_at)
        .limit(batch)
        .with_for_update(skip_locked=True)
        .cte("due")
    )
    result = await conn.execute(
        update(referrals)
        .where(r.id == due.c.id, r.status == "pending", r.overdue.is_(False))
        .values(overdue=True, version=r.version + 1, updated_at=func.now())
        .returning(*referrals.c)
    )
    return list(result.mappings().all())


# ---------------------------------------------------------------- unmatched needs


async def insert_unmatched_need(conn: AsyncConnection, row: dict[str, Any]) -> Row | None:
    """Record a need routing found no provider for, unless the same child, service type and
    month is recorded already: the row written, or None when it was there (a concurrent
    insert of the same key waits for the other's commit, then writes nothing)."""
    result = await conn.execute(
        insert(unmatched_needs)
        .values(**row)
        .on_conflict_do_nothing(index_elements=["child_id", "service_type", "month"])
        .returning(*unmatched_needs.c)
    )
    return result.mappings().first()
