"""Every SQL statement of the funds service.

Locks: an action on a grant locks the grant row first, then (when money moves) the fund
row, always in that order, so two transactions never wait on each other in a circle. Both
are `FOR NO KEY UPDATE`: exclusive among writers (it is the lock an UPDATE takes) but it
does not block other transactions inserting rows that merely reference the fund by key.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
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
from libs.common.store import (
    driver_connection,
    read_page,
    upsert_newest,
    versioned_update,
    where_given,
)
from services.funds import domain
from services.funds.models import children, funds, grant_actions, grants, ledger, referral_shares

Row = RowMapping


# A violated constraint, as SQLAlchemy raises it and as asyncpg does (driver_connection).
INTEGRITY_ERRORS = (IntegrityError, asyncpg.IntegrityConstraintViolationError)


def constraint_of(exc: Exception) -> str | None:
    """The name of the constraint a failed statement violated, when PostgreSQL says."""
    cause = getattr(exc.orig, "__cause__", None) if isinstance(exc, IntegrityError) else exc
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


def _booking() -> Any:
    """One statement, built once: the fund's totals moved (version bumped) and the ledger
    entry appended; answering the fund as stored and the entry's time (`entry_at`)."""
    f = funds.c
    fund = (
        update(funds)
        .where(f.id == bindparam("e_fund_id", type_=ledger.c.fund_id.type))
        .values(
            **{t: f[t] + bindparam(f"d_{t}", type_=BigInteger()) for t in _TOTALS},
            version=f.version + 1,
            updated_at=func.now(),
        )
        .returning(*funds.c)
        .cte("moved")
    )
    values = select(*[bindparam(f"e_{c}", type_=ledger.c[c].type) for c in _ENTRY])
    written = (
        insert(ledger)
        .from_select(list(_ENTRY), values.select_from(fund))
        .returning(ledger.c.at)
        .cte("written")
    )
    return select(*fund.c, written.c.at.label("entry_at")).select_from(fund.join(written, true()))


_BOOK = _booking()


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


# The grants with their children: what grant_visible_to is written over.
GRANTS_AND_CHILDREN = grants.join(children, children.c.id == grants.c.child_id)


def _visible_grants(principal: Principal) -> Any:
    return select(grants).select_from(GRANTS_AND_CHILDREN).where(grant_visible_to(principal))


async def get_grant(
    conn: AsyncConnection, grant_id: uuid.UUID, principal: Principal, *, lock: bool = False
) -> Row | None:
    """A grant visible to the principal, optionally locked for an action."""
    query = _visible_grants(principal).where(grants.c.id == grant_id)
    if lock:
        query = query.with_for_update(of=grants, key_share=True)
    return (await conn.execute(query)).mappings().first()


async def update_grant(
    conn: AsyncConnection, grant_id: uuid.UUID, version: int, values: dict[str, Any]
) -> Row:
    """Write new values and bump the version (the caller holds the row lock)."""
    result = await conn.execute(versioned_update(grants, grant_id, version, values))
    return result.mappings().one()


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


# ---------------------------------------------------------------- the grant workflow
#
# A grant's request, approval and payment run these statements on asyncpg directly
# (libs.common.store.driver_connection): each prepared once per connection, one round trip.
# They answer dicts of their columns, holding the Python values SQLAlchemy's rows would.

_CHILD = tuple(c.name for c in children.c)
_FUND = tuple(c.name for c in funds.c)
_GRANT = tuple(c.name for c in grants.c)
_ACTION = tuple(c.name for c in grant_actions.c)
# The columns a request writes (the rest are the database's or the later steps'), the
# Python-side defaults among them, and an action's own columns with their types.
_NEW_GRANT = (
    "id",
    "fund_id",
    "child_id",
    "commune_code",
    "category",
    "shock",
    "items",
    "amount_khr",
    "justification",
    "status",
    "repeat_within_30_days",
    "approvals_required",
    "requested_by",
    "requested_org",
    "version",
)
_GRANT_DEFAULTS = {
    c.name: c.default.arg for c in grants.c if c.default is not None and c.default.is_scalar
}
_NEW_ACTION = {
    "action": "text",
    "district_level": "boolean",
    "reason": "text",
    "request_id": "text",
    "actor_sub": "text",
    "actor_org": "text",
}
_ENTRY_TYPES = dict(zip(_ENTRY, ("uuid", "uuid", "text", "bigint", *["text"] * 5), strict=True))


def _columns(alias: str, names: Sequence[str], prefix: str = "") -> str:
    return ", ".join(f"{alias}.{n} AS {prefix}{n}" for n in names)


def _params(first: int, types: Sequence[str]) -> str:
    return ", ".join(f"${first + i}::{t}" for i, t in enumerate(types))


def _part(row: Any, prefix: str, names: Sequence[str]) -> dict[str, Any] | None:
    """The columns `names` of a joined row, read as `<prefix><name>`; None when the joined
    row is absent (its id is NULL)."""
    if row[f"{prefix}id"] is None:
        return None
    return {n: row[prefix + n] for n in names}


def _child_visible(patterns: str, org: str) -> str:
    """access.child_visible_text over the projected children aliased `c`."""
    return access.child_visible_text(
        patterns,
        org,
        shares=referral_shares.fullname,
        commune="c.commune_code",
        village="c.village_code",
        owner="c.owner_org",
        child_id="c.id",
    )


# grant_visible_to, as text: $2 and $3 are access.visibility_args. With NULL for the
# organisation (a government principal's) the rule is its place test alone.
_GRANT_VISIBLE = (
    f"(({_child_visible('$2', '$3')}) OR ($3::text IS NOT NULL"
    f" AND {_child_visible('$2', 'NULL')} AND g.requested_org = $3))"
)


def _action_cte(grant_id: str, first: int, source: str = "") -> str:
    """The CTE `a`: an action of the grant `grant_id` (an SQL expression over `source`), its
    columns (_NEW_ACTION's) the parameters from $`first` on; it answers the action."""
    return (
        f"a AS (INSERT INTO funds.grant_actions (grant_id, {', '.join(_NEW_ACTION)})"
        f" SELECT {grant_id}, {_params(first, list(_NEW_ACTION.values()))}{source}"
        f" RETURNING {', '.join(_ACTION)})"
    )


def _booking_ctes(first: int, moves: str, *, covering: bool = False) -> str:
    """The CTEs `f` and `l`: the fund's totals moved by `moves` (SQL SET items, `{amount}`
    standing for the entry's amount) and its version bumped; only if they moved, the ledger
    entry appended, answering its time. The entry's columns (_ENTRY's, the fund's id first)
    are the parameters from $`first` on. With `covering`, only if the fund's available
    balance covers the amount when the statement holds the fund's row lock."""
    fund, amount = f"${first}::uuid", f"${first + 3}::bigint"
    covered = f" AND available_khr >= {amount}" if covering else ""
    return (
        f"f AS (UPDATE funds.funds SET {moves.format(amount=amount)}, version = version + 1,"
        " updated_at = now()"
        f" WHERE id = {fund}{covered} RETURNING id),"
        f" l AS (INSERT INTO funds.ledger ({', '.join(_ENTRY)})"
        f" SELECT f.id, {_params(first + 1, list(_ENTRY_TYPES.values())[1:])} FROM f RETURNING at)"
    )


def _entry_params(entry: dict[str, Any]) -> list[Any]:
    if not set(entry) <= set(_ENTRY):
        raise ValueError("a ledger entry the booking statement does not know")
    return [entry.get(c) for c in _ENTRY]


def _action_params(action: dict[str, Any]) -> list[Any]:
    if action.keys() != _NEW_ACTION.keys():
        raise ValueError(f"a grant action has the columns {sorted(_NEW_ACTION)}")
    return [action[c] for c in _NEW_ACTION]


_REQUEST_READS_SQL = (
    f"SELECT {_columns('c', _CHILD, 'child_')}, {_columns('f', _FUND, 'fund_')},"
    " EXISTS (SELECT FROM funds.grants g WHERE g.child_id = $1 AND g.category = $3"
    " AND g.status IN ('requested', 'approved')) AS has_open,"
    " (SELECT max(g.disbursed_at) FROM funds.grants g WHERE g.child_id = $1"
    " AND g.category = $3 AND g.status = 'disbursed') AS last_disbursed_at"
    " FROM (SELECT) AS one"
    f" LEFT JOIN funds.children c ON c.id = $1 AND {_child_visible('$4', '$5')}"
    " LEFT JOIN funds.funds f ON f.id = $2"
)


@dataclass(frozen=True)
class RequestReads:
    """What a grant request is checked against: the child and the fund (None when absent
    or not visible), whether the child holds a requested or approved grant of the
    category, and when it last received a (not reversed) one."""

    child: dict[str, Any] | None
    fund: dict[str, Any] | None
    has_open: bool
    last_disbursed_at: datetime | None


async def read_for_request(
    conn: AsyncConnection,
    child_id: uuid.UUID,
    fund_id: uuid.UUID,
    category: str,
    principal: Principal,
) -> RequestReads:
    """The child, the fund and the child's grants of the category, in one query."""
    pg = await driver_connection(conn)
    row = await pg.fetchrow(
        _REQUEST_READS_SQL, child_id, fund_id, category, *access.visibility_args(principal)
    )
    fund = _part(row, "fund_", _FUND)
    if fund is not None and not domain.fund_visible(principal, fund["commune_code"]):
        fund = None
    return RequestReads(
        _part(row, "child_", _CHILD), fund, row["has_open"], row["last_disbursed_at"]
    )


_REQUEST_SQL = (
    f"WITH g AS (INSERT INTO funds.grants ({', '.join(_NEW_GRANT)})"
    f" VALUES ({', '.join(f'${i}' for i in range(1, len(_NEW_GRANT) + 1))})"
    f" RETURNING {', '.join(_GRANT)}),"
    f" {_action_cte('g.id', len(_NEW_GRANT) + 1, ' FROM g')}"
    f" SELECT {_columns('g', _GRANT)}, {_columns('a', _ACTION, 'action_')} FROM g, a"
)


async def insert_grant(
    conn: AsyncConnection, row: dict[str, Any], action: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Insert a grant and its first action (`action`, without its grant) in one statement;
    both as stored."""
    row = {**_GRANT_DEFAULTS, **row}
    if row.keys() != set(_NEW_GRANT):
        raise ValueError(f"a new grant has the columns {sorted(_NEW_GRANT)}")
    params = [json.dumps(row[c]) if c == "items" else row[c] for c in _NEW_GRANT]
    pg = await driver_connection(conn)
    stored = await pg.fetchrow(_REQUEST_SQL, *params, *_action_params(action))
    return {c: stored[c] for c in _GRANT}, {c: stored[f"action_{c}"] for c in _ACTION}


_LOCK_SQL = (
    f"SELECT {_columns('g', _GRANT)}, {_columns('a', _ACTION, 'action_')},"
    " (SELECT seen.version FROM funds.grants seen WHERE seen.id = $1) AS seen_version"
    " FROM funds.grants g JOIN funds.children c ON c.id = g.child_id"
    " LEFT JOIN funds.grant_actions a ON a.grant_id = g.id"
    f" WHERE g.id = $1 AND {_GRANT_VISIBLE}"
    " ORDER BY a.id FOR NO KEY UPDATE OF g"
)
_ACTIONS_SQL = (
    f"SELECT {', '.join(_ACTION)} FROM funds.grant_actions WHERE grant_id = $1 ORDER BY id"
)


async def lock_grant(
    conn: AsyncConnection, grant_id: uuid.UUID, principal: Principal
) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """A grant visible to the principal, locked for an action, and every action on it,
    oldest first; None when there is none.

    The actions are read in the statement's snapshot, taken before the lock is granted.
    Every action is written under the grant's lock together with a bump of its version, so
    while the version seen in the snapshot is the one locked they are complete; else they
    are read again."""
    pg = await driver_connection(conn)
    rows = await pg.fetch(_LOCK_SQL, grant_id, *access.visibility_args(principal))
    if not rows:
        return None
    grant = {c: rows[0][c] for c in _GRANT}
    if rows[0]["seen_version"] == grant["version"]:
        actions = [a for a in (_part(r, "action_", _ACTION) for r in rows) if a is not None]
    else:  # changed while the statement waited for the lock
        actions = [dict(r) for r in await pg.fetch(_ACTIONS_SQL, grant_id)]
    return grant, actions


# The steps after a request, on a grant the caller holds locked. Their parameters: $1 the
# grant's id, $2 its version as locked, the new action's columns, then (when money moves)
# the ledger entry's columns and the grant's new status. Each answers the grant as changed
# (NULL columns when it is not) and the action as stored.
_STEP_ENTRY = 3 + len(_NEW_ACTION)
_STEP_STATUS = f"${_STEP_ENTRY + len(_ENTRY)}::text"


def _step_entry(column: str) -> str:
    """The parameter of a step's ledger entry column."""
    return f"${_STEP_ENTRY + _ENTRY.index(column)}::{_ENTRY_TYPES[column]}"


_STEP_GRANT = "id = $1::uuid AND version = $2::integer"
_STEP_ANSWER = (
    f" SELECT {_columns('g', _GRANT)}, {_columns('a', _ACTION, 'action_')}"
    " FROM a LEFT JOIN g ON true"
)
_APPROVAL_SQL = (
    f"WITH {_action_cte('$1::uuid', 3)},"
    " g AS (UPDATE funds.grants SET version = version + 1, updated_at = now()"
    f" WHERE {_STEP_GRANT} RETURNING {', '.join(_GRANT)})" + _STEP_ANSWER
)
_COMMITMENT_SQL = (
    f"WITH {_action_cte('$1::uuid', 3)},"
    f" {_booking_ctes(_STEP_ENTRY, 'committed_khr = committed_khr + {amount}', covering=True)},"
    f" g AS (UPDATE funds.grants SET status = {_STEP_STATUS}, version = version + 1,"
    f" updated_at = now() WHERE {_STEP_GRANT} AND EXISTS (SELECT FROM l)"
    f" RETURNING {', '.join(_GRANT)})" + _STEP_ANSWER
)
_PAID = "committed_khr = committed_khr - {amount}, disbursed_khr = disbursed_khr + {amount}"
_DISBURSEMENT_SQL = (
    f"WITH {_booking_ctes(_STEP_ENTRY, _PAID)}, {_action_cte('$1::uuid', 3)},"
    f" g AS (UPDATE funds.grants SET status = {_STEP_STATUS},"
    f" disbursement_method = {_step_entry('method')},"
    f" disbursement_reference = {_step_entry('reference')}, disbursed_at = l.at,"
    f" version = version + 1, updated_at = now() FROM l WHERE {_STEP_GRANT}"
    f" RETURNING {', '.join(_GRANT)})" + _STEP_ANSWER
)


async def _step(
    conn: AsyncConnection, sql: str, grant: Mapping[Any, Any], *params: Any
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    pg = await driver_connection(conn)
    row = await pg.fetchrow(sql, grant["id"], grant["version"], *params)
    return _part(row, "", _GRANT), {c: row[f"action_{c}"] for c in _ACTION}


def _changed(grant: dict[str, Any] | None) -> dict[str, Any]:
    if grant is None:  # the caller's lock keeps its id and version
        raise RuntimeError("the locked grant was not found at its version")
    return grant


async def record_approval(
    conn: AsyncConnection, grant: Mapping[Any, Any], action: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Record an approval (`action`) that leaves the grant waiting for another, and bump
    the grant's version, in one statement; the grant and the action as stored."""
    changed, recorded = await _step(conn, _APPROVAL_SQL, grant, *_action_params(action))
    return _changed(changed), recorded


async def commit_approval(
    conn: AsyncConnection,
    grant: Mapping[Any, Any],
    action: dict[str, Any],
    entry: dict[str, Any],
    status: str,
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """Record the approval (`action`) that completes the grant's and, only if the fund's
    available balance covers the `entry` (its commitment) when the statement holds the
    fund's row lock, book the entry and give the grant `status`, in one statement. The
    grant as changed (None when the fund did not cover it) and the action as stored."""
    return await _step(
        conn,
        _COMMITMENT_SQL,
        grant,
        *_action_params(action),
        *_entry_params(entry),
        status,
    )


async def disburse_grant(
    conn: AsyncConnection,
    grant: Mapping[Any, Any],
    action: dict[str, Any],
    entry: dict[str, Any],
    status: str,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Pay the grant in one statement: book the `entry` (its disbursement, moving the amount
    from committed to disbursed), record the `action`, and give the grant `status`, the
    entry's method and reference and its time as `disbursed_at`; the grant and the action
    as stored."""
    params = (*_action_params(action), *_entry_params(entry), status)
    changed, recorded = await _step(conn, _DISBURSEMENT_SQL, grant, *params)
    return _changed(changed), recorded


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
