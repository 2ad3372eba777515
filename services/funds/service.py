"""The funds service's use cases: each runs in the caller's transaction.

Money moves only here, and always the same way: lock the grant, check its state, lock the
fund, check the balance, append the ledger entry and change the fund's running totals in
the same transaction. The database refuses what slips past: available below zero, a second
disbursement of a grant, a payment reference used twice, a changed ledger row.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

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
    except store.INTEGRITY_ERRORS as exc:
        message = CONSTRAINT_CONFLICTS.get(store.constraint_of(exc) or "")
        if message is None:
            raise
        raise Conflict(message) from exc


def _emit_fund(ctx: Context, verb: str, fund: store.Row, amount_khr: int | None = None) -> None:
    ctx.emit(f"funds.fund.{verb}.v1", str(fund["id"]), domain.fund_event(fund, amount_khr))


def _emit_grant(ctx: Context, verb: str, grant: Mapping[Any, Any]) -> None:
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
        fund = await store.book(
            conn,
            {
                "fund_id": fund_id,
                "kind": "top_up",
                "amount_khr": body.amount_khr,
                "reference": body.reference,
                "request_id": ctx.request_id,
                **ctx.actor,
            },
            topped_up_khr=body.amount_khr,
        )
    _emit_fund(ctx, "topped_up", fund, body.amount_khr)
    await ctx.write_events(conn, outbox)
    return fund


# ---------------------------------------------------------------- grants


async def read_grant(
    conn: AsyncConnection, grant_id: uuid.UUID, ctx: Context, *, lock: bool = False
) -> store.Row:
    """A visible grant; 404 otherwise."""
    return found(await store.get_grant(conn, grant_id, ctx.principal, lock=lock), "grant")


@dataclass
class Granted:
    """A grant as a use case leaves it, and every action on it, oldest first (its answer
    shows them; they are read once, under the grant's lock, and each new one added)."""

    grant: Mapping[Any, Any]
    actions: list[Mapping[Any, Any]]


async def _claimed(
    conn: AsyncConnection, grant_id: uuid.UUID, if_match: str | None, ctx: Context
) -> Granted:
    """A visible grant locked at the version the client read, and its actions, in one
    round trip (see store.lock_grant): for the steps of the grant workflow."""
    grant, actions = found(await store.lock_grant(conn, grant_id, ctx.principal), "grant")
    check_if_match(if_match, grant["version"])
    return Granted(grant, [*actions])


async def _locked(
    conn: AsyncConnection, grant_id: uuid.UUID, if_match: str | None, ctx: Context
) -> Granted:
    """Lock a visible grant at the version the client read, and read its actions (every
    action is written under that lock, so none can be added meanwhile)."""
    grant = await read_grant(conn, grant_id, ctx, lock=True)
    check_if_match(if_match, grant["version"])
    return await with_actions(conn, grant)


async def with_actions(conn: AsyncConnection, grant: Mapping[Any, Any]) -> Granted:
    """A grant and its actions."""
    actions: list[Mapping[Any, Any]] = []
    actions.extend((await store.actions_of(conn, [grant["id"]]))[grant["id"]])
    return Granted(grant, actions)


async def _locked_for(
    conn: AsyncConnection, grant_id: uuid.UUID, action: str, if_match: str | None, ctx: Context
) -> tuple[Granted, str]:
    """`_locked`, and the status `action` leads to (409 when it cannot)."""
    locked = await _locked(conn, grant_id, if_match, ctx)
    return locked, domain.next_status(action, locked.grant["status"])


async def _save(
    conn: AsyncConnection, locked: Granted, verb: str, changes: dict[str, Any], ctx: Context
) -> Granted:
    """Write a change of a locked grant and emit `funds.grant.<verb>.v1` with it."""
    grant = await store.update_grant(conn, locked.grant["id"], locked.grant["version"], changes)
    _emit_grant(ctx, verb, grant)
    await ctx.write_events(conn, outbox)
    return Granted(grant, locked.actions)


def _action(action: str, ctx: Context, reason: str | None = None) -> dict[str, Any]:
    """Who did what to a grant (its id aside)."""
    return {
        "action": action,
        "district_level": ctx.principal.is_district_level,
        "reason": reason,
        "request_id": ctx.request_id,
        **ctx.actor,
    }


async def _record(
    conn: AsyncConnection, locked: Granted, action: str, ctx: Context, reason: str | None = None
) -> None:
    """Record who did what to the grant, and add it to its actions."""
    row = {"grant_id": locked.grant["id"], **_action(action, ctx, reason)}
    locked.actions.append(await store.add_action(conn, row))


async def request_grant(
    conn: AsyncConnection, body: GrantIn, ctx: Context, now: datetime | None = None
) -> Granted:
    """Ask a fund for a grant for a visible, open child inside the fund's area."""
    now = now or datetime.now(UTC)
    reads = await store.read_for_request(
        conn, body.child_id, body.fund_id, body.category.value, ctx.principal
    )
    child = found(reads.child, "child")
    fund = found(reads.fund, "fund")
    domain.check_child_open(child)
    domain.check_child_in_fund_area(fund["commune_code"], child)
    domain.check_amount(body.amount_khr, fund["max_grant_khr"])
    if reads.has_open:
        raise Conflict("the child already has an open grant of this category")
    repeat = domain.is_repeat(reads.last_disbursed_at, now)
    domain.check_repeat(repeat, body.justification)
    with conflicts_as_409():
        grant, requested = await store.insert_grant(
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
            _action("requested", ctx),
        )
    _emit_grant(ctx, "requested", grant)
    await ctx.write_events(conn, outbox)
    return Granted(grant, [requested])


async def approve(
    conn: AsyncConnection, grant_id: uuid.UUID, if_match: str | None, ctx: Context
) -> Granted:
    """Record an approval; the one that completes it commits the amount against the fund."""
    locked = await _claimed(conn, grant_id, if_match, ctx)
    grant = locked.grant
    completes = domain.approve(
        status=grant["status"],
        requester_sub=grant["requested_by"],
        required=grant["approvals_required"],
        approvals=[
            domain.Approval(a["actor_sub"], a["district_level"])
            for a in locked.actions
            if a["action"] == "approved"
        ],
        approver=domain.Approval(ctx.principal.sub, ctx.principal.is_district_level),
    )
    action = _action("approved", ctx)
    if not completes:  # recorded; the grant waits for its second, district-level approval
        with conflicts_as_409():
            waiting, recorded = await store.record_approval(conn, grant, action)
        return Granted(waiting, [*locked.actions, recorded])
    # The fund row lock (taken by the statement that commits the money) serialises every
    # commitment against this fund: the balance it checks cannot change before this
    # transaction commits.
    amount, entry = grant["amount_khr"], _grant_entry(grant, "commitment", ctx)
    approved: Mapping[Any, Any] | None
    with conflicts_as_409():
        approved, recorded = await store.commit_approval(conn, grant, action, entry, "approved")
        if approved is None:  # the fund did not cover it: only the approval is recorded
            fund = await store.lock_fund(conn, grant["fund_id"])
            domain.check_available(fund["available_khr"], amount)
            await store.book(conn, entry, committed_khr=amount)  # topped up meanwhile
            values = {"status": "approved"}
            approved = await store.update_grant(conn, grant_id, grant["version"], values)
    _emit_grant(ctx, "approved", approved)
    await ctx.write_events(conn, outbox)
    return Granted(approved, [*locked.actions, recorded])


def _grant_entry(grant: Mapping[Any, Any], kind: str, ctx: Context, **extra: Any) -> dict[str, Any]:
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
) -> Granted:
    """Refuse a requested grant (no money has moved)."""
    locked, status = await _locked_for(conn, grant_id, "reject", if_match, ctx)
    await _record(conn, locked, "rejected", ctx, reason)
    return await _save(conn, locked, "rejected", {"status": status}, ctx)


async def disburse(
    conn: AsyncConnection, grant_id: uuid.UUID, body: DisburseIn, if_match: str | None, ctx: Context
) -> Granted:
    """Pay an approved grant, exactly once: its commitment becomes a disbursement."""
    locked = await _claimed(conn, grant_id, if_match, ctx)
    grant = locked.grant
    status = domain.next_status("disburse", grant["status"])
    method, reference = body.method.value, body.reference
    entry = _grant_entry(grant, "disbursement", ctx, method=method, reference=reference)
    with conflicts_as_409():
        paid, recorded = await store.disburse_grant(
            conn, grant, _action("disbursed", ctx), entry, status
        )
    _emit_grant(ctx, "disbursed", paid)
    await ctx.write_events(conn, outbox)
    return Granted(paid, [*locked.actions, recorded])


async def cancel(
    conn: AsyncConnection,
    grant_id: uuid.UUID,
    reason: str | None,
    if_match: str | None,
    ctx: Context,
) -> Granted:
    """Withdraw a grant before it is paid; an approved one releases its commitment."""
    grant = await read_grant(conn, grant_id, ctx, lock=True)
    p = ctx.principal
    if not p.has("funds:manage") and grant["requested_org"] != p.org:
        raise Forbidden("only the requesting organisation or a fund manager may cancel a grant")
    check_if_match(if_match, grant["version"])
    status = domain.next_status("cancel", grant["status"])
    locked = await with_actions(conn, grant)
    if grant["status"] == "approved":  # only an approved grant holds a commitment
        with conflicts_as_409():
            amount = grant["amount_khr"]
            await store.book(conn, _grant_entry(grant, "release", ctx), committed_khr=-amount)
    await _record(conn, locked, "cancelled", ctx, reason)
    return await _save(conn, locked, "cancelled", {"status": status}, ctx)


async def reverse(
    conn: AsyncConnection, grant_id: uuid.UUID, reason: str, if_match: str | None, ctx: Context
) -> Granted:
    """Undo a disbursement with a `reversal` entry; the money is available again."""
    locked, status = await _locked_for(conn, grant_id, "reverse", if_match, ctx)
    grant = locked.grant
    with conflicts_as_409():
        amount = grant["amount_khr"]
        await store.book(conn, _grant_entry(grant, "reversal", ctx), disbursed_khr=-amount)
    await _record(conn, locked, "reversed", ctx, reason)
    return await _save(conn, locked, "reversed", {"status": status}, ctx)


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
