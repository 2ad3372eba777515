"""The funds service's use cases: each runs in the caller's transaction.

Money moves only here, and always the same way: lock the grant, check its state, lock the
fund, check the balance, append the ledger entry and change the fund's running totals in
the same transaction. The database refuses what slips past: available below zero, a second
disbursement of a grant, a payment reference used twice, a changed ledger row.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.context import Context
from libs.common.errors import Conflict, Forbidden, found
from libs.common.events.catalog import ChildV1
from libs.common.http import check_if_match
from services.funds import domain, store
from services.funds.models import outbox
from services.funds.schemas import DisburseIn, FundIn, GrantIn, TopUpIn

# What a violated constraint means to the client (the races the explicit checks can lose).
CONSTRAINT_CONFLICTS = {
    "uq_funds_place_year_name": "a fund with this name already exists for this place and year",
    "uq_funds_grants_one_open": "the child already has an open grant of this category",
    "uq_funds_grant_actions_one_approval": "you already approved this grant",
    "uq_ledger_grant_kind": "this grant already has that ledger entry",
    "uq_funds_ledger_payment_reference": (
        "this payment reference was already used for this fund and method"
    ),
    "uq_funds_ledger_top_up_reference": "a top-up with this reference was already booked",
    "ck_funds_available_not_negative": "insufficient funds",
}


@contextmanager
def conflicts_as_409() -> Iterator[None]:
    """Turn a known constraint violation into the 409 a client understands."""
    try:
        yield
    except IntegrityError as exc:
        message = CONSTRAINT_CONFLICTS.get(store.constraint_of(exc) or "")
        if message is None:
            raise
        raise Conflict(message) from exc


def _emit_fund(ctx: Context, verb: str, fund: store.Row, amount_khr: int | None = None) -> None:
    ctx.emit(f"funds.fund.{verb}.v1", str(fund["id"]), domain.fund_event(fund, amount_khr))


def _emit_grant(ctx: Context, verb: str, grant: store.Row) -> None:
    ctx.emit(f"funds.grant.{verb}.v1", str(grant["id"]), domain.grant_event(grant))


# ---------------------------------------------------------------- funds


async def create_fund(conn: AsyncConnection, body: FundIn, ctx: Context) -> store.Row:
    """Open a fund at a place inside the principal's areas."""
    ctx.principal.require_covers(body.commune_code)
    with conflicts_as_409():
        fund = await store.insert_fund(
            conn,
            {
                "id": uuid.uuid4(),
                "commune_code": body.commune_code,
                "fiscal_year": body.fiscal_year,
                "name": body.name,
                "budget_khr": body.budget_khr,
                "max_grant_khr": body.max_grant_khr,
                "approval_threshold_khr": body.approval_threshold_khr,
                "created_by": ctx.principal.sub,
                "created_org": ctx.principal.org,
            },
        )
    _emit_fund(ctx, "created", fund)
    await ctx.write_events(conn, outbox)
    return fund


async def read_fund(
    conn: AsyncConnection, fund_id: uuid.UUID, ctx: Context, *, lock: bool = False
) -> store.Row:
    """A visible fund; 404 otherwise."""
    return found(await store.get_fund(conn, fund_id, ctx.principal, lock=lock), "fund")


async def read_fund_books(conn: AsyncConnection, fund_id: uuid.UUID, ctx: Context) -> store.Row:
    """A fund whose ledger and reconciliation the principal may read: 404 when the fund is
    not visible, 403 when it is (a fund above the principal's areas) but its books are not."""
    fund = await read_fund(conn, fund_id, ctx)
    domain.require_books(ctx.principal, fund["commune_code"])
    return fund


async def top_up(
    conn: AsyncConnection, fund_id: uuid.UUID, body: TopUpIn, if_match: str | None, ctx: Context
) -> store.Row:
    """Add money to a fund: a `top_up` ledger entry and the fund's totals, together."""
    fund = await read_fund(conn, fund_id, ctx, lock=True)
    if not ctx.principal.covers(fund["commune_code"]):
        raise Forbidden("the fund belongs to a place outside your areas")
    check_if_match(if_match, fund["version"])
    with conflicts_as_409():
        await store.add_entry(
            conn,
            {
                "fund_id": fund_id,
                "kind": "top_up",
                "amount_khr": body.amount_khr,
                "reference": body.reference,
                "request_id": ctx.request_id,
                **ctx.actor,
            },
        )
    fund = await store.move_money(conn, fund_id, topped_up=body.amount_khr)
    _emit_fund(ctx, "topped_up", fund, body.amount_khr)
    await ctx.write_events(conn, outbox)
    return fund


# ---------------------------------------------------------------- grants


async def read_grant(
    conn: AsyncConnection, grant_id: uuid.UUID, ctx: Context, *, lock: bool = False
) -> store.Row:
    """A visible grant; 404 otherwise."""
    return found(await store.get_grant(conn, grant_id, ctx.principal, lock=lock), "grant")


async def _locked_for(
    conn: AsyncConnection, grant_id: uuid.UUID, action: str, if_match: str | None, ctx: Context
) -> tuple[store.Row, str]:
    """Lock a visible grant at the version the client read; the status `action` leads to
    (409 when it cannot)."""
    grant = await read_grant(conn, grant_id, ctx, lock=True)
    check_if_match(if_match, grant["version"])
    return grant, domain.next_status(action, grant["status"])


async def _save(
    conn: AsyncConnection, grant: store.Row, verb: str, changes: dict[str, Any], ctx: Context
) -> store.Row:
    """Write a change of a locked grant and emit `funds.grant.<verb>.v1` with it."""
    grant = await store.update_grant(conn, grant["id"], grant["version"], changes)
    _emit_grant(ctx, verb, grant)
    await ctx.write_events(conn, outbox)
    return grant


async def _record(
    conn: AsyncConnection, grant: store.Row, action: str, ctx: Context, reason: str | None = None
) -> None:
    await store.add_action(
        conn,
        {
            "grant_id": grant["id"],
            "action": action,
            "district_level": ctx.principal.is_district_level,
            "reason": reason,
            "request_id": ctx.request_id,
            **ctx.actor,
        },
    )


async def request_grant(
    conn: AsyncConnection, body: GrantIn, ctx: Context, now: datetime | None = None
) -> store.Row:
    """Ask a fund for a grant for a visible, open child inside the fund's area."""
    now = now or datetime.now(UTC)
    child = found(await store.get_child(conn, body.child_id, ctx.principal), "child")
    fund = await read_fund(conn, body.fund_id, ctx)
    domain.check_child_open(child)
    domain.check_child_in_fund_area(fund["commune_code"], child)
    domain.check_amount(body.amount_khr, fund["max_grant_khr"])
    if await store.open_grant_exists(conn, child["id"], body.category.value):
        raise Conflict("the child already has an open grant of this category")
    repeat = domain.is_repeat(
        await store.last_disbursed_at(conn, child["id"], body.category.value), now
    )
    domain.check_repeat(repeat, body.justification)
    with conflicts_as_409():
        grant = await store.insert_grant(
            conn,
            {
                "id": uuid.uuid4(),
                "fund_id": fund["id"],
                "child_id": child["id"],
                "commune_code": child["commune_code"],
                "category": body.category.value,
                "shock": body.shock.value if body.shock else None,
                "items": [i.model_dump() for i in body.items] if body.items else None,
                "amount_khr": body.amount_khr,
                "justification": body.justification,
                "status": "requested",
                "repeat_within_30_days": repeat,
                "approvals_required": domain.approvals_required(
                    body.amount_khr, fund["approval_threshold_khr"]
                ),
                "requested_by": ctx.principal.sub,
                "requested_org": ctx.principal.org,
            },
        )
    await _record(conn, grant, "requested", ctx)
    _emit_grant(ctx, "requested", grant)
    await ctx.write_events(conn, outbox)
    return grant


async def approve(
    conn: AsyncConnection, grant_id: uuid.UUID, if_match: str | None, ctx: Context
) -> store.Row:
    """Record an approval; the one that completes it commits the amount against the fund."""
    grant = await read_grant(conn, grant_id, ctx, lock=True)
    check_if_match(if_match, grant["version"])
    completes = domain.approve(
        status=grant["status"],
        requester_sub=grant["requested_by"],
        required=grant["approvals_required"],
        approvals=await store.approvals_of(conn, grant_id),
        approver=domain.Approval(ctx.principal.sub, ctx.principal.is_district_level),
    )
    with conflicts_as_409():
        await _record(conn, grant, "approved", ctx)
    if not completes:  # recorded; the grant waits for its second, district-level approval
        return await store.update_grant(conn, grant_id, grant["version"], {})
    # The fund row lock serialises every commitment against this fund: the balance read
    # here cannot change before this transaction commits.
    fund = await store.lock_fund(conn, grant["fund_id"])
    domain.check_available(fund["available_khr"], grant["amount_khr"])
    with conflicts_as_409():
        await store.add_entry(conn, _grant_entry(grant, "commitment", ctx))
        await store.move_money(conn, fund["id"], committed=grant["amount_khr"])
    return await _save(conn, grant, "approved", {"status": "approved"}, ctx)


def _grant_entry(grant: store.Row, kind: str, ctx: Context, **extra: Any) -> dict[str, Any]:
    return {
        "fund_id": grant["fund_id"],
        "grant_id": grant["id"],
        "kind": kind,
        "amount_khr": grant["amount_khr"],
        "request_id": ctx.request_id,
        **ctx.actor,
        **extra,
    }


async def reject(
    conn: AsyncConnection, grant_id: uuid.UUID, reason: str, if_match: str | None, ctx: Context
) -> store.Row:
    """Refuse a requested grant (no money has moved)."""
    grant, status = await _locked_for(conn, grant_id, "reject", if_match, ctx)
    await _record(conn, grant, "rejected", ctx, reason)
    return await _save(conn, grant, "rejected", {"status": status}, ctx)


async def disburse(
    conn: AsyncConnection, grant_id: uuid.UUID, body: DisburseIn, if_match: str | None, ctx: Context
) -> store.Row:
    """Pay an approved grant, exactly once: its commitment becomes a disbursement."""
    grant, status = await _locked_for(conn, grant_id, "disburse", if_match, ctx)
    with conflicts_as_409():
        entry = await store.add_entry(
            conn,
            _grant_entry(
                grant, "disbursement", ctx, method=body.method.value, reference=body.reference
            ),
        )
        await store.move_money(
            conn, grant["fund_id"], committed=-grant["amount_khr"], disbursed=grant["amount_khr"]
        )
    await _record(conn, grant, "disbursed", ctx)
    return await _save(
        conn,
        grant,
        "disbursed",
        {
            "status": status,
            "disbursement_method": body.method.value,
            "disbursement_reference": body.reference,
            "disbursed_at": entry["at"],
        },
        ctx,
    )


async def cancel(
    conn: AsyncConnection,
    grant_id: uuid.UUID,
    reason: str | None,
    if_match: str | None,
    ctx: Context,
) -> store.Row:
    """Withdraw a grant before it is paid; an approved one releases its commitment."""
    grant = await read_grant(conn, grant_id, ctx, lock=True)
    p = ctx.principal
    if not p.has("funds:manage") and grant["requested_org"] != p.org:
        raise Forbidden("only the requesting organisation or a fund manager may cancel a grant")
    check_if_match(if_match, grant["version"])
    status = domain.next_status("cancel", grant["status"])
    if grant["status"] == "approved":  # only an approved grant holds a commitment
        with conflicts_as_409():
            await store.add_entry(conn, _grant_entry(grant, "release", ctx))
            await store.move_money(conn, grant["fund_id"], committed=-grant["amount_khr"])
    await _record(conn, grant, "cancelled", ctx, reason)
    return await _save(conn, grant, "cancelled", {"status": status}, ctx)


async def reverse(
    conn: AsyncConnection, grant_id: uuid.UUID, reason: str, if_match: str | None, ctx: Context
) -> store.Row:
    """Undo a disbursement with a `reversal` entry; the money is available again."""
    grant, status = await _locked_for(conn, grant_id, "reverse", if_match, ctx)
    with conflicts_as_409():
        await store.add_entry(conn, _grant_entry(grant, "reversal", ctx))
        await store.move_money(conn, grant["fund_id"], disbursed=-grant["amount_khr"])
    await _record(conn, grant, "reversed", ctx, reason)
    return await _save(conn, grant, "reversed", {"status": status}, ctx)


# ---------------------------------------------------------------- projection


async def apply_child(conn: AsyncConnection, data: ChildV1) -> None:
    """Keep the local copy of a child (codes, owner, status, version) from a registry event."""
    await store.upsert_child(
        conn,
        {
            "id": uuid.UUID(data.child_id),
            "commune_code": data.commune_code,
            "village_code": data.village_code,
            "owner_org": data.owner_org,
            "status": data.status,
            "version": data.version,
        },
    )
