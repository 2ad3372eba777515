"""Casework: a support worker's caseload, the visits due and overdue, the workers, and
recording a visit.

A user who is a community support worker (their username is a worker record's, of their
organisation) sees the children assigned to them, as the API shows them; staff see the
visits due in their areas and the workers serving there.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from dashboard.i18n import Translate
from dashboard.web import Refused, View, attempt, local_path, path_of, quietly, record_id, view_of
from libs.common import clock
from libs.common.events.casework_events import VisitKind, VisitOutcome, WorkerRole

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 25
MAX_NOTES = 4000
# How many workers are looked through to find the user's own record, and for how long
# what was found is kept (a new worker record shows within this long).
WORKER_SEARCH_PAGES = 2
WORKER_SEARCH_LIMIT = 500
WORKER_TTL_S = 60.0
WORKER_CACHE_SIZE = 1000
# The visits due the caseload reads, to show each assigned child's next visit.
DUE_LOOKUP_LIMIT = 500

TABS = ("caseload", "overdue", "upcoming", "workers")
KINDS = tuple(k.value for k in VisitKind)
OUTCOMES = tuple(o.value for o in VisitOutcome)
ROLES = tuple(r.value for r in WorkerRole)
WORKER_STATUSES = ("active", "inactive")


# ---------------------------------------------------------------- pure helpers


def is_me(worker: Mapping[str, Any], username: str, org: str) -> bool:
    """Whether a worker record is the signed-in user: its username is theirs (the API keeps
    it in lower case) and it belongs to their organisation."""
    name = worker.get("username")
    return bool(name) and name == username.lower() and worker.get("org") == org


def pick_tab(query: Mapping[str, str], has_caseload: bool, may_list_workers: bool) -> str:
    """The tab a query asks for (`due=overdue|upcoming`, `tab=caseload|workers`), else the
    caseload for a worker and the overdue visits for staff."""
    due = query.get("due")
    if due in ("overdue", "upcoming"):
        return due
    tab = query.get("tab")
    if tab == "caseload" and has_caseload:
        return tab
    if tab == "workers" and may_list_workers:
        return tab
    return "caseload" if has_caseload else "overdue"


def due_by_child(items: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {str(d["child_id"]): d for d in items}


def parse_day(text: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        return None


def visit_body(
    form: Mapping[str, str], t: Translate, today: dt.date
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The API's body for a visit from the posted form, and what is plainly wrong with it:
    a visit on a day still to come (`today` is Cambodia's), a next visit not after it (the
    API judges again, and the rest)."""
    errors: list[dict[str, str]] = []
    day = parse_day(form.get("date", ""))
    if day is None:
        errors.append({"field": "date", "message": t("casework.bad_date")})
    elif day > today:
        errors.append({"field": "date", "message": t("casework.date_to_come")})
    kind = form.get("kind", "").strip()
    if kind not in KINDS:
        errors.append({"field": "kind", "message": t("casework.pick_kind")})
    outcome = form.get("outcome", "").strip()
    if outcome not in OUTCOMES:
        errors.append({"field": "outcome", "message": t("casework.pick_outcome")})
    body: dict[str, Any] = {
        "child_id": form.get("child_id", "").strip(),
        "date": day.isoformat() if day else "",
        "kind": kind,
        "outcome": outcome,
    }
    notes = form.get("notes", "").strip()
    if len(notes) > MAX_NOTES:
        errors.append({"field": "notes", "message": t("casework.too_long", max=MAX_NOTES)})
    if notes:
        body["notes"] = notes
    next_text = form.get("next_visit_on", "").strip()
    if next_text:
        next_day = parse_day(next_text)
        if next_day is None:
            errors.append({"field": "next_visit_on", "message": t("casework.bad_date")})
        elif day is not None and next_day <= day:
            errors.append({"field": "next_visit_on", "message": t("casework.next_after")})
        else:
            body["next_visit_on"] = next_day.isoformat()
    return body, errors


# ---------------------------------------------------------------- the user's worker record


class WorkerCache:
    """The user's own worker record (or None), kept a short while per user."""

    def __init__(self, size: int = WORKER_CACHE_SIZE, ttl_s: float = WORKER_TTL_S) -> None:
        self.size = size
        self.ttl_s = ttl_s
        self.found: OrderedDict[str, tuple[float, dict[str, Any] | None]] = OrderedDict()

    def get(self, sub: str) -> tuple[bool, dict[str, Any] | None]:
        hit = self.found.get(sub)
        if hit is None or time.monotonic() - hit[0] > self.ttl_s:
            return False, None
        return True, hit[1]

    def put(self, sub: str, worker: dict[str, Any] | None) -> None:
        self.found[sub] = (time.monotonic(), worker)
        self.found.move_to_end(sub)
        while len(self.found) > self.size:
            self.found.popitem(last=False)


WORKERS = WorkerCache()


async def my_worker(view: View) -> dict[str, Any] | None:
    """The worker record that is the signed-in user, if any (looked for among the workers
    the API shows them)."""
    profile = view.user.profile
    known, worker = WORKERS.get(profile.sub)
    if known:
        return worker
    cursor = None
    for _ in range(WORKER_SEARCH_PAGES):
        page = await quietly(
            view.get(
                "/v1/casework/workers", status="active", limit=WORKER_SEARCH_LIMIT, cursor=cursor
            )
        )
        if page is None:
            return None  # not cached: Komar did not answer
        worker = next((w for w in page["items"] if is_me(w, profile.username, profile.org)), None)
        cursor = page.get("next_cursor")
        if worker is not None or not cursor:
            break
    WORKERS.put(profile.sub, worker)
    return worker


# ---------------------------------------------------------------- the casework page


@router.get("/casework")
async def casework(request: Request) -> Response:
    view = view_of(request)
    query = request.query_params
    worker = await my_worker(view)
    tab = pick_tab(query, worker is not None, view.may("casework:read"))
    cursor = view.cursor()
    context: dict[str, Any] = {"items": [], "due": {}, "filters": {}}
    if tab == "caseload" and worker is not None:
        page, due = await asyncio.gather(
            view.list_page(
                "/v1/casework/assignments",
                cursor,
                worker_id=worker["id"],
                status="active",
                limit=PAGE_SIZE,
            ),
            quietly(view.get("/v1/casework/visits/due", limit=DUE_LOOKUP_LIMIT)),
        )
        context["due"] = due_by_child((due or {}).get("items", []))
    elif tab == "workers":
        filters = {
            "role": query.get("role") if query.get("role") in ROLES else None,
            "status": query.get("status") if query.get("status") in WORKER_STATUSES else None,
        }
        page = await view.list_page("/v1/casework/workers", cursor, limit=PAGE_SIZE, **filters)
        context["filters"] = {k: v for k, v in filters.items() if v}
    else:
        page = await view.list_page(
            "/v1/casework/visits/due",
            cursor,
            overdue="true" if tab == "overdue" else "false",
            limit=PAGE_SIZE,
        )
    context["items"] = page["items"]
    return view.render(
        "casework/index.html",
        active="casework",
        tab=tab,
        worker=worker,
        roles=ROLES,
        worker_statuses=WORKER_STATUSES,
        next_cursor=page.get("next_cursor"),
        **context,
    )


# ---------------------------------------------------------------- recording a visit


async def _visit_form(
    view: View,
    child_id: str,
    from_path: str,
    typed: Mapping[str, str],
    *,
    errors: list[dict[str, str]] | None = None,
    problem: str | None = None,
) -> Response:
    side: dict[str, Any] = {"case": view.get(f"/v1/casework/children/{child_id}")}
    if view.may("registry:read"):
        side["child"] = quietly(view.get(f"/v1/registry/children/{child_id}"))
    found = dict(zip(side, await asyncio.gather(*side.values()), strict=True))
    return view.render(
        "casework/visit.html",
        active="casework",
        case=found["case"],
        child=found.get("child"),
        kinds=KINDS,
        outcomes=OUTCOMES,
        today=clock.today().isoformat(),
        typed=typed,
        errors=errors or [],
        problem=problem,
        from_path=from_path,
    )


@router.get("/casework/visits/new")
async def new_visit(request: Request) -> Response:
    view = view_of(request)
    child_id = record_id(request.query_params.get("child_id", ""))
    from_path = path_of(request)
    return await _visit_form(view, child_id, from_path, view.draft_for(from_path))


@router.post("/casework/visits")
async def record_visit(request: Request) -> Response:
    view = view_of(request)
    form = await view.form()
    child_id = record_id(form.get("child_id", ""))
    from_path = local_path(form.get("_from"), f"/casework/visits/new?child_id={child_id}")
    body, errors = visit_body(form, view.t, clock.today())
    if errors:
        return await _visit_form(view, child_id, from_path, form, errors=errors)
    done = await attempt(
        view, view.post("/v1/casework/visits", body), not_found=view.t("casework.child_not_synced")
    )
    if isinstance(done, Refused):
        return await _visit_form(
            view, child_id, from_path, form, errors=done.errors, problem=done.problem
        )
    back = f"/children/{child_id}" if view.may("registry:read") else "/casework"
    return view.redirect(back, flash=view.t("casework.visit_recorded"))
