"""Every SQL statement of the funds service.

Locks: an action on a grant locks the grant row first, then (when money moves) the fund
row, always in that order, so two transactions never wait on each other in a circle. Both
are `FOR NO KEY UPDATE`: exclusive among writers (it is the lock an UPDATE takes) but it
does not block other transactions inserting rows that merely reference the fund by key.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    and_,
    bindparam,
    func,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common import access
from libs.common.auth import Principal
from libs.common.http import Page
from libs.common.store import read_page, upsert_newest, versioned_update, where_given
from services.funds import domain
from services.funds.models import children, funds, grant_actions, grants, ledger, referral_shares

Row = RowMapping


def constraint_of(exc: IntegrityError) -> str | None:
    """The name of the constraint a failed statement violated, when PostgreSQL says."""
    cause = getattr(exc.orig, "__cause__", None)
    name = getattr(cause, "constraint_name", None)
    return str(name) if name else None


# ---------------------------------------------------------------- the children projection


async def upsert_child(conn: AsyncConnection, row: dict[str, Any]) -> None:
    """Insert or refresh a projected child; an older version never overwrites a newer one."""
    await upsert_children(conn, [row])


async def upsert_children(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    """`upsert_child` for rows in stream order, in one statement: each child's newest."""
    await upsert_newest(conn, children, rows)


def child_visible_to(principal: Principal) -> ColumnElement[bool]:
    """Which projected children the principal may read (libs.common.access): its areas
    cover the child's listed place; a partner registered it or holds an active referral."""
    return access.children_visible_sql(principal, children, access.shares_of(referral_shares))


async def get_child(conn: AsyncConnection, child_id: uuid.UUID, principal: Principal) -> Row | None:
    """A projected child visible to the principal (None when absent or not visible)."""
    query = select(children).where(children.c.id == child_id, child_visible_to(principal))
    return (await conn.execute(query)).mappings().first()


# ---------------------------------------------------------------- funds


def fund_visible_to(principal: Principal) -> ColumnElement[bool]:
    """SQL form of domain.fund_visible: the fund's area and the principal's overlap."""
    prefixes = principal.area_prefixes()
    if prefixes is None:
        return and_(True)
    containing = sorted({p for a in prefixes for p in domain.area_prefixes(a)})
    return or_(
        funds.c.commune_code.in_(containing),
        *[funds.c.commune_code.startswith(a, autoescape=True) for a in prefixes if len(a) <= 6],
    )


async def insert_fund(conn: AsyncConnection, row: dict[str, Any]) -> Row:
    """Insert a fund; return it as stored (with its derived balance)."""
    return (await conn.execute(insert(funds).values(**row).returning(*funds.c))).mappings().one()


async def get_fund(
    conn: AsyncConnection, fund_id: uuid.UUID, principal: Principal, *, lock: bool = False
) -> Row | None:
    """A fund visible to the principal, optionally locked for a change of its totals."""
    query = select(funds).where(funds.c.id == fund_id, fund_visible_to(principal))
    if lock:
        query = query.with_for_update(key_share=True)
    return (await conn.execute(query)).mappings().first()


async def lock_fund(conn: AsyncConnection, fund_id: uuid.UUID) -> Row:
    """Lock a fund row (the caller already holds a visible grant of it) and read it."""
    query = select(funds).where(funds.c.id == fund_id).with_for_update(key_share=True)
    return (await conn.execute(query)).mappings().one()


# What a ledger entry may say, and the running totals an entry moves.
_ENTRY: tuple[str, ...] = ("fund_id", "grant_id", "kind", "amount_khr", "method", "reference")
_ENTRY += ("request_id", "actor_sub", "actor_org")
_TOTALS = ("topped_up_khr", "committed_khr", "disbursed_khr")


def _booking(covering: bool) -> Any:
    """One statement, built once: the fund's totals moved (version bumped) and, only if
    they moved, the ledger entry appended; answering the fund as stored and the entry's
    time (`entry_at`). With `covering`, only if the available balance covers :covering."""
    f = funds.c
    moved = (
        update(funds)
        .where(f.id == bindparam("e_fund_id", type_=ledger.c.fund_id.type))
        .values(
            **{t: f[t] + bindparam(f"d_{t}", type_=BigInteger()) for t in _TOTALS},
            version=f.version + 1,
            updated_at=func.now(),
        )
        .returning(*funds.c)
    )
    if covering:
        moved = moved.where(f.available_khr >= bindparam("covering", type_=BigInteger()))
    fund = moved.cte("moved")
    values = select(*[bindparam(f"e_{c}", type_=ledger.c[c].type) for c in _ENTRY])
    written = (
        insert(ledger)
        .from_select(list(_ENTRY), values.select_from(fund))
        .returning(ledger.c.at)
        .cte("written")
    )
    return select(*fund.c, written.c.at.label("entry_at")).select_from(fund.join(written, true()))


_BOOK = _booking(covering=False)
_BOOK_IF_COVERED = _booking(covering=True)


def _booked(entry: dict[str, Any], moves: dict[str, int]) -> dict[str, Any]:
    """The parameters of a booking: every entry column (None when not given) and move."""
    if not set(entry) <= set(_ENTRY) or not set(moves) <= set(_TOTALS):
        raise ValueError("a ledger entry or a move the booking statement does not know")
    params = {f"e_{c}": entry.get(c) for c in _ENTRY}
    return params | {f"d_{t}": moves.get(t, 0) for t in _TOTALS}


async def book(conn: AsyncConnection, entry: dict[str, Any], **moves: int) -> Row:
    """Append one ledger entry and move its fund's running totals (`topped_up_khr`,
    `committed_khr`, `disbursed_khr` by the amounts given) in one statement; the fund as
    stored, with the entry's time as `entry_at`."""
    return (await conn.execute(_BOOK, _booked(entry, moves))).mappings().one()


async def book_if_covered(
    conn: AsyncConnection, entry: dict[str, Any], covering: int, **moves: int
) -> Row | None:
    """`book`, only if the fund's available balance covers `covering` when the statement
    holds the fund's row lock; None (nothing written) otherwise."""
    params = _booked(entry, moves) | {"covering": covering}
    return (await conn.execute(_BOOK_IF_COVERED, params)).mappings().first()


@dataclass(frozen=True)
class FundFilter:
    commune_code: str | None = None
    fiscal_year: int | None = None


async def list_funds(
    conn: AsyncConnection, principal: Principal, flt: FundFilter, page: Page
) -> list[Row]:
    """Visible funds in (updated_at, id) order, one more than the page."""
    f = funds.c
    query = select(funds).where(fund_visible_to(principal))
    query = where_given(query, (f.commune_code, flt.commune_code), (f.fiscal_year, flt.fiscal_year))
    return await read_page(conn, query, page, key=(f.updated_at, f.id), changed_at=f.updated_at)


# ---------------------------------------------------------------- ledger


async def list_ledger(conn: AsyncConnection, fund_id: uuid.UUID, page: Page) -> list[Row]:
    """A fund's ledger in booking order, one more than the page."""
    lg = ledger.c
    query = select(ledger).where(lg.fund_id == fund_id)
    return await read_page(conn, query, page, key=(lg.id,), changed_at=lg.at)


# ---------------------------------------------------------------- grants


def grant_visible_to(principal: Principal) -> ColumnElement[bool]:
    """A grant is visible to whoever may read its child (libs.common.access), and to a
    partner whose areas cover the child's place and who requested the grant."""
    c = children.c
    visible = child_visible_to(principal)
    if not principal.is_partner:
        return visible
    requested = and_(
        access.covers_sql(principal, c.commune_code, c.village_code),
        grants.c.requested_org == principal.org,
    )
    return or_(visible, requested)


def _visible_grants(principal: Principal) -> Any:
    return (
        select(grants)
        .join(children, children.c.id == grants.c.child_id)
        .where(grant_visible_to(principal))
    )


async def get_grant(
    conn: AsyncConnection, grant_id: uuid.UUID, principal: Principal, *, lock: bool = False
) -> Row | None:
    """A grant visible to the principal, optionally locked for an action."""
    query = _visible_grants(principal).where(grants.c.id == grant_id)
    if lock:
        query = query.with_for_update(of=grants, key_share=True)
    return (await conn.execute(query)).mappings().first()


@functools.cache
def _request(grant_columns: tuple[str, ...], action_columns: tuple[str, ...]) -> Any:
    """One statement, built once per shape: the grant inserted, then its first action (of
    the inserted grant), answering the grant's columns and the action's as `action_<name>`."""
    created = (
        insert(grants)
        .values({c: bindparam(f"g_{c}", type_=grants.c[c].type) for c in grant_columns})
        .returning(*grants.c)
        .cte("created")
    )
    first = select(
        created.c.id, *[bindparam(f"a_{c}", type_=grant_actions.c[c].type) for c in action_columns]
    ).select_from(created)
    recorded = (
        insert(grant_actions)
        .from_select(["grant_id", *action_columns], first)
        .returning(*grant_actions.c)
        .cte("recorded")
    )
    answer = [*created.c, *[c.label(f"action_{c.name}") for c in recorded.c]]
    return select(*answer).select_from(created.join(recorded, true()))


def _scalar_defaults(table: Any, given: dict[str, Any]) -> dict[str, Any]:
    """The Python-side column defaults (a grant's version): a statement in a CTE gets none."""
    columns = [c for c in table.c if c.name not in given and c.name != "grant_id"]
    return {c.name: c.default.arg for c in columns if c.default is not None and c.default.is_scalar}


async def insert_grant(
    conn: AsyncConnection, row: dict[str, Any], action: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Insert a grant and its first action (`action`, without its grant) in one statement;
    both as stored."""
    row = {**_scalar_defaults(grants, row), **row}
    action = {**_scalar_defaults(grant_actions, action), **action}
    query = _request(tuple(row), tuple(action))
    params = {f"g_{k}": v for k, v in row.items()} | {f"a_{k}": v for k, v in action.items()}
    stored = (await conn.execute(query, params)).mappings().one()
    grant = {c.name: stored[c.name] for c in grants.c}
    recorded = {c.name: stored[f"action_{c.name}"] for c in grant_actions.c}
    return grant, recorded


async def update_grant(
    conn: AsyncConnection, grant_id: uuid.UUID, version: int, values: dict[str, Any]
) -> Row:
    """Write new values and bump the version (the caller holds the row lock)."""
    result = await conn.execute(versioned_update(grants, grant_id, version, values))
    return result.mappings().one()


async def grants_of_child(
    conn: AsyncConnection, child_id: uuid.UUID, category: str
) -> tuple[bool, datetime | None]:
    """Whether the child holds a requested or approved grant of the category, and when it
    last received a (not reversed) one, in one query."""
    g = grants.c
    of_child = and_(g.child_id == child_id, g.category == category)
    is_open = select(g.id).where(of_child, g.status.in_(("requested", "approved"))).exists()
    last = select(func.max(g.disbursed_at)).where(of_child, g.status == "disbursed")
    row = (await conn.execute(select(is_open, last.scalar_subquery()))).one()
    return bool(row[0]), row[1]


@dataclass(frozen=True)
class GrantFilter:
    fund_id: uuid.UUID | None = None
    child_id: uuid.UUID | None = None
    status: str | None = None
    category: str | None = None


async def list_grants(
    conn: AsyncConnection, principal: Principal, flt: GrantFilter, page: Page
) -> list[Row]:
    """Visible grants in (updated_at, id) order, one more than the page."""
    g = grants.c
    query = _visible_grants(principal)
    query = where_given(
        query,
        (g.fund_id, flt.fund_id),
        (g.child_id, flt.child_id),
        (g.status, flt.status),
        (g.category, flt.category),
    )
    return await read_page(conn, query, page, key=(g.updated_at, g.id), changed_at=g.updated_at)


# ---------------------------------------------------------------- grant actions


async def add_action(conn: AsyncConnection, row: dict[str, Any]) -> Row:
    """Record who did what to a grant; the action as stored."""
    query = insert(grant_actions).values(**row).returning(*grant_actions.c)
    return (await conn.execute(query)).mappings().one()


async def actions_of(
    conn: AsyncConnection, grant_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[Row]]:
    """Every action on the grants, oldest first, in one query."""
    if not grant_ids:
        return {}
    a = grant_actions.c
    rows = (
        await conn.execute(
            select(grant_actions).where(a.grant_id.in_(grant_ids)).order_by(a.grant_id, a.id)
        )
    ).mappings()
    out: dict[uuid.UUID, list[Row]] = {gid: [] for gid in grant_ids}
    for row in rows:
        out[row["grant_id"]].append(row)
    return out


# ---------------------------------------------------------------- reconciliation


async def read_snapshot(conn: AsyncConnection) -> None:
    """Make the transaction read one consistent snapshot (its first statement): the sums of
    a reconciliation must not straddle a commitment committed between two of its queries."""
    await conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))


@dataclass
class FundSums:
    """What the ledger and the grants of one fund add up to."""

    ledger_by_kind: dict[str, dict[str, int]]
    grants_by_status: dict[str, dict[str, int]]
    grants_by_category: dict[str, dict[str, int]]
    bad_grants: list[str]


async def fund_sums(
    conn: AsyncConnection, fund_ids: Sequence[uuid.UUID] | None = None
) -> dict[uuid.UUID, FundSums]:
    """Ledger sums by kind, grant totals by status and category, and the grants whose
    ledger entries do not fit their status, for the given funds (all when None)."""

    def scoped(query: Any, column: Any) -> Any:
        return query if fund_ids is None else query.where(column.in_(fund_ids))

    out: dict[uuid.UUID, FundSums] = {}

    def sums(fund_id: uuid.UUID) -> FundSums:
        return out.setdefault(fund_id, FundSums({}, {}, {}, []))

    lg, g = ledger.c, grants.c
    by_kind = scoped(
        select(lg.fund_id, lg.kind, func.count(), func.sum(lg.amount_khr)).group_by(
            lg.fund_id, lg.kind
        ),
        lg.fund_id,
    )
    for fund_id, kind, n, total in await conn.execute(by_kind):
        sums(fund_id).ledger_by_kind[kind] = {"count": int(n), "amount_khr": int(total)}
    for column, attr in ((g.status, "grants_by_status"), (g.category, "grants_by_category")):
        query = scoped(
            select(g.fund_id, column, func.count(), func.sum(g.amount_khr)).group_by(
                g.fund_id, column
            ),
            g.fund_id,
        )
        for fund_id, key, n, total in await conn.execute(query):
            getattr(sums(fund_id), attr)[key] = {"count": int(n), "amount_khr": int(total)}
    per_grant = scoped(
        select(
            g.id,
            g.fund_id,
            g.status,
            func.array_remove(func.array_agg(lg.kind), None),
            func.bool_and(func.coalesce(lg.amount_khr == g.amount_khr, True)),
        )
        .select_from(grants.outerjoin(ledger, lg.grant_id == g.id))
        .group_by(g.id),
        g.fund_id,
    )
    for grant_id, fund_id, status, kinds, amounts_ok in await conn.execute(per_grant):
        if not amounts_ok or not domain.ledger_kinds_fit(status, list(kinds)):
            sums(fund_id).bad_grants.append(str(grant_id))
    return out


async def all_funds(conn: AsyncConnection) -> list[Row]:
    """Every fund, for the verifier."""
    return list(
        (await conn.execute(select(funds).order_by(funds.c.commune_code, funds.c.id)))
        .mappings()
        .all()
    )


def _reconciled(fund: Row, sums: FundSums | None) -> domain.Reconciliation:
    found = sums or FundSums({}, {}, {}, [])
    return domain.reconcile(
        fund,
        found.ledger_by_kind,
        found.grants_by_status,
        found.grants_by_category,
        found.bad_grants,
    )


async def reconcile(conn: AsyncConnection, fund: Row) -> domain.Reconciliation:
    """One fund's reconciliation."""
    return _reconciled(fund, (await fund_sums(conn, [fund["id"]])).get(fund["id"]))


async def verify_ledger(conn: AsyncConnection) -> list[domain.Reconciliation]:
    """Recompute every fund from its ledger and its grants (a few queries in all)."""
    found = await fund_sums(conn)
    return [_reconciled(fund, found.get(fund["id"])) for fund in await all_funds(conn)]
