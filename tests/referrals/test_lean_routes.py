"""The referral workflow's lean routes answer exactly as the FastAPI routes they are derived
from: the same records, the same refusals, word for word."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.referrals.api import LEAN_ENDPOINTS, router
from tests.referrals.conftest import World
from tests.support import assert_same_answer, fastapi_client, handed_to_fastapi, lean_routes

# What differs between two referrals made alike: their identity, child and times.
OWN_FIELDS = ("id", "child_id", "created_at", "updated_at", "due_at", "accepted_at")


@pytest.fixture
async def fastapi_api(referrals_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The referrals routes on the same runtime without their LeanRoutes."""
    async with fastapi_client(referrals_app, router, "referrals") as client:
        yield client


def shape(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in OWN_FIELDS}


def test_the_workflow_routes_are_lean_and_served_first(referrals_app: FastAPI) -> None:
    lean = lean_routes(referrals_app)
    assert referrals_app.router.routes[: len(lean)] == lean
    assert [route.endpoint for route in lean] == list(LEAN_ENDPOINTS)


async def test_create_and_accept_take_the_lean_path(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    handed = handed_to_fastapi(router, LEAN_ENDPOINTS, monkeypatch)
    provider = await world.provider([world.place.commune])
    referral = (await world.refer(await world.child())).json()
    accept = f"/v1/referrals/{referral['id']}/accept"
    staff = world.provider_staff(provider)
    refused = await world.api.post(accept, json={"note": "x"}, headers=staff)
    assert refused.status_code == 422
    assert handed == [f"POST {accept}"]  # an invalid body: FastAPI answers
    accepted = await world.api.post(accept, headers=staff)  # no body: the optional one's None
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["status"] == "accepted"
    assert handed == [f"POST {accept}"]


async def test_a_referral_made_and_accepted_answers_alike(
    world: World, fastapi_api: httpx.AsyncClient
) -> None:
    provider = await world.provider([world.place.commune], capacity=5)
    staff = world.provider_staff(provider, sub="provider-staff")
    referrer = world.headers(sub="referrer")
    docs: list[list[dict[str, Any]]] = []
    answers = []
    for client in (world.api, fastapi_api):
        body = {"child_id": await world.child(), "service_type": "health", "urgency": "high"}
        created = await client.post(
            "/v1/referrals", json={**body, "reason": "care"}, headers=referrer
        )
        assert created.status_code == 201, created.text
        doc = created.json()
        assert created.headers["location"] == f"/v1/referrals/{doc['id']}"
        accepted = await client.post(f"/v1/referrals/{doc['id']}/accept", json={}, headers=staff)
        assert accepted.status_code == 200, accepted.text
        docs.append([shape(doc), shape(accepted.json())])
        answers.append((created, accepted))
    assert docs[0] == docs[1]
    for lean, fastapi in zip(answers[0], answers[1], strict=True):
        assert (lean.headers["content-type"], lean.headers["etag"]) == (
            fastapi.headers["content-type"],
            fastapi.headers["etag"],
        )


async def test_refused_steps_answer_alike(world: World, fastapi_api: httpx.AsyncClient) -> None:
    provider = await world.provider([world.place.commune])
    referral = (await world.refer(await world.child())).json()
    accept = f"/v1/referrals/{referral['id']}/accept"
    staff = world.provider_staff(provider)
    cases: list[tuple[str, dict[str, Any], int]] = [
        (accept, {}, 401),
        (accept, {"headers": world.provider_staff(provider, scope="referrals:read")}, 403),
        (accept, {"headers": world.headers()}, 403),  # not the provider's organisation
        (accept, {"headers": {**staff, "If-Match": '"7"'}}, 412),
        (accept, {"headers": staff, "json": {"note": "x"}}, 422),
        (accept, {"headers": staff, "json": [1]}, 422),
        (accept, {"headers": {**staff, "Content-Type": "text/plain"}, "content": "{}"}, 422),
        (accept, {"headers": {**staff, "Content-Type": "application/json"}, "content": "{"}, 422),
        ("/v1/referrals/not-an-id/accept", {"headers": staff}, 404),
        (f"/v1/referrals/{provider['id']}/accept", {"headers": staff}, 404),
        ("/v1/referrals", {"headers": world.headers(), "json": {"child_id": "x"}}, 422),
        ("/v1/referrals", {"headers": world.headers()}, 422),
        ("/v1/referrals", {"json": {"child_id": referral["child_id"]}}, 401),
        (f"/v1/referrals/{referral['id']}/decline", {"headers": staff}, 422),
        (f"/v1/referrals/{referral['id']}/complete", {"headers": staff, "json": {}}, 422),
    ]
    for path, request, status in cases:
        lean = await world.api.post(path, **request)
        fastapi = await fastapi_api.post(path, **request)
        assert lean.status_code == status, (path, request, lean.text)
        assert_same_answer(lean, fastapi)
    assert (await world.get_referral(referral["id"]))["status"] == "pending"
