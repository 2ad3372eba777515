"""Referrals: the queue (to answer, made), referring a child, one referral and its answers.

What a user may do to a referral is the API's to decide; the page offers the actions the
API would take from this user (their scopes, their organisation as the provider's or the
referrer's, the referral's state) and shows the API's answer when it refuses one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from dashboard.client import ApiProblem, NotFound
from dashboard.i18n import Translate
from dashboard.web import Refused, View, attempt, local_path, path_of, quietly, record_id, view_of
from libs.common.events.referrals_events import ServiceType

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 25
# A queue seen from one side ("to answer", "made") is filtered here from pages this long.
SIDE_PAGE_SIZE = 100
MAX_REASON = 1000
MAX_NOTE = 2000

STATUSES = ("pending", "accepted", "completed", "declined", "cancelled")
SERVICE_TYPES = tuple(s.value for s in ServiceType)
URGENCIES = ("normal", "high", "emergency")
OUTCOMES = ("service_provided", "referred_on", "child_declined", "unreachable", "other")
SIDES = ("all", "to_answer", "made")
# What each answer needs: the API's state machine (docs/api-guide.md#referrals).
ACTION_FROM = {
    "accept": ("pending",),
    "decline": ("pending",),
    "complete": ("accepted",),
    "cancel": ("pending", "accepted"),
}
ACTIONS = tuple(ACTION_FROM)


# ---------------------------------------------------------------- pure helpers


def queue_filters(query: Mapping[str, str]) -> dict[str, str]:
    """The queue's filters from a query string, each only if it is one the API knows."""
    found: dict[str, str] = {}
    if query.get("status") in STATUSES:
        found["status"] = query["status"]
    if query.get("service_type") in SERVICE_TYPES:
        found["service_type"] = query["service_type"]
    if query.get("overdue") == "true":
        found["overdue"] = "true"
    side = query.get("side")
    if side in SIDES and side != "all":
        found["side"] = side
    return found


def side_of(referral: Mapping[str, Any], org: str) -> str | None:
    """Whether the user's organisation answers the referral ("to_answer"), made it
    ("made"), or neither (None: seen through its areas)."""
    if referral.get("provider_org") == org:
        return "to_answer"
    if (referral.get("referred_by") or {}).get("org") == org:
        return "made"
    return None


def on_side(referral: Mapping[str, Any], org: str, side: str | None) -> bool:
    if side is None or side == "all":
        return True
    if side == "to_answer":
        return referral.get("provider_org") == org
    return (referral.get("referred_by") or {}).get("org") == org


def referral_actions(referral: Mapping[str, Any], org: str, scopes: frozenset[str]) -> list[str]:
    """The answers the API would take from this user: accept, decline and complete for the
    provider's organisation with `referrals:respond`; cancel for the referring organisation
    with `referrals:write`; each only in a state that allows it."""
    status = referral.get("status")
    actions = []
    if "referrals:respond" in scopes and referral.get("provider_org") == org:
        actions += [a for a in ("accept", "decline", "complete") if status in ACTION_FROM[a]]
    referrer = (referral.get("referred_by") or {}).get("org")
    if "referrals:write" in scopes and referrer == org and status in ACTION_FROM["cancel"]:
        actions.append("cancel")
    return actions


def _text(form: Mapping[str, str], name: str) -> str:
    return form.get(name, "").strip()


def referral_body(
    form: Mapping[str, str], t: Translate
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The API's body for a referral from the posted form, and what is plainly wrong with it
    (the API judges the rest)."""
    errors: list[dict[str, str]] = []
    service_type = _text(form, "service_type")
    if service_type not in SERVICE_TYPES:
        errors.append({"field": "service_type", "message": t("referrals.pick_service")})
    urgency = _text(form, "urgency") or "normal"
    if urgency not in URGENCIES:
        errors.append({"field": "urgency", "message": t("referrals.pick_urgency")})
    reason = _text(form, "reason")
    if not reason:
        errors.append({"field": "reason", "message": t("common.required")})
    elif len(reason) > MAX_REASON:
        errors.append({"field": "reason", "message": t("referrals.too_long", max=MAX_REASON)})
    body: dict[str, Any] = {
        "child_id": _text(form, "child_id"),
        "service_type": service_type,
        "urgency": urgency,
        "reason": reason,
    }
    provider = _text(form, "provider_id")
    if provider:
        body["provider_id"] = provider
    justification = _text(form, "consent_justification")
    if justification:
        if len(justification) > MAX_REASON:
            errors.append(
                {
                    "field": "consent_override",
                    "message": t("referrals.too_long", max=MAX_REASON),
                }
            )
        body["consent_override"] = {"justification": justification}
    return body, errors


def action_body(
    action: str, form: Mapping[str, str], t: Translate
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The API's body for an answer to a referral, and what is plainly wrong with it."""
    errors: list[dict[str, str]] = []
    if action == "accept":
        return {}, errors
    if action == "complete":
        code = _text(form, "outcome_code")
        note = _text(form, "outcome_note")
        if code not in OUTCOMES:
            errors.append({"field": "outcome_code", "message": t("referrals.pick_outcome")})
        if len(note) > MAX_NOTE:
            errors.append(
                {"field": "outcome_note", "message": t("referrals.too_long", max=MAX_NOTE)}
            )
        outcome: dict[str, Any] = {"code": code}
        if note:
            outcome["note"] = note
        return {"outcome": outcome}, errors
    field = f"{action}_reason"
    reason = _text(form, field)
    if not reason:
        errors.append({"field": field, "message": t("common.required")})
    elif len(reason) > MAX_REASON:
        errors.append({"field": field, "message": t("referrals.too_long", max=MAX_REASON)})
    return {"reason": reason}, errors


def explain_problem(
    problem: ApiProblem, service_type: str, t: Translate
) -> tuple[str, list[dict[str, str]]]:
    """What to tell the user when the API refuses a referral: the two refusals a person
    meets every day (no provider can take it; consent is missing) in their language, any
    other as the API says it."""
    fields = {str(e.get("field", "")) for e in problem.errors}
    if problem.status == 422 and "consent_override" in fields:
        message = t("referrals.consent_needed")
        return message, [{"field": "consent_override", "message": message}]
    if problem.status == 422 and "service_type" in fields and service_type in SERVICE_TYPES:
        message = t("referrals.no_provider", service=t(f"service.{service_type}"))
        return message, [{"field": "service_type", "message": message}]
    return problem.detail or problem.title, problem.field_errors()


# ---------------------------------------------------------------- the queue


async def _provider_names(view: View, ids: set[str]) -> dict[str, str]:
    """Names of the providers in a page (one list call; ids it does not hold stay nameless)."""
    if not ids:
        return {}
    found = await quietly(view.get("/v1/referrals/providers", limit=500))
    return {p["id"]: p["name"] for p in (found or {}).get("items", []) if p["id"] in ids}


@router.get("/referrals")
async def queue(request: Request) -> Response:
    view = view_of(request)
    filters = queue_filters(request.query_params)
    side = filters.get("side")
    cursor = view.cursor()
    params = {k: v for k, v in filters.items() if k != "side"}
    page = await view.list_page(
        "/v1/referrals", cursor, limit=SIDE_PAGE_SIZE if side else PAGE_SIZE, **params
    )
    org = view.user.profile.org
    items = [r for r in page["items"] if on_side(r, org, side)]
    names = await _provider_names(view, {r["provider_id"] for r in items})
    return view.render(
        "referrals/list.html",
        active="referrals",
        items=items,
        filters=filters,
        side=side or "all",
        sides=SIDES,
        statuses=STATUSES,
        service_types=SERVICE_TYPES,
        next_cursor=page.get("next_cursor"),
        provider_names=names,
        side_of=lambda r: side_of(r, org),
    )


# ---------------------------------------------------------------- referring a child


async def _referral_form(
    view: View,
    child_id: str,
    from_path: str,
    typed: Mapping[str, str],
    *,
    errors: list[dict[str, str]] | None = None,
    problem: str | None = None,
) -> Response:
    child = await view.get(f"/v1/registry/children/{child_id}")
    providers = await quietly(
        view.get(
            "/v1/referrals/providers",
            commune_code=child["commune_code"],
            active="true",
            limit=200,
        )
    )
    return view.render(
        "referrals/new.html",
        active="referrals",
        child=child,
        providers=(providers or {}).get("items", []),
        service_types=SERVICE_TYPES,
        urgencies=URGENCIES,
        typed=typed,
        errors=errors or [],
        problem=problem,
        from_path=from_path,
        ask_override=(
            not child["consent"]["data_sharing"] and view.user.profile.org_type == "government"
        ),
    )


@router.get("/referrals/new")
async def new_referral(request: Request) -> Response:
    view = view_of(request)
    child_id = record_id(request.query_params.get("child_id", ""))
    from_path = path_of(request)
    return await _referral_form(view, child_id, from_path, view.draft_for(from_path))


@router.post("/referrals")
async def make_referral(request: Request) -> Response:
    view = view_of(request)
    form = await view.form()
    child_id = record_id(form.get("child_id", ""))
    from_path = local_path(form.get("_from"), f"/referrals/new?child_id={child_id}")
    body, errors = referral_body(form, view.t)
    if errors:
        return await _referral_form(view, child_id, from_path, form, errors=errors)
    made = await attempt(
        view, view.post("/v1/referrals", body), not_found=view.t("referrals.child_not_synced")
    )
    if isinstance(made, Refused):
        problem, errors = made.problem, made.errors
        if made.api is not None:
            problem, errors = explain_problem(made.api, body["service_type"], view.t)
        return await _referral_form(view, child_id, from_path, form, errors=errors, problem=problem)
    return view.redirect(f"/referrals/{made['id']}", flash=view.t("referrals.made"))


# ---------------------------------------------------------------- one referral


async def _referral_page(
    view: View,
    referral_id: str,
    *,
    typed: Mapping[str, str] | None = None,
    errors: list[dict[str, str]] | None = None,
    problem: str | None = None,
    acted: str | None = None,
) -> Response:
    referral = await view.get(f"/v1/referrals/{referral_id}")
    side: dict[str, Any] = {
        "provider": quietly(view.get(f"/v1/referrals/providers/{referral['provider_id']}"))
    }
    if view.may("registry:read"):
        side["child"] = quietly(view.get(f"/v1/registry/children/{referral['child_id']}"))
    found = dict(zip(side, await asyncio.gather(*side.values()), strict=True))
    profile = view.user.profile
    return view.render(
        "referrals/record.html",
        active="referrals",
        r=referral,
        provider=found.get("provider"),
        child=found.get("child"),
        actions=referral_actions(referral, profile.org, profile.scopes),
        side=side_of(referral, profile.org),
        outcomes=OUTCOMES,
        typed=typed or {},
        errors=errors or [],
        problem=problem,
        acted=acted,
        from_path=f"/referrals/{referral_id}",
    )


@router.get("/referrals/{referral_id}")
async def referral(request: Request, referral_id: str) -> Response:
    view = view_of(request)
    referral_id = record_id(referral_id)
    return await _referral_page(view, referral_id, typed=view.draft_for(path_of(request)))


@router.post("/referrals/{referral_id}/{action}")
async def answer(request: Request, referral_id: str, action: str) -> Response:
    view = view_of(request)
    referral_id = record_id(referral_id)
    if action not in ACTIONS:
        raise NotFound()
    form = await view.form()
    t = view.t
    body, errors = action_body(action, form, t)
    if errors:
        return await _referral_page(view, referral_id, typed=form, errors=errors, acted=action)
    answered = await attempt(view, view.post(f"/v1/referrals/{referral_id}/{action}", body))
    if isinstance(answered, Refused):
        problem = answered.problem
        if answered.api is not None and answered.api.status == 409:
            current = await view.get(f"/v1/referrals/{referral_id}")
            problem = t("referrals.conflict", status=t("referral_status." + str(current["status"])))
        return await _referral_page(
            view, referral_id, typed=form, errors=answered.errors, problem=problem, acted=action
        )
    flash = t(f"referrals.done.{action}")
    if action == "decline":
        rerouted = answered.get("rerouted_to") if isinstance(answered, dict) else None
        flash = t("referrals.done.rerouted") if rerouted else t("referrals.done.not_rerouted")
    return view.redirect(f"/referrals/{referral_id}", flash=flash)
