"""Routes of the referrals service: parse, authorise, call the use case, answer."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import Response
from sqlalchemy.engine import RowMapping

from libs.common import places
from libs.common.app import request_id
from libs.common.auth import Principal, PrincipalDep
from libs.common.context import Context
from libs.common.errors import invalid
from libs.common.events.referrals_events import REFERRALS_EVENTS, ReferralV1, ServiceType
from libs.common.feeds import Feed, add_changes_route
from libs.common.http import PageDep, json_response, parse_id, require_if_match
from libs.common.inputs import CommuneCode
from libs.common.routes import PATCH_RESPONSES, list_page, patch_record, read_record, write_record
from libs.common.runtime import RuntimeDep
from services.referrals import SERVICE, service, store
from services.referrals.domain import NoProvider
from services.referrals.models import outbox, referrals
from services.referrals.schemas import (
    AcceptIn,
    CancelIn,
    CompleteIn,
    DeactivateIn,
    DeclinedOut,
    DeclineIn,
    ProviderIn,
    ProviderOut,
    ProviderPage,
    ProviderPatch,
    ReferralIn,
    ReferralOut,
    ReferralPage,
    Status,
)

router = APIRouter(prefix="/v1/referrals", tags=["referrals"])
# The changes of referral records (an unmatched need is about no referral: not in the feed).
REFERRAL_CHANGES = tuple(t for t, data in REFERRALS_EVENTS.items() if data is ReferralV1)
add_changes_route(
    router,
    Feed("referrals", outbox, referrals, referrals.c.id, "referral_id", REFERRAL_CHANGES),
    scope="referrals:read",
    records="referrals",
    visible=store.referral_visible_to,
)

PROVIDER_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such provider, or none of its areas is in yours"},
}
REFERRAL_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such referral, or not visible to you"},
    403: {"description": "Visible, but not yours to act on"},
    409: {"description": "Not allowed in the referral's current state"},
    412: {"description": "Stale If-Match"},
}


def context(request: Request, principal: Principal) -> Context:
    return Context(SERVICE, principal, request_id(request))


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def provider_out(p: RowMapping) -> dict[str, Any]:
    """The public form of a provider."""
    return {
        "id": str(p["id"]),
        "name": p["name"],
        "org": p["org"],
        "service_types": list(p["service_types"]),
        "areas": list(p["areas"]),
        "contact": p["contact"],
        "capacity": p["capacity"],
        "open_referrals": p["open_referrals"],
        "active": p["active"],
        "created_at": p["created_at"].isoformat(),
        "updated_at": p["updated_at"].isoformat(),
        "version": p["version"],
    }


def referral_out(r: RowMapping) -> dict[str, Any]:
    """The public form of a referral."""
    override = None
    if r["consent_override"]:
        override = {
            "justification": r["override_justification"],
            "by": {"sub": r["override_by_sub"], "org": r["override_by_org"]},
        }
    acted = None
    if r["acted_by_sub"] is not None:
        acted = {"sub": r["acted_by_sub"], "org": r["acted_by_org"]}
    outcome = None
    if r["outcome_code"] is not None:
        outcome = {"code": r["outcome_code"], "note": r["outcome_note"]}
    previous = r["previous_referral_id"]
    return {
        "id": str(r["id"]),
        "child_id": str(r["child_id"]),
        "service_type": r["service_type"],
        "urgency": r["urgency"],
        "reason": r["reason"],
        "provider_id": str(r["provider_id"]),
        "provider_org": r["provider_org"],
        "status": r["status"],
        "due_at": r["due_at"].isoformat(),
        "overdue": r["overdue"],
        "commune_code": r["commune_code"],
        "village_code": r["village_code"],
        "referred_by": {"sub": r["referrer_sub"], "org": r["referrer_org"]},
        "consent_override": override,
        "previous_referral_id": str(previous) if previous else None,
        "decline_reason": r["decline_reason"],
        "cancel_reason": r["cancel_reason"],
        "outcome": outcome,
        "accepted_at": _iso(r["accepted_at"]),
        "closed_at": _iso(r["closed_at"]),
        "last_action_by": acted,
        "created_at": r["created_at"].isoformat(),
        "updated_at": r["updated_at"].isoformat(),
        "version": r["version"],
    }


def provider_path(provider_id: Any) -> str:
    return f"/v1/referrals/providers/{provider_id}"


def referral_path(referral_id: Any) -> str:
    return f"/v1/referrals/{referral_id}"


# ---------------------------------------------------------------- providers


@router.post("/providers", status_code=201, response_model=ProviderOut)
async def create_provider(
    body: ProviderIn, request: Request, principal: PrincipalDep, rt: RuntimeDep
) -> Response:
    """Put a service provider on the map (its areas must lie inside yours)."""
    principal.require("referrals:write")
    ctx = context(request, principal)
    return await write_record(
        rt,
        request,
        principal,
        lambda conn: service.create_provider(conn, body, ctx),
        provider_out,
        created=provider_path,
    )


@router.get("/providers", response_model=ProviderPage)
async def list_providers(
    principal: PrincipalDep,
    rt: RuntimeDep,
    page: PageDep,
    service_type: ServiceType | None = None,
    commune_code: Annotated[CommuneCode | None, Query()] = None,
    active: bool | None = None,
) -> Response:
    """The services map where you work, oldest change first; sync with updated_since."""
    principal.require("referrals:read")
    if commune_code is not None and not places.exists(commune_code):
        raise invalid("commune_code", "not in the gazetteer")
    flt = store.ProviderFilter(
        service_type=service_type.value if service_type else None,
        commune_code=commune_code,
        active=active,
    )
    return await list_page(
        rt, page, lambda conn, page: store.list_providers(conn, principal, flt, page), provider_out
    )


@router.get("/providers/{provider_id}", response_model=ProviderOut, responses=PROVIDER_RESPONSES)
async def read_provider(provider_id: str, principal: PrincipalDep, rt: RuntimeDep) -> Response:
    """One provider."""
    principal.require("referrals:read")
    pid = parse_id(provider_id, "provider")
    return await read_record(
        rt, lambda conn: service.read_provider(conn, pid, principal), provider_out
    )


@router.patch(
    "/providers/{provider_id}",
    response_model=ProviderOut,
    responses={
        **PROVIDER_RESPONSES,
        409: {"description": "Capacity below the open referrals"},
        **PATCH_RESPONSES,
    },
)
async def patch_provider(
    provider_id: str,
    request: Request,
    principal: PrincipalDep,
    rt: RuntimeDep,
    body: Annotated[ProviderPatch, Body(media_type="application/merge-patch+json")],
) -> Response:
    """Change a provider (JSON merge patch); send the ETag you read as If-Match."""
    principal.require("referrals:write")
    pid = parse_id(provider_id, "provider")
    if_match = require_if_match(request)
    ctx = context(request, principal)
    return await patch_record(
        rt, lambda conn: service.patch_provider(conn, pid, body, if_match, ctx), provider_out
    )


@router.post(
    "/providers/{provider_id}/deactivate",
    response_model=ProviderOut,
    responses=PROVIDER_RESPONSES,
)
async def deactivate_provider(
    provider_id: str,
    request: Request,
    principal: PrincipalDep,
    rt: RuntimeDep,
    body: DeactivateIn | None = None,
) -> Response:
    """Stop routing referrals to a provider (the same as PATCH active: false)."""
    principal.require("referrals:write")
    pid = parse_id(provider_id, "provider")
    ctx = context(request, principal)
    if_match = request.headers.get("if-match")
    return await write_record(
        rt,
        request,
        principal,
        lambda conn: service.deactivate_provider(conn, pid, if_match, ctx),
        provider_out,
    )


# ---------------------------------------------------------------- referrals


@router.post(
    "",
    status_code=201,
    response_model=ReferralOut,
    responses={
        404: {"description": "No such child visible to you (or not synced yet)"},
        409: {"description": "The child's case is closed"},
        422: {"description": "No provider for the service at the child's place, or bad input"},
    },
)
async def create_referral(
    body: ReferralIn, request: Request, principal: PrincipalDep, rt: RuntimeDep
) -> Response:
    """Refer a child for a service; routed to the most local, least loaded provider."""
    principal.require("referrals:write")
    ctx = context(request, principal)
    try:
        return await write_record(
            rt,
            request,
            principal,
            lambda conn: service.create_referral(conn, body, ctx),
            referral_out,
            created=referral_path,
        )
    except NoProvider as gap:
        # The request's work is rolled back; the unmet need is counted in its own transaction.
        async with rt.db.transaction() as conn:
            await service.record_unmatched(conn, gap.need, ctx)
        rt.relay.notify()
        raise


@router.get("", response_model=ReferralPage)
async def list_referrals(
    principal: PrincipalDep,
    rt: RuntimeDep,
    page: PageDep,
    child_id: uuid.UUID | None = None,
    provider_id: uuid.UUID | None = None,
    status: Status | None = None,
    overdue: bool | None = None,
    service_type: ServiceType | None = None,
) -> Response:
    """Referrals you may see, oldest change first; `overdue=true` lists those to escalate."""
    principal.require("referrals:read")
    flt = store.ReferralFilter(
        child_id=child_id,
        provider_id=provider_id,
        status=status.value if status else None,
        overdue=overdue,
        service_type=service_type.value if service_type else None,
    )
    return await list_page(
        rt, page, lambda conn, page: store.list_referrals(conn, principal, flt, page), referral_out
    )


@router.get("/{referral_id}", response_model=ReferralOut, responses=REFERRAL_RESPONSES)
async def read_referral(referral_id: str, principal: PrincipalDep, rt: RuntimeDep) -> Response:
    """One referral."""
    principal.require("referrals:read")
    rid = parse_id(referral_id, "referral")
    return await read_record(
        rt, lambda conn: service.read_referral(conn, rid, principal), referral_out
    )


@router.post("/{referral_id}/accept", response_model=ReferralOut, responses=REFERRAL_RESPONSES)
async def accept_referral(
    referral_id: str,
    request: Request,
    principal: PrincipalDep,
    rt: RuntimeDep,
    body: AcceptIn | None = None,
) -> Response:
    """The provider takes the child on (pending → accepted)."""
    principal.require("referrals:respond")
    rid = parse_id(referral_id, "referral")
    ctx = context(request, principal)
    if_match = request.headers.get("if-match")
    return await write_record(
        rt, request, principal, lambda conn: service.accept(conn, rid, if_match, ctx), referral_out
    )


@router.post("/{referral_id}/decline", response_model=DeclinedOut, responses=REFERRAL_RESPONSES)
async def decline_referral(
    referral_id: str, body: DeclineIn, request: Request, principal: PrincipalDep, rt: RuntimeDep
) -> Response:
    """The provider declines (pending → declined); re-routed to the next provider if any."""
    principal.require("referrals:respond")
    rid = parse_id(referral_id, "referral")
    ctx = context(request, principal)

    async def work(conn: Any) -> Response:
        result = await service.decline(conn, rid, body.reason, request.headers.get("if-match"), ctx)
        doc = referral_out(result.referral)
        doc["rerouted_to"] = str(result.rerouted_to["id"]) if result.rerouted_to else None
        return json_response(doc, version=result.referral["version"])

    return await rt.write(request, principal, work)


@router.post("/{referral_id}/complete", response_model=ReferralOut, responses=REFERRAL_RESPONSES)
async def complete_referral(
    referral_id: str, body: CompleteIn, request: Request, principal: PrincipalDep, rt: RuntimeDep
) -> Response:
    """The provider reports the outcome (accepted → completed)."""
    principal.require("referrals:respond")
    rid = parse_id(referral_id, "referral")
    ctx = context(request, principal)
    if_match = request.headers.get("if-match")
    outcome = body.outcome
    return await write_record(
        rt,
        request,
        principal,
        lambda conn: service.complete(conn, rid, outcome.code.value, outcome.note, if_match, ctx),
        referral_out,
    )


@router.post("/{referral_id}/cancel", response_model=ReferralOut, responses=REFERRAL_RESPONSES)
async def cancel_referral(
    referral_id: str, body: CancelIn, request: Request, principal: PrincipalDep, rt: RuntimeDep
) -> Response:
    """The referrer withdraws the referral (pending or accepted → cancelled)."""
    principal.require("referrals:write")
    rid = parse_id(referral_id, "referral")
    ctx = context(request, principal)
    if_match = request.headers.get("if-match")
    return await write_record(
        rt,
        request,
        principal,
        lambda conn: service.cancel(conn, rid, body.reason, if_match, ctx),
        referral_out,
    )


# The referral workflow's steps, also LeanRoutes (libs.common.app): no route declared
# before one of them matches its path (GET /{referral_id} would: /providers is earlier).
LEAN_ENDPOINTS = (
    create_referral,
    accept_referral,
    decline_referral,
    complete_referral,
    cancel_referral,
)
