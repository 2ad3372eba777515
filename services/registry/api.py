"""Routes of the registry: parse, authorise, call the use case, answer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from libs.common.app import request_id
from libs.common.auth import Principal, PrincipalDep
from libs.common.context import Context
from libs.common.events.registry_events import REGISTRY_EVENTS, Vulnerability
from libs.common.feeds import Feed, add_changes_route
from libs.common.http import (
    PageDep,
    json_response,
    page_answer,
    parse_id,
    require_if_match,
    seq_cursor,
    time_cursor,
    updated_key,
)
from libs.common.inputs import COMMUNE_PATTERN
from libs.common.routes import PATCH_RESPONSES, patch_record, record_response, write_record
from libs.common.runtime import RuntimeDep, runtime_of
from services.registry import SERVICE, service, store
from services.registry.models import children, common
from services.registry.runtime import RegistryRuntime
from services.registry.schemas import (
    AuditPage,
    AuditVerdictOut,
    BatchIn,
    BatchOut,
    ChildIn,
    ChildOut,
    ChildPage,
    ChildPatch,
    CloseIn,
    DuplicatesOut,
    HistoryPage,
    ReopenIn,
    RiskLevel,
    Status,
)

router = APIRouter(prefix="/v1/registry", tags=["registry"])
add_changes_route(
    router,
    Feed("registry", common.outbox, children, children.c.id, "child_id", tuple(REGISTRY_EVENTS)),
    scope="registry:read",
    records="children",
    visible=store.visible_to,
)

# The registry app's runtime, with its group commits.
RegistryRuntimeDep = Annotated[RegistryRuntime, Depends(runtime_of)]

CHILD_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such child, or not visible to you"},
}


def context(request: Request, principal: Principal) -> Context:
    return Context(SERVICE, principal, request_id(request))


def child_out(child: Mapping[Any, Any]) -> dict[str, Any]:
    """The public form of a child record."""
    return {
        "id": str(child["id"]),
        "case_number": child["case_number"],
        "given_name": child["given_name"],
        "family_name": child["family_name"],
        "sex": child["sex"],
        "birth_date": child["birth_date"].isoformat(),
        "birth_date_estimated": child["birth_date_estimated"],
        "village_code": child["village_code"],
        "commune_code": child["commune_code"],
        "caregiver": child["caregiver"],
        "household_id_poor": child["household_id_poor"],
        "id_poor_level": child["id_poor_level"],
        "vulnerabilities": list(child["vulnerabilities"]),
        "risk_level": child["risk_level"],
        "care_setting": child["care_setting"],
        "consent": child["consent"],
        "status": child["status"],
        "close_reason": child["close_reason"],
        "owner_org": child["owner_org"],
        "external_ids": child["external_ids"],
        "registered_on": child["registered_on"].isoformat(),
        "created_at": child["created_at"].isoformat(),
        "updated_at": child["updated_at"].isoformat(),
        "version": child["version"],
    }


def child_path(child_id: Any) -> str:
    return f"/v1/registry/children/{child_id}"


@router.post(
    "/children",
    status_code=201,
    response_model=ChildOut,
    responses={200: {"description": "An external id names an existing child: that child"}},
)
async def register_child(
    body: ChildIn, request: Request, principal: PrincipalDep, rt: RegistryRuntimeDep
) -> Response:
    """Register a child (or find the one its external id names)."""
    principal.require("registry:write")
    ctx = context(request, principal)

    def answer(result: service.Registered) -> Response:
        doc = child_out(result.child)
        status = 201 if result.created else 200
        if result.created:
            doc["possible_duplicates"] = result.duplicates
        return json_response(
            doc, status, version=result.child["version"], location=child_path(doc["id"])
        )

    if not body.external_ids and request.headers.get("idempotency-key") is None:
        # Nothing to look up first and no answer to store with it: one statement, written
        # together with concurrent registrations.
        result = await service.register_grouped(rt.registrations, body, ctx)
        rt.relay.notify()
        return answer(result)

    async def work(conn: Any) -> Response:
        return answer(await service.register(conn, body, ctx))

    return await rt.write(request, principal, work)


@router.post("/children:batch", response_model=BatchOut)
async def register_batch(
    body: BatchIn, request: Request, principal: PrincipalDep, rt: RuntimeDep
) -> Response:
    """Register up to 1,000 children; one result per item, in the same order."""
    principal.require("registry:write")
    ctx = context(request, principal)

    async def work(conn: Any) -> Response:
        results = await service.register_batch(conn, body.items, ctx)
        return JSONResponse({"results": results})

    return await rt.write(request, principal, work)


@router.get("/children", response_model=ChildPage)
async def list_children(
    request: Request,
    principal: PrincipalDep,
    rt: RuntimeDep,
    page: PageDep,
    commune_code: Annotated[str | None, Query(pattern=COMMUNE_PATTERN)] = None,
    status: Status | None = None,
    risk_level: RiskLevel | None = None,
    vulnerability: Vulnerability | None = None,
    q: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
) -> Response:
    """Children you may see, oldest change first; filter and sync with updated_since."""
    principal.require("registry:read")
    page = time_cursor(page)
    flt = store.ChildFilter(
        commune_code=commune_code,
        status=status.value if status else None,
        risk_level=risk_level.value if risk_level else None,
        vulnerability=vulnerability.value if vulnerability else None,
        q=q,
    )
    async with rt.db.transaction() as conn:
        rows = await store.list_children(conn, principal, flt, page)
        items, cursor = page_answer(rows, page, updated_key)
        await store.add_audit(
            conn, principal, "list", [r["id"] for r in items], request_id(request)
        )
    return JSONResponse({"items": [child_out(r) for r in items], "next_cursor": cursor})


@router.get("/children/{child_id}", response_model=ChildOut, responses=CHILD_RESPONSES)
async def read_child(
    child_id: str, request: Request, principal: PrincipalDep, rt: RegistryRuntimeDep
) -> Response:
    """One child."""
    principal.require("registry:read")
    ctx = context(request, principal)
    # One statement reads the child and records the read, with concurrent reads.
    child = await service.read_grouped(rt.reads, parse_id(child_id, "child"), ctx)
    return record_response(child_out, child)


@router.patch(
    "/children/{child_id}",
    response_model=ChildOut,
    responses={**CHILD_RESPONSES, **PATCH_RESPONSES},
)
async def patch_child(
    child_id: str,
    request: Request,
    principal: PrincipalDep,
    rt: RuntimeDep,
    body: Annotated[ChildPatch, Body(media_type="application/merge-patch+json")],
) -> Response:
    """Change a child (JSON merge patch); send the ETag you read as If-Match."""
    principal.require("registry:write")
    cid = parse_id(child_id, "child")
    if_match = require_if_match(request)
    ctx = context(request, principal)
    return await patch_record(
        rt, lambda conn: service.patch(conn, cid, body, if_match, ctx), child_out
    )


@router.post("/children/{child_id}/close", response_model=ChildOut, responses=CHILD_RESPONSES)
async def close_child(
    child_id: str, body: CloseIn, request: Request, principal: PrincipalDep, rt: RuntimeDep
) -> Response:
    """Close a case with a reason."""
    principal.require("registry:write")
    cid = parse_id(child_id, "child")
    ctx = context(request, principal)
    if_match = request.headers.get("if-match")
    return await write_record(
        rt,
        request,
        principal,
        lambda conn: service.close(conn, cid, body.reason, if_match, ctx),
        child_out,
    )


@router.post("/children/{child_id}/reopen", response_model=ChildOut, responses=CHILD_RESPONSES)
async def reopen_child(
    child_id: str,
    request: Request,
    principal: PrincipalDep,
    rt: RuntimeDep,
    body: ReopenIn | None = None,
) -> Response:
    """Reopen a closed case."""
    principal.require("registry:write")
    cid = parse_id(child_id, "child")
    ctx = context(request, principal)
    if_match = request.headers.get("if-match")
    return await write_record(
        rt, request, principal, lambda conn: service.reopen(conn, cid, if_match, ctx), child_out
    )


@router.get(
    "/children/{child_id}/duplicates", response_model=DuplicatesOut, responses=CHILD_RESPONSES
)
async def child_duplicates(
    child_id: str, request: Request, principal: PrincipalDep, rt: RuntimeDep
) -> Response:
    """Likely duplicates of a child, scored, best first."""
    principal.require("registry:read")
    ctx = context(request, principal)
    async with rt.db.transaction() as conn:
        child = await service.read_audited(conn, parse_id(child_id, "child"), ctx, "duplicates")
        found = await service.likely_duplicates(conn, child, principal)
    return JSONResponse({"items": found})


@router.get("/children/{child_id}/history", response_model=HistoryPage, responses=CHILD_RESPONSES)
async def child_history(
    child_id: str, request: Request, principal: PrincipalDep, rt: RuntimeDep, page: PageDep
) -> Response:
    """Every change of a child: who, when, which fields, old and new values."""
    principal.require("registry:read")
    ctx = context(request, principal)
    page = seq_cursor(page)
    async with rt.db.transaction() as conn:
        child = await service.read_audited(conn, parse_id(child_id, "child"), ctx, "history")
        rows = await store.list_history(conn, child["id"], page)
    items, cursor = page_answer(rows, page, lambda r: (r["id"],))
    return JSONResponse(
        {
            "items": [
                {
                    "version": r["version"],
                    "action": r["action"],
                    "at": r["at"].isoformat(),
                    "by": {"sub": r["actor_sub"], "org": r["actor_org"]},
                    "request_id": r["request_id"],
                    "changes": r["changes"],
                }
                for r in items
            ],
            "next_cursor": cursor,
        }
    )


@router.get("/audit", response_model=AuditPage)
async def audit_entries(
    request: Request,
    principal: PrincipalDep,
    rt: RuntimeDep,
    page: PageDep,
    child_id: Annotated[str, Query()],
) -> Response:
    """Every read and write of one child (admin)."""
    principal.require("admin")
    ctx = context(request, principal)
    page = seq_cursor(page)
    async with rt.db.transaction() as conn:
        child = await service.read(conn, parse_id(child_id, "child"), ctx)
        rows = await store.list_audit(conn, child["id"], page)
    items, cursor = page_answer(rows, page, lambda r: (r["seq"],))
    return JSONResponse(
        {
            "items": [
                {
                    "seq": r["seq"],
                    "at": r["at"].isoformat(),
                    "principal": {"sub": r["actor_sub"], "org": r["actor_org"]},
                    "action": r["action"],
                    "child_id": str(r["child_id"]),
                    "request_id": r["request_id"],
                    "chain_seq": r["chain_seq"],
                    "hash": r["hash"].hex() if r["hash"] else None,
                }
                for r in items
            ],
            "next_cursor": cursor,
        }
    )


@router.get("/audit/verify", response_model=AuditVerdictOut)
async def verify_audit(principal: PrincipalDep, rt: RuntimeDep) -> Response:
    """Recompute the whole audit chain; name the first entry that does not hold (admin)."""
    principal.require("admin")
    async with rt.db.transaction() as conn:
        await store.seal_audit(conn)
    async with rt.db.transaction() as conn:
        verdict = await store.verify_audit(conn)
    return JSONResponse(verdict.__dict__, status_code=200)


# The two calls a partner sync makes most, also served ahead of FastAPI's routing
# (libs.common.app.LeanRoute).
LEAN_ENDPOINTS = (register_child, read_child)
