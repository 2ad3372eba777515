"""The overview: what needs the user's attention in their areas."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from dashboard.web import View, quietly, view_of

router = APIRouter(include_in_schema=False)

# Counted up to this many; past it a tile says "100+".
COUNT_UP_TO = 100


@dataclass
class Tile:
    """One figure of the overview and the page that lists what it counts."""

    label: str
    count: int | None  # None: Komar did not answer for it
    more: bool
    link: str
    alert: bool = False


async def _count(view: View, path: str, **params: Any) -> tuple[int | None, bool, list[Any]]:
    page = await quietly(view.get(path, limit=COUNT_UP_TO, **params))
    if page is None:
        return None, False, []
    items = page.get("items", [])
    return len(items), bool(page.get("next_cursor")), items


async def _awaiting_my_approval(view: View) -> tuple[int | None, bool, list[Any]]:
    count, more, items = await _count(view, "/v1/funds/grants", status="requested")
    if count is None:
        return None, False, []
    mine = view.user.profile.sub
    waiting = [g for g in items if g["requested_by"]["sub"] != mine]
    return len(waiting), more, waiting


@router.get("/")
async def overview(request: Request) -> Response:
    view = view_of(request)
    t = view.t
    jobs: dict[str, Any] = {}
    if view.may("registry:read"):
        jobs["open"] = _count(view, "/v1/registry/children", status="open")
        jobs["high"] = _count(view, "/v1/registry/children", status="open", risk_level="high")
    if view.may("referrals:read"):
        jobs["pending"] = _count(view, "/v1/referrals", status="pending")
        jobs["overdue"] = _count(view, "/v1/referrals", status="pending", overdue="true")
    if view.may("funds:approve"):
        jobs["approve"] = _awaiting_my_approval(view)
    if view.may("funds:read"):
        jobs["funds"] = quietly(view.get("/v1/funds/funds", limit=20))
    if view.may("casework:read"):
        jobs["visits_overdue"] = _count(view, "/v1/casework/visits/due", overdue="true")
        jobs["visits_due"] = _count(view, "/v1/casework/visits/due", overdue="false")
    results = dict(zip(jobs, await asyncio.gather(*jobs.values()), strict=True))

    tiles: list[Tile] = []

    def tile(key: str, label: str, link: str, alert: bool = False) -> None:
        if key in results:
            count, more, _ = results[key]
            tiles.append(Tile(t(label), count, more, link, alert and bool(count)))

    tile("open", "overview.open_cases", "/children?status=open")
    tile("high", "overview.high_risk", "/children?status=open&risk_level=high", alert=True)
    tile("pending", "overview.pending_referrals", "/referrals?status=pending")
    tile("overdue", "overview.overdue_referrals", "/referrals?overdue=true", alert=True)
    tile("approve", "overview.awaiting_approval", "/funds/approvals", alert=True)
    tile("visits_overdue", "overview.visits_overdue", "/casework?due=overdue", alert=True)
    tile("visits_due", "overview.visits_due", "/casework?due=upcoming")
    funds = (results.get("funds") or {}).get("items", []) if "funds" in results else None
    areas = ", ".join(view.place(code) for code in view.user.profile.areas)
    return view.render("overview.html", tiles=tiles, funds=funds, areas=areas)
