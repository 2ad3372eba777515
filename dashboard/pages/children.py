"""Children: search, one child's record with what is happening to them, its history."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from dashboard.web import quietly, record_id, view_of

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 25
MAX_QUERY = 100
FILTERS = {
    "status": ("open", "closed"),
    "risk_level": ("low", "medium", "high"),
}


def age_on(birth: str, today: dt.date) -> int | None:
    try:
        born = dt.date.fromisoformat(birth)
    except ValueError:
        return None
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


@router.get("/children")
async def children(request: Request) -> Response:
    view = view_of(request)
    query = request.query_params
    q = query.get("q", "").strip()[:MAX_QUERY]
    filters = {k: query.get(k) for k in FILTERS if query.get(k) in FILTERS[k]}
    cursor = view.cursor()
    page = await view.list_page(
        "/v1/registry/children", cursor, q=q or None, limit=PAGE_SIZE, **filters
    )
    return view.render(
        "children/list.html",
        q=q,
        filters=filters,
        options=FILTERS,
        items=page["items"],
        next_cursor=page.get("next_cursor"),
        cursor=cursor,
        today=dt.date.today(),
        age_on=age_on,
    )


@router.get("/children/{child_id}")
async def child(request: Request, child_id: str) -> Response:
    view = view_of(request)
    child_id = record_id(child_id)
    record = await view.get(f"/v1/registry/children/{child_id}")
    side: dict[str, Any] = {}
    if view.may("referrals:read"):
        side["referrals"] = quietly(view.get("/v1/referrals", child_id=child_id, limit=50))
    if view.may("funds:read"):
        side["grants"] = quietly(view.get("/v1/funds/grants", child_id=child_id, limit=50))
    if view.may("casework:read"):
        side["casework"] = quietly(view.get(f"/v1/casework/children/{child_id}"))
    found = dict(zip(side, await asyncio.gather(*side.values()), strict=True))
    assignment = (found.get("casework") or {}).get("assignment")
    if assignment:
        worker = await quietly(view.get(f"/v1/casework/workers/{assignment['worker_id']}"))
        if worker:
            assignment["worker_name"] = f"{worker['given_name']} {worker['family_name']}"
    return view.render(
        "children/record.html",
        child=record,
        age=age_on(record["birth_date"], dt.date.today()),
        referrals=(found.get("referrals") or {}).get("items"),
        grants=(found.get("grants") or {}).get("items"),
        casework=found.get("casework"),
        shown={k: k in side for k in ("referrals", "grants", "casework")},
    )


@router.get("/children/{child_id}/history")
async def history(request: Request, child_id: str) -> Response:
    view = view_of(request)
    child_id = record_id(child_id)
    record, page = await asyncio.gather(
        view.get(f"/v1/registry/children/{child_id}"),
        view.list_page(f"/v1/registry/children/{child_id}/history", view.cursor(), limit=50),
    )
    return view.render(
        "children/history.html",
        child=record,
        items=page["items"],
        next_cursor=page.get("next_cursor"),
    )
