"""Every SQL statement of the referrals service."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Float,
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
from libs.common.auth import Principal
from libs.common.http import Page
from libs.common.store import read_page, upsert_newest, versioned_update, where_given
from services.referrals.models import children, providers, referrals

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


async def claim_provider(
    conn: AsyncConnection, provider_id: uuid.UUID, service_type: str, path: Sequence[str]
) -> Row | None:
    """Count a referral in a provider's load if it can still take one (active, offering the
    service, serving the place, with room left), in one statement: the row is locked and the
    conditions checked again on its latest version; None (nothing changed) when it cannot."""
    c = providers.c
    result = await conn.execute(
        update(providers)
        .where(
            c.id == provider_id,
            c.active.is_(True),
            c.service_types.contains(_codes([service_type])),
            c.areas.overlap(_codes(path)),
            c.open_referrals < c.capacity,
        )
        .values(open_referrals=c.open_referrals + 1)
        .returning(*providers.c)
    )
    return result.mappings().first()


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


# ---------------------------------------------------------------- referrals


def referral_visible_to(principal: Principal) -> ColumnElement[bool]:
    """The principal's areas cover the child's place; a partner must also be the provider's
    or the referrer's organisation."""
    r = referrals.c
    clauses = [access.covers_sql(principal, r.commune_code, r.village_code)]
    if principal.is_partner:
        clauses.append(or_(r.provider_org == principal.org, r.referrer_org == principal.org))
    return and_(*clauses) if clauses else true()


async def insert_referral(conn: AsyncConnection, row: dict[str, Any], due_in: timedelta) -> Row:
    """Insert a referral due `due_in` after the transaction's clock (the database's)."""
    # Whole seconds, not days: `now() + interval '7 days'` would follow the session time
    # zone's daylight-saving shifts, which Python's `now + timedelta(days=7)` never did.
    seconds = literal(due_in.total_seconds(), Float)
    values = {**row, "due_at": func.now() + func.make_interval(0, 0, 0, 0, 0, 0, seconds)}
    result = await conn.execute(insert(referrals).values(**values).returning(*referrals.c))
    return result.mappings().one()


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


async def accept_at_once(
    conn: AsyncConnection,
    referral_id: uuid.UUID,
    principal: Principal,
    status: str,
    values: dict[str, Any],
) -> Row | None:
    """An acceptance in one statement: a referral visible to the principal, of its
    organisation and in `status`, gets `values`, `accepted_at` now and its version bumped
    (under the UPDATE's row lock, its conditions checked again on the latest version);
    None, nothing changed, when it is not such a referral."""
    r = referrals.c
    result = await conn.execute(
        update(referrals)
        .where(
            r.id == referral_id,
            referral_visible_to(principal),
            r.provider_org == principal.org,
            r.status == status,
        )
        .values(**values, accepted_at=func.now(), version=r.version + 1, updated_at=func.now())
        .returning(*referrals.c)
    )
    return result.mappings().first()


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
