"""Routes of the funds service: parse, authorise, call the use case, answer."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.app import request_id
from libs.common.auth import Principal, PrincipalDep
from libs.common.context import Context
from libs.common.errors import Forbidden
from libs.common.events.funds_events import FUNDS_EVENTS, Category
from libs.common.feeds import Feed, add_changes_route
from libs.common.http import (
    PageDep,
    json_response,
    page_answer,
    parse_id,
    seq_cursor,
    time_cursor,
    updated_key,
)
from libs.common.inputs import FUND_PLACE_PATTERN
from libs.common.routes import list_page, read_record, write_record
from libs.common.runtime import RuntimeDep, ServiceRuntime
from services.funds import SERVICE, domain, service, store
from services.funds.models import grants, outbox
from services.funds.schemas import (
    ApproveIn,
    CancelIn,
    DisburseIn,
    FundIn,
    FundOut,
    FundPage,
    GrantIn,
    GrantOut,
    GrantPage,
    GrantStatus,
    LedgerPage,
    ReconciliationOut,
    RejectIn,
    ReverseIn,
    TopUpIn,
)

router = APIRouter(prefix="/v1/funds", tags=["funds"])
GRANT_CHANGES = tuple(t for t in FUNDS_EVENTS if t.startswith("funds.grant."))
add_changes_route(
    router,
    Feed("funds", outbox, store.GRANTS_AND_CHILDREN, grants.c.id, "grant_id", GRANT_CHANGES),
    scope="funds:read",
    records="grants",
    visible=store.grant_visible_to,
)

FUND_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such fund, or not visible to you"}
}
GRANT_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such grant, or not visible to you"},
    409: {"description": "The grant's state (or the fund's balance) does not allow it"},
}


def context(request: Request, principal: Principal) -> Context:
    return Context(SERVICE, principal, request_id(request))


def _actor(sub: str, org: str) -> dict[str, str]:
    return {"sub": sub, "org": org}


def fund_path(fund_id: Any) -> str:
    return f"/v1/funds/funds/{fund_id}"


# ---------------------------------------------------------------- documents


def fund_out(fund: Mapping[Any, Any]) -> dict[str, Any]:
    """The public form of a fund."""
    return {
        "id": str(fund["id"]),
        "commune_code": fund["commune_code"],
        "fiscal_year": fund["fiscal_year"],
        "name": fund["name"],
        "budget_khr": fund["budget_khr"],
        "max_grant_khr": fund["max_grant_khr"],
        "approval_threshold_khr": fund["approval_threshold_khr"],
        "topped_up_khr": fund["topped_up_khr"],
        "committed_khr": fund["committed_khr"],
        "disbursed_khr": fund["disbursed_khr"],
        "available_khr": fund["available_khr"],
        "created_by": _actor(fund["created_by"], fund["created_org"]),
        "created_at": fund["created_at"].isoformat(),
        "updated_at": fund["updated_at"].isoformat(),
        "version": fund["version"],
    }


def ledger_out(entry: Mapping[Any, Any]) -> dict[str, Any]:
    return {
        "id": entry["id"],
        "kind": entry["kind"],
        "amount_khr": entry["amount_khr"],
        "grant_id": str(entry["grant_id"]) if entry["grant_id"] else None,
        "method": entry["method"],
        "reference": entry["reference"],
        "at": entry["at"].isoformat(),
        "by": _actor(entry["actor_sub"], entry["actor_org"]),
    }


def grant_out(grant: Mapping[Any, Any], actions: Sequence[Mapping[Any, Any]]) -> dict[str, Any]:
    """The public form of a grant, with its approvals and history."""
    paid = grant["disbursed_at"] is not None
    return {
        "id": str(grant["id"]),
        "fund_id": str(grant["fund_id"]),
        "child_id": str(grant["child_id"]),
        "commune_code": grant["commune_code"],
        "category": grant["category"],
        "shock": grant["shock"],
        "items": grant["items"],
        "amount_khr": grant["amount_khr"],
        "justification": grant["justification"],
        "status": grant["status"],
        "repeat_within_30_days": grant["repeat_within_30_days"],
        "requested_by": _actor(grant["requested_by"], grant["requested_org"]),
        "approvals_required": grant["approvals_required"],
        "approvals": [
            {
                "by": _actor(a["actor_sub"], a["actor_org"]),
                "district_level": a["district_level"],
                "at": a["at"].isoformat(),
            }
            for a in actions
            if a["action"] == "approved"
        ],
        "disbursement": {
            "method": grant["disbursement_method"],
            "reference": grant["disbursement_reference"],
            "at": grant["disbursed_at"].isoformat(),
        }
        if paid
        else None,
        "history": [
            {
                "action": a["action"],
                "by": _actor(a["actor_sub"], a["actor_org"]),
                "at": a["at"].isoformat(),
                "reason": a["reason"],
                "request_id": a["request_id"],
            }
            for a in actions
        ],
        "created_at": grant["created_at"].isoformat(),
        "updated_at": grant["updated_at"].isoformat(),
        "version": grant["version"],
    }


def grant_response(granted: service.Granted, status: int = 200) -> Response:
    """A grant's answer: the grant with its actions, its ETag (and Location when new)."""
    grant = granted.grant
    location = f"/v1/funds/grants/{grant['id']}" if status == 201 else None
    return json_response(
        grant_out(grant, granted.actions), status, version=grant["version"], location=location
    )


def reconciliation_out(r: domain.Reconciliation, budget_khr: int) -> dict[str, Any]:
    return {
        "fund_id": r.fund_id,
        "budget_khr": budget_khr,
        "fund": r.fund_totals.__dict__,
        "ledger": r.ledger_totals.__dict__,
        "ledger_by_kind": r.ledger_by_kind,
        "grants_by_status": r.grants_by_status,
        "grants_by_category": r.grants_by_category,
        "problems": r.problems,
        "balanced": r.balanced,
    }


# ---------------------------------------------------------------- funds


@router.post("/funds", status_code=201, response_model=FundOut)
async def create_fund(
    body: FundIn, request: Request, principal: PrincipalDep, rt: RuntimeDep
) -> Response:
    """Open a fund for a commune, district or province inside your areas."""
    principal.require("funds:manage")
    ctx = context(request, principal)
    return await write_record(
        rt,
        request,
        principal,
        lambda conn: service.create_fund(conn, body, ctx),
        fund_out,
        created=fund_path,
    )


@router.get("/funds", response_model=FundPage)
async def list_funds(
    principal: PrincipalDep,
    rt: RuntimeDep,
    page: PageDep,
    commune_code: Annotated[str | None, Query(pattern=FUND_PLACE_PATTERN)] = None,
    fiscal_year: Annotated[int | None, Query(ge=2000, le=2100)] = None,
) -> Response:
    """Funds whose area overlaps yours, oldest change first."""
    principal.require("funds:read")
    flt = store.FundFilter(commune_code=commune_code, fiscal_year=fiscal_year)
    return await list_page(
        rt, page, lambda conn, page: store.list_funds(conn, principal, flt, page), fund_out
    )


@router.get("/funds/{fund_id}", response_model=FundOut, responses=FUND_RESPONSES)
async def read_fund(
    fund_id: str, request: Request, principal: PrincipalDep, rt: RuntimeDep
) -> Response:
    """One fund and its balances."""
    principal.require("funds:read")
    fid = parse_id(fund_id, "fund")
    ctx = context(request, principal)
    return await read_record(rt, lambda conn: service.read_fund(conn, fid, ctx), fund_out)


@router.post("/funds/{fund_id}/top-ups", response_model=FundOut, responses=FUND_RESPONSES)
async def top_up(
    fund_id: str, body: TopUpIn, request: Request, principal: PrincipalDep, rt: RuntimeDep
) -> Response:
    """Add money to a fund; answers the fund with its new balances."""
    principal.require("funds:manage")
    fid = parse_id(fund_id, "fund")
    ctx = context(request, principal)
    if_match = request.headers.get("if-match")
    return await write_record(
        rt,
        request,
        principal,
        lambda conn: service.top_up(conn, fid, body, if_match, ctx),
        fund_out,
    )


@router.get("/funds/{fund_id}/ledger", response_model=LedgerPage, responses=FUND_RESPONSES)
async def fund_ledger(
    fund_id: str, request: Request, principal: PrincipalDep, rt: RuntimeDep, page: PageDep
) -> Response:
    """A fund's append-only ledger, in booking order."""
    principal.require("funds:read")
    ctx = context(request, principal)
    async with rt.db.transaction() as conn:
        fund = await service.read_fund_books(conn, parse_id(fund_id, "fund"), ctx)
        rows = await store.list_ledger(conn, fund["id"], seq_cursor(page))
    items, cursor = page_answer(rows, page, lambda r: (r["id"],))
    return JSONResponse({"items": [ledger_out(r) for r in items], "next_cursor": cursor})


@router.get("/reconciliation", response_model=ReconciliationOut, responses=FUND_RESPONSES)
async def reconciliation(
    request: Request,
    principal: PrincipalDep,
    rt: RuntimeDep,
    fund_id: Annotated[str, Query(description="The fund to reconcile.")],
) -> Response:
    """A fund's totals by grant status and category and its ledger sums by kind, and
    whether they agree with the fund's balances (`balanced`)."""
    principal.require("funds:read")
    ctx = context(request, principal)
    async with rt.db.transaction() as conn:
        await store.read_snapshot(conn)
        fund = await service.read_fund_books(conn, parse_id(fund_id, "fund"), ctx)
        result = await store.reconcile(conn, fund)
    return JSONResponse(reconciliation_out(result, fund["budget_khr"]))


# ---------------------------------------------------------------- grants


@router.post("/grants", status_code=201, response_model=GrantOut)
async def request_grant(
    body: GrantIn, request: Request, principal: PrincipalDep, rt: RuntimeDep
) -> Response:
    """Request a grant for a child from a fund covering the child's place."""
    principal.require("funds:request")
    ctx = context(request, principal)

    async def work(conn: AsyncConnection) -> Response:
        return grant_response(await service.request_grant(conn, body, ctx), 201)

    return await rt.write(request, principal, work)


@router.get("/grants", response_model=GrantPage)
async def list_grants(
    principal: PrincipalDep,
    rt: RuntimeDep,
    page: PageDep,
    fund_id: uuid.UUID | None = None,
    child_id: uuid.UUID | None = None,
    status: GrantStatus | None = None,
    category: Category | None = None,
) -> Response:
    """Grants for children you may see, oldest change first."""
    principal.require("funds:read")
    page = time_cursor(page)
    flt = store.GrantFilter(
        fund_id=fund_id,
        child_id=child_id,
        status=status.value if status else None,
        category=category.value if category else None,
    )
    async with rt.db.transaction() as conn:
        rows = await store.list_grants(conn, principal, flt, page)
        items, cursor = page_answer(rows, page, updated_key)
        actions = await store.actions_of(conn, [r["id"] for r in items])
    return JSONResponse(
        {"items": [grant_out(r, actions[r["id"]]) for r in items], "next_cursor": cursor}
    )


@router.get("/grants/{grant_id}", response_model=GrantOut, responses=GRANT_RESPONSES)
async def read_grant(
    grant_id: str, request: Request, principal: PrincipalDep, rt: RuntimeDep
) -> Response:
    """One grant, with its approvals and history."""
    principal.require("funds:read")
    ctx = context(request, principal)
    async with rt.db.transaction() as conn:
        grant = await service.read_grant(conn, parse_id(grant_id, "grant"), ctx)
        return grant_response(await service.with_actions(conn, grant))


GrantAction = Callable[[AsyncConnection, uuid.UUID, Context], Awaitable[service.Granted]]


async def _act(
    grant_id: str, request: Request, principal: Principal, rt: ServiceRuntime, action: GrantAction
) -> Response:
    """`routes.write_record` for a grant action: a grant's answer also shows its approvals
    and history (`grant_response`)."""
    gid = parse_id(grant_id, "grant")
    ctx = context(request, principal)

    async def work(conn: AsyncConnection) -> Response:
        return grant_response(await action(conn, gid, ctx))

    return await rt.write(request, principal, work)


@router.post("/grants/{grant_id}/approve", response_model=GrantOut, responses=GRANT_RESPONSES)
async def approve_grant(
    grant_id: str,
    request: Request,
    principal: PrincipalDep,
    rt: RuntimeDep,
    body: ApproveIn | None = None,
) -> Response:
    """Approve a grant you did not request. Above the fund's threshold a second approval,
    from district level or higher, completes it; the complete approval commits the money."""
    principal.require("funds:approve")
    if_match = request.headers.get("if-match")
    return await _act(
        grant_id,
        request,
        principal,
        rt,
        lambda conn, gid, ctx: service.approve(conn, gid, if_match, ctx),
    )


@router.post("/grants/{grant_id}/reject", response_model=GrantOut, responses=GRANT_RESPONSES)
async def reject_grant(
    grant_id: str, body: RejectIn, request: Request, principal: PrincipalDep, rt: RuntimeDep
) -> Response:
    """Refuse a requested grant, with a reason."""
    principal.require("funds:approve")
    if_match = request.headers.get("if-match")
    return await _act(
        grant_id,
        request,
        principal,
        rt,
        lambda conn, gid, ctx: service.reject(conn, gid, body.reason, if_match, ctx),
    )


@router.post("/grants/{grant_id}/disburse", response_model=GrantOut, responses=GRANT_RESPONSES)
async def disburse_grant(
    grant_id: str, body: DisburseIn, request: Request, principal: PrincipalDep, rt: RuntimeDep
) -> Response:
    """Pay an approved grant, exactly once."""
    principal.require("funds:disburse")
    if_match = request.headers.get("if-match")
    return await _act(
        grant_id,
        request,
        principal,
        rt,
        lambda conn, gid, ctx: service.disburse(conn, gid, body, if_match, ctx),
    )


@router.post("/grants/{grant_id}/cancel", response_model=GrantOut, responses=GRANT_RESPONSES)
async def cancel_grant(
    grant_id: str,
    request: Request,
    principal: PrincipalDep,
    rt: RuntimeDep,
    body: CancelIn | None = None,
) -> Response:
    """Withdraw a grant before it is paid (its commitment, if any, is released)."""
    if not (principal.has("funds:request") or principal.has("funds:manage")):
        raise Forbidden("missing scope: funds:request or funds:manage")
    if_match = request.headers.get("if-match")
    reason = body.reason if body else None
    return await _act(
        grant_id,
        request,
        principal,
        rt,
        lambda conn, gid, ctx: service.cancel(conn, gid, reason, if_match, ctx),
    )


@router.post("/grants/{grant_id}/reverse", response_model=GrantOut, responses=GRANT_RESPONSES)
async def reverse_grant(
    grant_id: str, body: ReverseIn, request: Request, principal: PrincipalDep, rt: RuntimeDep
) -> Response:
    """Undo a disbursement; the money becomes available again."""
    principal.require("funds:manage")
    if_match = request.headers.get("if-match")
    return await _act(
        grant_id,
        request,
        principal,
        rt,
        lambda conn, gid, ctx: service.reverse(conn, gid, body.reason, if_match, ctx),
    )


# The grant workflow's steps, also LeanRoutes (libs.common.app): no earlier route matches them.
LEAN_ENDPOINTS = (
    request_grant,
    approve_grant,
    reject_grant,
    disburse_grant,
    cancel_grant,
    reverse_grant,
)
