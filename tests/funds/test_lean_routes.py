"""The grant workflow's lean routes answer exactly as the FastAPI routes they are derived
from: the same grants, actions and ledger, the same refusals, word for word."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from libs.common.events.bus import EventBus
from services.funds.api import LEAN_ENDPOINTS, router
from tests.funds.conftest import People, add_children, grant_body, make_fund, make_grant
from tests.support import assert_same_answer, fastapi_client, handed_to_fastapi, lean_routes

# What differs between two grants made alike: their identity, child and times.
OWN_FIELDS = ("id", "child_id", "created_at", "updated_at")


@pytest.fixture
async def fastapi_api(funds_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The funds routes on the same runtime without their LeanRoutes."""
    async with fastapi_client(funds_app, router, "funds") as client:
        yield client


def shape(doc: dict[str, Any]) -> dict[str, Any]:
    """A grant's answer without what differs between two grants made alike."""
    out = {k: v for k, v in doc.items() if k not in OWN_FIELDS}
    out["approvals"] = [{**a, "at": None} for a in doc["approvals"]]
    out["history"] = [{**h, "at": None, "request_id": None} for h in doc["history"]]
    if doc["disbursement"] is not None:
        out["disbursement"] = {**doc["disbursement"], "at": None, "reference": None}
    return out


def test_the_workflow_routes_are_lean_and_served_first(funds_app: FastAPI) -> None:
    lean = lean_routes(funds_app)
    assert funds_app.router.routes[: len(lean)] == lean
    assert [route.endpoint for route in lean] == list(LEAN_ENDPOINTS)


async def test_request_approve_and_disburse_take_the_lean_path(
    api: httpx.AsyncClient,
    funds_app: FastAPI,
    registry_bus: EventBus,
    people: People,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    handed = handed_to_fastapi(router, LEAN_ENDPOINTS, monkeypatch)
    fund = await make_fund(api, people)
    [child] = await add_children(funds_app, registry_bus)
    grant = await make_grant(api, people, fund["id"], child)
    path = f"/v1/funds/grants/{grant['id']}"
    approved = await api.post(f"{path}/approve", headers=people.approver)
    assert approved.status_code == 200, approved.text
    paid = await api.post(
        f"{path}/disburse",
        json={"method": "cash", "reference": f"r-{uuid.uuid4().hex[:8]}"},
        headers=people.disburser,
    )
    assert paid.status_code == 200, paid.text
    assert handed == []
    refused = await api.post(f"{path}/disburse", json={"method": "x"}, headers=people.disburser)
    assert refused.status_code == 422
    assert handed == [f"POST {path}/disburse"]


async def test_a_grant_requested_approved_and_paid_answers_alike(
    api: httpx.AsyncClient,
    fastapi_api: httpx.AsyncClient,
    funds_app: FastAPI,
    registry_bus: EventBus,
    people: People,
) -> None:
    fund = await make_fund(api, people)
    children = await add_children(funds_app, registry_bus, 2)
    docs: list[list[dict[str, Any]]] = []
    answers: list[list[httpx.Response]] = []
    for client, child in zip((api, fastapi_api), children, strict=True):
        created = await client.post(
            "/v1/funds/grants", json=grant_body(fund["id"], child), headers=people.requester
        )
        assert created.status_code == 201, created.text
        path = f"/v1/funds/grants/{created.json()['id']}"
        assert created.headers["location"] == path
        approved = await client.post(f"{path}/approve", json={}, headers=people.approver)
        reference = f"r-{uuid.uuid4().hex[:8]}"
        paid = await client.post(
            f"{path}/disburse",
            json={"method": "mobile_money", "reference": reference},
            headers=people.disburser,
        )
        steps = [created, approved, paid]
        assert [r.status_code for r in steps] == [201, 200, 200], paid.text
        docs.append([shape(r.json()) for r in steps])
        answers.append(steps)
    assert docs[0] == docs[1]
    for lean, fastapi in zip(answers[0], answers[1], strict=True):
        assert (lean.headers["content-type"], lean.headers["etag"]) == (
            fastapi.headers["content-type"],
            fastapi.headers["etag"],
        )
    after = await api.get(f"/v1/funds/funds/{fund['id']}", headers=people.manager)
    assert after.json()["disbursed_khr"] == 2 * grant_body(fund["id"], "")["amount_khr"]


async def test_refused_steps_answer_alike(
    api: httpx.AsyncClient,
    fastapi_api: httpx.AsyncClient,
    funds_app: FastAPI,
    registry_bus: EventBus,
    people: People,
) -> None:
    fund = await make_fund(api, people, budget_khr=150_000)
    first, second = await add_children(funds_app, registry_bus, 2)
    costly = await make_grant(api, people, fund["id"], first, amount_khr=100_000)
    approved = await api.post(f"/v1/funds/grants/{costly['id']}/approve", headers=people.approver)
    assert approved.status_code == 200, approved.text
    grant = await make_grant(api, people, fund["id"], second, amount_khr=100_000)
    path = f"/v1/funds/grants/{grant['id']}"
    json_text = {**people.approver, "Content-Type": "application/json"}
    cases: list[tuple[str, dict[str, Any], int]] = [
        (f"{path}/approve", {}, 401),
        (f"{path}/approve", {"headers": people.disburser}, 403),
        (f"{path}/approve", {"headers": people.h("requester", areas=["120101"])}, 403),
        (f"{path}/approve", {"headers": {**people.approver, "If-Match": '"9"'}}, 412),
        (f"{path}/approve", {"headers": people.approver, "json": {"ok": True}}, 422),
        (f"{path}/approve", {"headers": json_text, "content": "{"}, 422),
        (f"{path}/approve", {"headers": people.approver}, 409),  # 50,000 riel left
        (f"{path}/disburse", {"headers": people.disburser}, 422),
        (f"{path}/disburse", {"headers": people.disburser, "json": {"method": "cash"}}, 422),
        (
            f"{path}/disburse",
            {"headers": people.disburser, "json": {"method": "cash", "reference": "r-1"}},
            409,
        ),
        ("/v1/funds/grants/not-an-id/approve", {"headers": people.approver}, 404),
        (f"/v1/funds/grants/{uuid.uuid4()}/approve", {"headers": people.approver}, 404),
        ("/v1/funds/grants", {"headers": people.requester, "json": {"child_id": "x"}}, 422),
        ("/v1/funds/grants", {"json": grant_body(fund["id"], second)}, 401),
        (
            "/v1/funds/grants",
            {"headers": people.requester, "json": grant_body(fund["id"], second)},
            409,  # the child already has an open grant of this category
        ),
    ]
    for target, request, status in cases:
        lean = await api.post(target, **request)
        fastapi = await fastapi_api.post(target, **request)
        assert lean.status_code == status, (target, request, lean.text)
        assert_same_answer(lean, fastapi, (target, request))
    after = await api.get(path, headers=people.approver)
    assert (after.json()["status"], after.json()["approvals"]) == ("requested", [])
