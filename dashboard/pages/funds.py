"""Funds and grants: fund balances and ledgers, the approval queue, requesting a grant,
one grant and its approvals.

Maker-checker is the API's rule, made visible here: a grant the user requested is shown
to them with a note that another person approves it, never with an Approve button.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from dashboard.client import Forbidden, NotFound
from dashboard.i18n import Translate
from dashboard.web import Refused, View, attempt, local_path, path_of, quietly, record_id, view_of
from libs.common.events.funds_events import Category

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 25
LEDGER_PAGE_SIZE = 50
MAX_JUSTIFICATION = 2000
MAX_REASON = 500
MAX_REFERENCE = 100
MAX_DESCRIPTION = 200
MAX_KHR = 10**15
# Rows of items a material-support request may list on the form.
ITEM_ROWS = 5

CATEGORIES = tuple(c.value for c in Category)
SHOCKS = ("flood", "storm", "fire", "drought", "other")
METHODS = ("cash", "bank", "mobile_money")
ACTIONS = ("approve", "reject", "disburse", "cancel")
# The approval queue's two stages: grants to approve, approved grants to pay.
STAGES = ("approval", "payment")
KHMER_DIGITS = str.maketrans("០១២៣៤៥៦៧៨៩", "0123456789")
# Separators a person may type in an amount: 1,250,000 · 1 250 000 · ១,២៥០,០០០
SEPARATORS = (",", " ", "_", "\u00a0", "\u202f", "\u2009", "'")


# ---------------------------------------------------------------- pure helpers


def parse_riel(text: str | None) -> int | None:
    """A whole number of riel as a person types it (thousands separators, Khmer digits),
    or None when it is not one (empty, a fraction, a sign, letters, beyond any fund)."""
    if text is None:
        return None
    cleaned = text.strip().translate(KHMER_DIGITS)
    for sep in SEPARATORS:
        cleaned = cleaned.replace(sep, "")
    if not cleaned or not cleaned.isascii() or not cleaned.isdigit() or len(cleaned) > 16:
        return None
    value = int(cleaned)
    return value if value <= MAX_KHR else None


def covers(fund_code: str, place_code: str) -> bool:
    """Whether a fund's area (a commune, district or province code) contains a place."""
    return bool(fund_code) and place_code.startswith(fund_code)


def order_funds(
    funds: Iterable[Mapping[str, Any]], commune_code: str
) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """The funds that cover the child's commune, the most local and latest year first, and
    the others (by name): the form offers the first group first."""
    covering: list[Mapping[str, Any]] = []
    others: list[Mapping[str, Any]] = []
    for fund in funds:
        (covering if covers(str(fund["commune_code"]), commune_code) else others).append(fund)
    covering.sort(key=lambda f: (-len(str(f["commune_code"])), -int(f["fiscal_year"]), f["name"]))
    others.sort(key=lambda f: (str(f["name"]), -int(f["fiscal_year"])))
    return covering, others


def _text(form: Mapping[str, str], name: str) -> str:
    return form.get(name, "").strip()


def grant_body(
    form: Mapping[str, str], t: Translate
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The API's body for a grant request from the posted form, and what is plainly wrong
    with it (the API judges the rest: the fund's maximum, the child's place, the items'
    total). For material support an amount left empty is the items' total."""
    errors: list[dict[str, str]] = []

    def error(field: str, key: str, **values: Any) -> None:
        errors.append({"field": field, "message": t(key, **values)})

    category = _text(form, "category")
    if category not in CATEGORIES:
        error("category", "grants.pick_category")
    fund_id = _text(form, "fund_id")
    if not fund_id:
        error("fund_id", "grants.pick_fund")
    body: dict[str, Any] = {
        "child_id": _text(form, "child_id"),
        "fund_id": fund_id,
        "category": category,
    }
    if category == "emergency_disaster":
        shock = _text(form, "shock")
        if shock not in SHOCKS:
            error("shock", "grants.pick_shock")
        body["shock"] = shock
    items: list[dict[str, Any]] = []
    if category == "material_support":
        for i in range(ITEM_ROWS):
            description = _text(form, f"item_description_{i}")
            quantity_text = _text(form, f"item_quantity_{i}")
            cost_text = _text(form, f"item_unit_cost_{i}")
            if not (description or quantity_text or cost_text):
                continue
            quantity = parse_riel(quantity_text)
            cost = parse_riel(cost_text)
            if not description or len(description) > MAX_DESCRIPTION:
                error(f"item_description_{i}", "grants.item_description_needed")
            if not quantity:
                error(f"item_quantity_{i}", "grants.whole_number")
            if not cost:
                error(f"item_unit_cost_{i}", "grants.whole_riel")
            items.append(
                {"description": description, "quantity": quantity or 0, "unit_cost_khr": cost or 0}
            )
        if not items:
            error("items", "grants.items_needed")
        body["items"] = items
    amount_text = _text(form, "amount_khr")
    amount = parse_riel(amount_text)
    if not amount_text and items and not errors:
        amount = sum(int(i["quantity"]) * int(i["unit_cost_khr"]) for i in items)
    if not amount:
        error("amount_khr", "grants.whole_riel")
    body["amount_khr"] = amount or 0
    justification = _text(form, "justification")
    if len(justification) > MAX_JUSTIFICATION:
        error("justification", "grants.too_long", max=MAX_JUSTIFICATION)
    if justification:
        body["justification"] = justification
    return body, errors


def action_body(
    action: str, form: Mapping[str, str], t: Translate
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The API's body for an action on a grant, and what is plainly wrong with it."""
    errors: list[dict[str, str]] = []
    if action == "approve":
        return {}, errors
    if action == "disburse":
        method = _text(form, "method")
        reference = _text(form, "reference")
        if method not in METHODS:
            errors.append({"field": "method", "message": t("grants.pick_method")})
        if not reference:
            errors.append({"field": "reference", "message": t("common.required")})
        elif len(reference) > MAX_REFERENCE:
            errors.append(
                {"field": "reference", "message": t("grants.too_long", max=MAX_REFERENCE)}
            )
        return {"method": method, "reference": reference}, errors
    reason = _text(form, f"{action}_reason")
    if len(reason) > MAX_REASON:
        errors.append(
            {"field": f"{action}_reason", "message": t("grants.too_long", max=MAX_REASON)}
        )
    if action == "reject":
        if not reason:
            errors.append({"field": "reject_reason", "message": t("common.required")})
        return {"reason": reason}, errors
    return ({"reason": reason} if reason else {}), errors


def approval_state(grant: Mapping[str, Any], sub: str) -> str:
    """Where the user stands on a grant awaiting approval: "mine" (they requested it: another
    person approves), "approved_by_me" (they gave one of its approvals: the next is someone
    else's), or "open" (they may approve it, if their scopes allow)."""
    if (grant.get("requested_by") or {}).get("sub") == sub:
        return "mine"
    if any((a.get("by") or {}).get("sub") == sub for a in grant.get("approvals") or ()):
        return "approved_by_me"
    return "open"


def grant_actions(
    grant: Mapping[str, Any], sub: str, org: str, scopes: frozenset[str]
) -> list[str]:
    """The actions the API would take from this user on a grant: approve and reject a
    requested grant they did not request (and have not approved) with `funds:approve`;
    disburse an approved one with `funds:disburse`; cancel one not yet paid, for the
    requesting organisation (`funds:request`) or a fund manager (`funds:manage`)."""
    status = grant.get("status")
    actions = []
    if status == "requested" and "funds:approve" in scopes and approval_state(grant, sub) == "open":
        actions += ["approve", "reject"]
    if status == "approved" and "funds:disburse" in scopes:
        actions.append("disburse")
    requester_org = (grant.get("requested_by") or {}).get("org")
    may_cancel = "funds:manage" in scopes or ("funds:request" in scopes and requester_org == org)
    if status in ("requested", "approved") and may_cancel:
        actions.append("cancel")
    return actions


async def _funds_by_id(view: View) -> dict[str, Any]:
    """The funds the user may see, by id (for names in lists; one call)."""
    found = await quietly(view.get("/v1/funds/funds", limit=500))
    return {f["id"]: f for f in (found or {}).get("items", [])}


# ---------------------------------------------------------------- funds


@router.get("/funds")
async def funds(request: Request) -> Response:
    view = view_of(request)
    page = await view.list_page("/v1/funds/funds", view.cursor(), limit=PAGE_SIZE)
    return view.render(
        "funds/list.html",
        active="funds",
        items=page["items"],
        next_cursor=page.get("next_cursor"),
    )


@router.get("/funds/approvals")
async def approvals(request: Request) -> Response:
    view = view_of(request)
    stage = request.query_params.get("stage")
    if stage not in STAGES:
        may_approve = view.may("funds:approve")
        stage = "payment" if view.may("funds:disburse") and not may_approve else "approval"
    status = "requested" if stage == "approval" else "approved"
    page, funds_by_id = await asyncio.gather(
        view.list_page("/v1/funds/grants", view.cursor(), status=status, limit=PAGE_SIZE),
        _funds_by_id(view),
    )
    profile = view.user.profile
    rows = [
        {
            "grant": g,
            "state": approval_state(g, profile.sub),
            "actions": grant_actions(g, profile.sub, profile.org, profile.scopes),
        }
        for g in page["items"]
    ]
    return view.render(
        "funds/approvals.html",
        active="funds",
        stage=stage,
        stages=STAGES,
        rows=rows,
        funds=funds_by_id,
        methods=METHODS,
        next_cursor=page.get("next_cursor"),
        from_path=path_of(request),
    )


async def _books(view: View, fund_id: str, cursor: str | None) -> dict[str, Any] | None:
    """A page of the fund's ledger, or None for a user whose areas do not cover the fund's
    whole area (the API answers 403 to them: the books are not theirs to read)."""
    try:
        page: dict[str, Any] = await view.list_page(
            f"/v1/funds/funds/{fund_id}/ledger", cursor, limit=LEDGER_PAGE_SIZE
        )
    except (Forbidden, NotFound):
        return None
    return page


@router.get("/funds/{fund_id}")
async def fund(request: Request, fund_id: str) -> Response:
    view = view_of(request)
    fund_id = record_id(fund_id)
    cursor = view.cursor()
    record, ledger, grants = await asyncio.gather(
        view.get(f"/v1/funds/funds/{fund_id}"),
        _books(view, fund_id, cursor),
        quietly(view.get("/v1/funds/grants", fund_id=fund_id, limit=PAGE_SIZE)),
    )
    return view.render(
        "funds/record.html",
        active="funds",
        f=record,
        ledger=ledger,
        grants=(grants or {}).get("items"),
        next_cursor=(ledger or {}).get("next_cursor"),
    )


# ---------------------------------------------------------------- requesting a grant


async def _grant_form(
    view: View,
    child_id: str,
    from_path: str,
    typed: Mapping[str, str],
    *,
    errors: list[dict[str, str]] | None = None,
    problem: str | None = None,
) -> Response:
    child, funds_by_id = await asyncio.gather(
        view.get(f"/v1/registry/children/{child_id}"), _funds_by_id(view)
    )
    covering, others = order_funds(funds_by_id.values(), child["commune_code"])
    return view.render(
        "funds/new_grant.html",
        active="funds",
        child=child,
        covering=covering,
        others=others,
        categories=CATEGORIES,
        shocks=SHOCKS,
        item_rows=range(ITEM_ROWS),
        typed=typed,
        errors=errors or [],
        problem=problem,
        from_path=from_path,
    )


@router.get("/grants/new")
async def new_grant(request: Request) -> Response:
    view = view_of(request)
    child_id = record_id(request.query_params.get("child_id", ""))
    from_path = path_of(request)
    return await _grant_form(view, child_id, from_path, view.draft_for(from_path))


@router.post("/grants")
async def request_grant(request: Request) -> Response:
    view = view_of(request)
    form = await view.form()
    child_id = record_id(form.get("child_id", ""))
    from_path = local_path(form.get("_from"), f"/grants/new?child_id={child_id}")
    body, errors = grant_body(form, view.t)
    if errors:
        return await _grant_form(view, child_id, from_path, form, errors=errors)
    made = await attempt(
        view, view.post("/v1/funds/grants", body), not_found=view.t("grants.child_not_synced")
    )
    if isinstance(made, Refused):
        return await _grant_form(
            view, child_id, from_path, form, errors=made.errors, problem=made.problem
        )
    return view.redirect(f"/grants/{made['id']}", flash=view.t("grants.requested"))


# ---------------------------------------------------------------- one grant


async def _grant_page(
    view: View,
    grant_id: str,
    *,
    typed: Mapping[str, str] | None = None,
    errors: list[dict[str, str]] | None = None,
    problem: str | None = None,
) -> Response:
    grant = await view.get(f"/v1/funds/grants/{grant_id}")
    side: dict[str, Any] = {"fund": quietly(view.get(f"/v1/funds/funds/{grant['fund_id']}"))}
    if view.may("registry:read"):
        side["child"] = quietly(view.get(f"/v1/registry/children/{grant['child_id']}"))
    found = dict(zip(side, await asyncio.gather(*side.values()), strict=True))
    profile = view.user.profile
    return view.render(
        "funds/grant.html",
        active="funds",
        g=grant,
        fund=found.get("fund"),
        child=found.get("child"),
        state=approval_state(grant, profile.sub),
        actions=grant_actions(grant, profile.sub, profile.org, profile.scopes),
        methods=METHODS,
        typed=typed or {},
        errors=errors or [],
        problem=problem,
        from_path=f"/grants/{grant_id}",
    )


@router.get("/grants/{grant_id}")
async def grant(request: Request, grant_id: str) -> Response:
    view = view_of(request)
    grant_id = record_id(grant_id)
    return await _grant_page(view, grant_id, typed=view.draft_for(path_of(request)))


@router.post("/grants/{grant_id}/{action}")
async def act(request: Request, grant_id: str, action: str) -> Response:
    view = view_of(request)
    grant_id = record_id(grant_id)
    if action not in ACTIONS:
        raise NotFound()
    form = await view.form()
    t = view.t
    body, errors = action_body(action, form, t)
    if errors:
        return await _grant_page(view, grant_id, typed=form, errors=errors)
    answer = await attempt(view, view.post(f"/v1/funds/grants/{grant_id}/{action}", body))
    if isinstance(answer, Refused):
        problem = answer.problem
        if answer.api is not None and answer.api.status == 409:
            problem = t("grants.conflict", detail=problem)
        return await _grant_page(view, grant_id, typed=form, errors=answer.errors, problem=problem)
    done = f"grants.done.{action}"
    if action == "approve" and isinstance(answer, dict) and answer.get("status") == "requested":
        done = "grants.done.first_approval"
    back = local_path(form.get("_from"), f"/grants/{grant_id}")
    return view.redirect(back, flash=t(done))
