"""The casework use cases: each runs in the caller's transaction and returns what to answer."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common import access, clock
from libs.common.auth import Principal
from libs.common.context import Context
from libs.common.errors import (
    Conflict,
    NotFound,
    PreconditionFailed,
    PreconditionRequired,
    found,
    invalid,
)
from libs.common.events import new_event
from libs.common.events.outbox import write_events
from libs.common.http import Page, check_if_match
from libs.common.logging import get_logger
from services.casework import SERVICE, domain, store
from services.casework.models import outbox
from services.casework.schemas import AssignmentIn, PlanIn, VisitIn, WorkerIn, WorkerPatch

log = get_logger(__name__)

CHILD_NOT_FOUND = (
    "no such child visible to you (a child registered moments ago may not have "
    "reached the casework service yet: try again shortly)"
)


# ---------------------------------------------------------------- children


async def _child(
    conn: AsyncConnection, child_id: uuid.UUID, principal: Principal, *, lock: bool = False
) -> store.Row:
    """A child the principal may read (404 otherwise)."""
    child = await store.get_child(conn, child_id, principal, lock=lock)
    if child is None:
        raise NotFound(CHILD_NOT_FOUND)
    return child


async def _child_to_change(
    conn: AsyncConnection, child_id: uuid.UUID, principal: Principal
) -> store.Row:
    """A child the principal may change, locked: 404 when it may not read it, 403 when it
    reads it only through a referral."""
    child = await _child(conn, child_id, principal, lock=True)
    access.require_change(principal, child["owner_org"])
    return child


# ---------------------------------------------------------------- workers


def _worker_lists(values: dict[str, Any]) -> dict[str, Any]:
    """Areas sorted without repeats; trainings and contracts as stored (dates as text)."""
    if "areas" in values:
        values["areas"] = domain.unique_sorted(values["areas"])
    return values


def username_taken() -> Conflict:
    """409: the username belongs to another worker."""
    return Conflict(
        "the username belongs to another worker",
        errors=[{"field": "username", "message": "already taken"}],
    )


async def _username_free(
    conn: AsyncConnection, username: str | None, worker_id: uuid.UUID | None = None
) -> None:
    if username is not None and await store.username_taken(conn, username, worker_id):
        raise username_taken()


async def _worker_changed(
    conn: AsyncConnection, ctx: Context, worker: store.Row, changed: list[str]
) -> None:
    """A worker's new version: its history row and its event."""
    await store.add_worker_history(
        conn,
        {
            "worker_id": worker["id"],
            "version": worker["version"],
            "changed": sorted(changed),
            **ctx.actor,
            "request_id": ctx.request_id,
        },
    )
    ctx.emit("casework.worker.upserted.v1", str(worker["id"]), domain.worker_event(worker))


async def create_worker(conn: AsyncConnection, body: WorkerIn, ctx: Context) -> store.Row:
    """Register a worker serving places inside the principal's areas."""
    values = _worker_lists(body.model_dump(mode="json"))
    domain.may_manage_worker(ctx.principal, body.org, values["areas"])
    await _username_free(conn, body.username)
    worker = await store.insert_worker(
        conn,
        {
            **values,
            "id": uuid.uuid4(),
            "org_type": domain.org_type_of(ctx.principal),
            "created_by": ctx.principal.sub,
        },
    )
    if worker is None:
        raise username_taken()
    await _worker_changed(conn, ctx, worker, list(values))
    await ctx.write_events(conn, outbox)
    return worker


async def worker_history(
    conn: AsyncConnection, worker_id: uuid.UUID, principal: Principal, page: Page
) -> list[store.Row]:
    """A visible worker's versions (404 otherwise)."""
    await read_worker(conn, worker_id, principal)
    return await store.list_worker_history(conn, worker_id, page)


async def read_worker(
    conn: AsyncConnection, worker_id: uuid.UUID, principal: Principal, *, lock: bool = False
) -> store.Row:
    """A worker visible to the principal; 404 otherwise."""
    return found(await store.get_worker(conn, worker_id, principal, lock=lock), "worker")


async def patch_worker(
    conn: AsyncConnection, worker_id: uuid.UUID, change: WorkerPatch, if_match: str, ctx: Context
) -> store.Row:
    """Apply a merge patch to the version the client read."""
    worker = await read_worker(conn, worker_id, ctx.principal, lock=True)
    check_if_match(if_match, worker["version"])
    domain.may_manage_worker(ctx.principal, worker["org"], worker["areas"])
    values = _worker_lists(change.model_dump(mode="json", exclude_unset=True))
    if "areas" in values:
        domain.may_manage_worker(ctx.principal, worker["org"], values["areas"])
    if values.get("username") is not None:
        await _username_free(conn, values["username"], worker_id)
    changed = [k for k, v in values.items() if worker[k] != v]
    updated = await store.update_worker(conn, worker_id, worker["version"], values)
    if updated is None:
        raise username_taken()
    await _worker_changed(conn, ctx, updated, changed)
    await ctx.write_events(conn, outbox)
    return updated


# ---------------------------------------------------------------- assignments


def _assignment_changed(ctx: Context, verb: str, assignment: store.Row, worker: store.Row) -> None:
    ctx.emit(
        f"casework.assignment.{verb}.v1",
        str(assignment["id"]),
        domain.assignment_event(assignment, worker["caseload"], worker["max_caseload"]),
    )


async def assign(conn: AsyncConnection, body: AssignmentIn, ctx: Context) -> store.Row:
    """Give a child a worker, ending its current assignment. The child's row is locked
    first, then the workers in id order, so the caseload is checked and counted under the
    worker's lock: concurrent assignments never take a worker past max_caseload."""
    principal = ctx.principal
    justification = body.override_justification
    domain.check_override_allowed(principal, justification)
    child = await _child_to_change(conn, body.child_id, principal)
    found(await store.get_worker(conn, body.worker_id, principal), "worker")
    current = await store.active_assignment(conn, body.child_id)
    if current is not None and current["worker_id"] == body.worker_id:
        raise Conflict("the child is already assigned to this worker", rule="already_assigned")
    held = [body.worker_id] + ([current["worker_id"]] if current is not None else [])
    locked = await store.lock_workers(conn, held)
    worker = locked[body.worker_id]
    day = clock.today(ctx.received_at)
    problem = domain.assignment_problem(worker, child, day)
    if problem is not None:
        raise problem
    override = domain.caseload_override(worker, justification)
    if current is not None:
        ended = await store.end_assignment(conn, current, day)
        before = await store.change_caseload(conn, current["worker_id"], -1)
        _assignment_changed(ctx, "ended", ended, before)
    assignment = await store.insert_assignment(
        conn,
        {
            "id": uuid.uuid4(),
            "child_id": child["id"],
            "worker_id": worker["id"],
            "commune_code": child["commune_code"],
            "village_code": child["village_code"],
            "org": worker["org"],
            "status": "active",
            "started_on": day,
            "override": override,
            "override_justification": justification if override else None,
            "assigned_by_sub": principal.sub,
            "assigned_by_org": principal.org,
        },
    )
    worker = await store.change_caseload(conn, worker["id"], +1)
    _assignment_changed(ctx, "started", assignment, worker)
    await store.update_child(conn, child["id"], {})
    await ctx.write_events(conn, outbox)
    log.info("assignment.started", assignment_id=str(assignment["id"]), override=override)
    return assignment


async def read_assignment(
    conn: AsyncConnection, assignment_id: uuid.UUID, principal: Principal
) -> store.Row:
    return found(await store.get_assignment(conn, assignment_id, principal), "assignment")


# ---------------------------------------------------------------- plans


@dataclass
class PlanWritten:
    plan: store.Row
    created: bool


async def put_plan(
    conn: AsyncConnection,
    child_id: uuid.UUID,
    body: PlanIn,
    if_match: str | None,
    if_none_match: str | None,
    ctx: Context,
) -> PlanWritten:
    """Write a child's whole plan: the first without If-Match (or with If-None-Match: *),
    a later one with the If-Match of the version read (428 without, 412 when stale)."""
    child = await _child_to_change(conn, child_id, ctx.principal)
    plan = await store.get_plan(conn, child_id, lock=True)
    values = {
        "goals": [g.model_dump(mode="json") for g in body.goals],
        "updated_by_sub": ctx.principal.sub,
        "updated_by_org": ctx.principal.org,
    }
    created = plan is None
    if plan is None:
        if if_match is not None:
            raise PreconditionFailed("the child has no plan yet; send no If-Match")
        written = await store.insert_plan(conn, {**values, "id": child_id})
        if written is None:
            raise PreconditionFailed("a plan was written meanwhile; read it and send If-Match")
    else:
        if if_none_match is not None and if_none_match.strip() == "*":
            raise PreconditionFailed("the child has a plan already; send its ETag as If-Match")
        if if_match is None:
            raise PreconditionRequired("send If-Match with the ETag of the plan you last read")
        check_if_match(if_match, plan["version"])
        written = await store.update_plan(conn, child_id, plan["version"], values)
    ctx.emit("casework.plan.updated.v1", str(child_id), domain.plan_event(child, written))
    await store.update_child(conn, child_id, {})
    await ctx.write_events(conn, outbox)
    return PlanWritten(written, created)


async def read_plan(conn: AsyncConnection, child_id: uuid.UUID, principal: Principal) -> store.Row:
    await _child(conn, child_id, principal)
    return found(await store.get_plan(conn, child_id), "plan")


# ---------------------------------------------------------------- visits


def _schedule_after(
    ctx: Context, child: store.Row, visit_on: date, worker: Any
) -> tuple[bool, bool]:
    """Whether a visit is the child's latest (by date), so that it sets the child's last and
    next visit, and whether it clears the child's overdue flag (with its event). An older,
    back-dated visit changes neither."""
    if child["last_visit_on"] is not None and visit_on < child["last_visit_on"]:
        return False, False
    if not child["overdue"]:
        return True, False
    data = domain.overdue_event(
        child["id"],
        child["commune_code"],
        worker,
        child["overdue_due_on"],
        False,
        clock.today(ctx.received_at),
    )
    ctx.emit("casework.visit.overdue_cleared.v1", str(child["id"]), data)
    return True, True


async def record_visit(conn: AsyncConnection, body: VisitIn, ctx: Context) -> store.Row:
    """Record a visit to a child (by government staff covering it, its registering
    organisation or the user who is its assigned worker); it sets the next visit, clears
    the overdue flag and makes the reintegration follow-up it satisfies."""
    target = await store.child_to_visit(conn, body.child_id, ctx.principal)
    if target is None:
        raise NotFound(CHILD_NOT_FOUND)
    child, assigned = target.child, target.worker
    domain.may_record_visit(ctx.principal, child["owner_org"], assigned)
    if body.date > clock.today(ctx.received_at):
        raise invalid("date", "is in the future")
    worker = assigned["id"] if assigned is not None else None
    pending = await store.followups_of(conn, child["id"], child["reintegrated_on"])
    made = domain.followup_made_by(pending, body.date, body.outcome.value, child["reintegrated_on"])
    latest, clear_overdue = _schedule_after(ctx, child, body.date, worker)
    visit = await store.insert_visit(
        conn,
        {
            "id": uuid.uuid4(),
            "child_id": child["id"],
            "worker_id": worker,
            "commune_code": child["commune_code"],
            "village_code": child["village_code"],
            "date": body.date,
            "kind": body.kind.value,
            "outcome": body.outcome.value,
            "notes": body.notes,
            "next_visit_on": body.next_visit_on,
            "followups_made": [made["month"]] if made is not None else [],
            "recorded_by_sub": ctx.principal.sub,
            "recorded_by_org": ctx.principal.org,
        },
        latest=latest,
        clear_overdue=clear_overdue,
    )
    if made is not None:
        await store.mark_followup_made(conn, made["id"], body.date, visit["id"])
    ctx.emit("casework.visit.recorded.v1", str(visit["id"]), domain.visit_event(visit))
    await ctx.write_events(conn, outbox)
    log.info("visit.recorded", visit_id=str(visit["id"]), followups=visit["followups_made"])
    return visit


async def read_visit(conn: AsyncConnection, visit_id: uuid.UUID, principal: Principal) -> store.Row:
    return found(await store.get_visit(conn, visit_id, principal), "visit")


# ---------------------------------------------------------------- overdue


async def flag_overdue(conn: AsyncConnection, today: date, batch: int = 500) -> list[store.Row]:
    """Flag children whose next visit passed (Cambodia's date) without a later visit, one
    casework.visit.overdue.v1 each, exactly once however many replicas run the job."""
    flagged = await store.flag_overdue(conn, today, batch)
    workers = await store.active_workers_of(conn, [c["id"] for c in flagged])
    events = [
        new_event(
            SERVICE,
            "casework.visit.overdue.v1",
            str(c["id"]),
            domain.overdue_event(
                c["id"], c["commune_code"], workers.get(c["id"]), c["overdue_due_on"], True, today
            ),
            None,
        )
        for c in flagged
    ]
    await write_events(conn, outbox, events)
    for c in flagged:
        log.info("visit.overdue", child_id=str(c["id"]))
    return flagged


# ---------------------------------------------------------------- a child's casework


@dataclass
class Case:
    child: store.Row
    assignment: store.Row | None
    plan: store.Row | None
    last_visit: store.Row | None
    followups: list[store.Row]


async def read_case(conn: AsyncConnection, child_id: uuid.UUID, principal: Principal) -> Case:
    """A visible child's casework: its worker, plan, last visit, schedule, follow-ups."""
    child = await _child(conn, child_id, principal)
    return Case(
        child,
        await store.active_assignment(conn, child_id),
        await store.get_plan(conn, child_id),
        await store.last_visit(conn, child_id),
        await store.followups_of(conn, child_id, child["reintegrated_on"]),
    )
