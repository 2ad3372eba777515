"""Routes of the casework service: parse, authorise, call the use case, answer."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.engine import RowMapping

from libs.common.app import request_id
from libs.common.auth import Principal, PrincipalDep
from libs.common.context import Context
from libs.common.events.casework_events import CASEWORK_EVENTS, WorkerRole
from libs.common.feeds import Feed, add_changes_route
from libs.common.http import (
    PageDep,
    json_response,
    page_answer,
    parse_id,
    require_if_match,
    seq_cursor,
)
from libs.common.inputs import PlaceCode
from libs.common.routes import PATCH_RESPONSES, list_page, patch_record, read_record, write_record
from libs.common.runtime import RuntimeDep
from services.casework import SERVICE, service, store
from services.casework.models import outbox, workers
from services.casework.schemas import (
    AssignmentIn,
    AssignmentOut,
    AssignmentPage,
    AssignmentStatus,
    CaseOut,
    DuePage,
    PlanIn,
    PlanOut,
    VisitIn,
    VisitOut,
    VisitPage,
    WorkerHistoryPage,
    WorkerIn,
    WorkerOut,
    WorkerPage,
    WorkerPatch,
    WorkerStatus,
)

router = APIRouter(prefix="/v1/casework", tags=["casework"])
# The feed of workers (the events whose data carry the record's version): each change to a
# worker the caller may see, in commit order.
WORKER_CHANGES = tuple(t for t in CASEWORK_EVENTS if t.startswith("casework.worker."))
add_changes_route(
    router,
    Feed("casework", outbox, workers, workers.c.id, "worker_id", WORKER_CHANGES),
    scope="casework:read",
    records="workers",
    visible=store.worker_visible_to,
)

WORKER_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such worker, or not visible to you"},
}
CHILD_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such child visible to you (or not synced yet)"},
    403: {"description": "Visible through a referral only: read-only"},
}
ASSIGN_RESPONSES: dict[int | str, dict[str, Any]] = {
    **CHILD_RESPONSES,
    409: {"description": "The worker cannot take the child; `rule` names why"},
}
PLAN_RESPONSES: dict[int | str, dict[str, Any]] = {
    **CHILD_RESPONSES,
    412: {"description": "Stale If-Match, or If-None-Match: * when a plan exists"},
    428: {"description": "If-Match missing when the child has a plan"},
}


def context(request: Request, principal: Principal) -> Context:
    return Context(SERVICE, principal, request_id(request))


def _iso(value: date | datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def worker_out(w: RowMapping) -> dict[str, Any]:
    """The public form of a worker."""
    return {
        "id": str(w["id"]),
        "org": w["org"],
        "org_type": w["org_type"],
        "role": w["role"],
        "given_name": w["given_name"],
        "family_name": w["family_name"],
        "sex": w["sex"],
        "phone": w["phone"],
        "areas": list(w["areas"]),
        "username": w["username"],
        "max_caseload": w["max_caseload"],
        "caseload": w["caseload"],
        "status": w["status"],
        "trainings": [
            {
                "course": t["course"],
                "completed_on": t["completed_on"],
                "provider": t.get("provider"),
            }
            for t in w["trainings"]
        ],
        "contracts": [
            {
                "org": c["org"],
                "start_on": c["start_on"],
                "end_on": c.get("end_on"),
                "monthly_fee_khr": c["monthly_fee_khr"],
            }
            for c in w["contracts"]
        ],
        "created_at": w["created_at"].isoformat(),
        "updated_at": w["updated_at"].isoformat(),
        "version": w["version"],
    }


def assignment_out(a: RowMapping) -> dict[str, Any]:
    """The public form of an assignment (with the override's justification)."""
    override = None
    if a["override"]:
        override = {"justification": a["override_justification"]}
    return {
        "id": str(a["id"]),
        "child_id": str(a["child_id"]),
        "worker_id": str(a["worker_id"]),
        "commune_code": a["commune_code"],
        "village_code": a["village_code"],
        "org": a["org"],
        "status": a["status"],
        "started_on": a["started_on"].isoformat(),
        "ended_on": _iso(a["ended_on"]),
        "override": override,
        "assigned_by": {"sub": a["assigned_by_sub"], "org": a["assigned_by_org"]},
        "created_at": a["created_at"].isoformat(),
        "updated_at": a["updated_at"].isoformat(),
        "version": a["version"],
    }


def plan_out(p: RowMapping) -> dict[str, Any]:
    """The public form of a case plan."""
    return {
        "child_id": str(p["id"]),
        "goals": list(p["goals"]),
        "updated_by": {"sub": p["updated_by_sub"], "org": p["updated_by_org"]},
        "created_at": p["created_at"].isoformat(),
        "updated_at": p["updated_at"].isoformat(),
        "version": p["version"],
    }


def visit_out(v: RowMapping) -> dict[str, Any]:
    """The public form of a visit (its notes only here, to those who may read the child)."""
    return {
        "id": str(v["id"]),
        "child_id": str(v["child_id"]),
        "worker_id": str(v["worker_id"]) if v["worker_id"] else None,
        "commune_code": v["commune_code"],
        "village_code": v["village_code"],
        "date": v["date"].isoformat(),
        "kind": v["kind"],
        "outcome": v["outcome"],
        "notes": v["notes"],
        "next_visit_on": _iso(v["next_visit_on"]),
        "followups_made": list(v["followups_made"]),
        "recorded_by": {"sub": v["recorded_by_sub"], "org": v["recorded_by_org"]},
        "created_at": v["created_at"].isoformat(),
        "updated_at": v["updated_at"].isoformat(),
        "version": v["version"],
    }


def due_out(c: RowMapping) -> dict[str, Any]:
    """A child with a visit due."""
    return {
        "child_id": str(c["id"]),
        "commune_code": c["commune_code"],
        "village_code": c["village_code"],
        "next_visit_on": _iso(c["next_visit_on"]),
        "overdue": c["overdue"],
        "overdue_due_on": _iso(c["overdue_due_on"]),
        "last_visit_on": _iso(c["last_visit_on"]),
        "updated_at": c["updated_at"].isoformat(),
    }


def case_out(case: service.Case) -> dict[str, Any]:
    """A child's casework summary."""
    c, last = case.child, case.last_visit
    return {
        "child_id": str(c["id"]),
        "commune_code": c["commune_code"],
        "village_code": c["village_code"],
        "status": c["status"],
        "care_setting": c["care_setting"],
        "assignment": assignment_out(case.assignment) if case.assignment else None,
        "plan": plan_out(case.plan) if case.plan else None,
        "last_visit": None
        if last is None
        else {
            "id": str(last["id"]),
            "date": last["date"].isoformat(),
            "kind": last["kind"],
            "outcome": last["outcome"],
        },
        "next_visit_on": _iso(c["next_visit_on"]),
        "overdue": c["overdue"],
        "overdue_due_on": _iso(c["overdue_due_on"]),
        "reintegrated_on": _iso(c["reintegrated_on"]),
        "followups": [
            {
                "month": f["month"],
                "opens_on": f["opens_on"].isoformat(),
                "due_on": f["due_on"].isoformat(),
                "made_on": _iso(f["made_on"]),
                "visit_id": str(f["visit_id"]) if f["visit_id"] else None,
            }
            for f in case.followups
        ],
        "updated_at": c["updated_at"].isoformat(),
    }


def worker_path(worker_id: Any) -> str:
    return f"/v1/casework/workers/{worker_id}"


def assignment_path(assignment_id: Any) -> str:
    return f"/v1/casework/assignments/{assignment_id}"


def visit_path(visit_id: Any) -> str:
    return f"/v1/casework/visits/{visit_id}"


# ---------------------------------------------------------------- workers


@router.post("/workers", status_code=201, response_model=WorkerOut)
async def create_worker(
    body: WorkerIn, request: Request, principal: PrincipalDep, rt: RuntimeDep
) -> Response:
    """Register a worker (its areas inside yours; a partner only its own organisation's)."""
    principal.require("casework:write")
    ctx = context(request, principal)
    return await write_record(
        rt,
        request,
        principal,
        lambda conn: service.create_worker(conn, body, ctx),
        worker_out,
        created=worker_path,
    )


@router.get("/workers", response_model=WorkerPage)
async def list_workers(
    principal: PrincipalDep,
    rt: RuntimeDep,
    page: PageDep,
    role: WorkerRole | None = None,
    status: WorkerStatus | None = None,
    area: Annotated[PlaceCode | None, Query()] = None,
) -> Response:
    """Workers serving where you work, oldest change first; `area` keeps those whose areas
    cover it or lie within it."""
    principal.require("casework:read")
    flt = store.WorkerFilter(
        role=role.value if role else None,
        status=status.value if status else None,
        area=area,
    )
    return await list_page(
        rt, page, lambda conn, page: store.list_workers(conn, principal, flt, page), worker_out
    )


@router.get("/workers/{worker_id}", response_model=WorkerOut, responses=WORKER_RESPONSES)
async def read_worker(worker_id: str, principal: PrincipalDep, rt: RuntimeDep) -> Response:
    """One worker."""
    principal.require("casework:read")
    wid = parse_id(worker_id, "worker")
    return await read_record(rt, lambda conn: service.read_worker(conn, wid, principal), worker_out)


@router.get(
    "/workers/{worker_id}/history", response_model=WorkerHistoryPage, responses=WORKER_RESPONSES
)
async def read_worker_history(
    worker_id: str, principal: PrincipalDep, rt: RuntimeDep, page: PageDep
) -> Response:
    """Every version of a worker, oldest first: which fields changed, who, when."""
    principal.require("casework:read")
    wid = parse_id(worker_id, "worker")
    page = seq_cursor(page)
    async with rt.db.transaction() as conn:
        rows = await service.worker_history(conn, wid, principal, page)
    items, cursor = page_answer(rows, page, lambda r: (r["id"],))
    return JSONResponse(
        {
            "items": [
                {
                    "version": r["version"],
                    "changed": list(r["changed"]),
                    "by": {"sub": r["actor_sub"], "org": r["actor_org"]},
                    "request_id": r["request_id"],
                    "at": r["at"].isoformat(),
                }
                for r in items
            ],
            "next_cursor": cursor,
        }
    )


@router.patch(
    "/workers/{worker_id}",
    response_model=WorkerOut,
    responses={**WORKER_RESPONSES, **PATCH_RESPONSES},
)
async def patch_worker(
    worker_id: str,
    request: Request,
    principal: PrincipalDep,
    rt: RuntimeDep,
    body: Annotated[WorkerPatch, Body(media_type="application/merge-patch+json")],
) -> Response:
    """Change a worker (JSON merge patch); send the ETag you read as If-Match."""
    principal.require("casework:write")
    wid = parse_id(worker_id, "worker")
    if_match = require_if_match(request)
    ctx = context(request, principal)
    return await patch_record(
        rt, lambda conn: service.patch_worker(conn, wid, body, if_match, ctx), worker_out
    )


# ---------------------------------------------------------------- assignments


@router.post(
    "/assignments", status_code=201, response_model=AssignmentOut, responses=ASSIGN_RESPONSES
)
async def create_assignment(
    body: AssignmentIn, request: Request, principal: PrincipalDep, rt: RuntimeDep
) -> Response:
    """Give a child a worker (the child's current assignment ends). 409 names the rule the
    worker breaks: worker_inactive, no_current_contract, no_basic_training,
    outside_worker_areas, max_caseload (a government principal may override it with
    `override_justification`), child_closed, already_assigned."""
    principal.require("casework:write")
    ctx = context(request, principal)
    return await write_record(
        rt,
        request,
        principal,
        lambda conn: service.assign(conn, body, ctx),
        assignment_out,
        created=assignment_path,
    )


@router.get("/assignments", response_model=AssignmentPage)
async def list_assignments(
    principal: PrincipalDep,
    rt: RuntimeDep,
    page: PageDep,
    worker_id: uuid.UUID | None = None,
    child_id: uuid.UUID | None = None,
    status: AssignmentStatus | None = None,
) -> Response:
    """Assignments of children you may see, oldest change first."""
    principal.require("casework:read")
    flt = store.AssignmentFilter(
        worker_id=worker_id, child_id=child_id, status=status.value if status else None
    )
    return await list_page(
        rt,
        page,
        lambda conn, page: store.list_assignments(conn, principal, flt, page),
        assignment_out,
    )


@router.get(
    "/assignments/{assignment_id}",
    response_model=AssignmentOut,
    responses={404: {"description": "No such assignment, or not visible to you"}},
)
async def read_assignment(assignment_id: str, principal: PrincipalDep, rt: RuntimeDep) -> Response:
    """One assignment (with the override's justification, if any)."""
    principal.require("casework:read")
    aid = parse_id(assignment_id, "assignment")
    return await read_record(
        rt, lambda conn: service.read_assignment(conn, aid, principal), assignment_out
    )


# ---------------------------------------------------------------- children and plans


@router.get("/children/{child_id}", response_model=CaseOut, responses=CHILD_RESPONSES)
async def read_case(child_id: str, principal: PrincipalDep, rt: RuntimeDep) -> Response:
    """A child's casework: worker, plan, last visit, next visit, overdue, follow-ups."""
    principal.require("casework:read")
    cid = parse_id(child_id, "child")
    async with rt.db.transaction() as conn:
        case = await service.read_case(conn, cid, principal)
    return json_response(case_out(case))


@router.put(
    "/children/{child_id}/plan",
    response_model=PlanOut,
    responses={201: {"description": "The child's first plan", "model": PlanOut}, **PLAN_RESPONSES},
)
async def put_plan(
    child_id: str,
    body: PlanIn,
    request: Request,
    principal: PrincipalDep,
    rt: RuntimeDep,
    if_match: Annotated[str | None, Header(max_length=200)] = None,
    if_none_match: Annotated[str | None, Header(max_length=200)] = None,
) -> Response:
    """Write a child's whole case plan: the first with no If-Match (or If-None-Match: *),
    then with the ETag you read as If-Match."""
    principal.require("casework:write")
    cid = parse_id(child_id, "child")
    ctx = context(request, principal)
    async with rt.db.transaction() as conn:
        written = await service.put_plan(conn, cid, body, if_match, if_none_match, ctx)
    rt.relay.notify()
    plan = written.plan
    if written.created:
        location = f"/v1/casework/children/{cid}/plan"
        return json_response(plan_out(plan), 201, version=plan["version"], location=location)
    return json_response(plan_out(plan), version=plan["version"])


@router.get("/children/{child_id}/plan", response_model=PlanOut, responses=CHILD_RESPONSES)
async def read_plan(child_id: str, principal: PrincipalDep, rt: RuntimeDep) -> Response:
    """A child's case plan, with its ETag."""
    principal.require("casework:read")
    cid = parse_id(child_id, "child")
    return await read_record(rt, lambda conn: service.read_plan(conn, cid, principal), plan_out)


# ---------------------------------------------------------------- visits


@router.post("/visits", status_code=201, response_model=VisitOut, responses=CHILD_RESPONSES)
async def record_visit(
    body: VisitIn, request: Request, principal: PrincipalDep, rt: RuntimeDep
) -> Response:
    """Record a visit (not in the future; next_visit_on after it). Its notes stay in this
    service: never in an event or a log."""
    principal.require("casework:write")
    ctx = context(request, principal)
    return await write_record(
        rt,
        request,
        principal,
        lambda conn: service.record_visit(conn, body, ctx),
        visit_out,
        created=visit_path,
    )


@router.get("/visits", response_model=VisitPage)
async def list_visits(
    principal: PrincipalDep, rt: RuntimeDep, page: PageDep, child_id: uuid.UUID | None = None
) -> Response:
    """Visits to children you may see, oldest change first."""
    principal.require("casework:read")
    return await list_page(
        rt, page, lambda conn, page: store.list_visits(conn, principal, child_id, page), visit_out
    )


@router.get("/visits/due", response_model=DuePage)
async def list_due(
    principal: PrincipalDep, rt: RuntimeDep, page: PageDep, overdue: bool | None = None
) -> Response:
    """Children you may see with a next visit set; `overdue=true` those whose next visit
    passed without a visit, `overdue=false` those not yet due."""
    principal.require("casework:read")
    return await list_page(
        rt, page, lambda conn, page: store.list_due(conn, principal, overdue, page), due_out
    )


@router.get(
    "/visits/{visit_id}",
    response_model=VisitOut,
    responses={404: {"description": "No such visit, or not visible to you"}},
)
async def read_visit(visit_id: str, principal: PrincipalDep, rt: RuntimeDep) -> Response:
    """One visit."""
    principal.require("casework:read")
    vid = parse_id(visit_id, "visit")
    return await read_record(rt, lambda conn: service.read_visit(conn, vid, principal), visit_out)


# A visit, casework's most frequent write, is also a LeanRoute (libs.common.app): no route
# declared before it matches POST /visits.
LEAN_ENDPOINTS = (record_visit,)
