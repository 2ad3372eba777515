"""A visit's lean route answers exactly as the FastAPI route it is derived from: the same
record, the same refusals, word for word."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.casework.api import LEAN_ENDPOINTS, router
from tests.casework.conftest import World, today
from tests.support import assert_same_answer, fastapi_client, handed_to_fastapi, lean_routes

# What differs between two visits recorded alike: their identity, child and times.
OWN_FIELDS = ("id", "child_id", "created_at", "updated_at")


@pytest.fixture
async def fastapi_api(casework_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The casework routes on the same runtime without their LeanRoutes."""
    async with fastapi_client(casework_app, router, "casework") as client:
        yield client


def test_the_visit_route_is_lean_and_served_first(casework_app: FastAPI) -> None:
    lean = lean_routes(casework_app)
    assert casework_app.router.routes[: len(lean)] == lean
    assert [route.endpoint for route in lean] == list(LEAN_ENDPOINTS)


async def test_a_visit_takes_the_lean_path(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    handed = handed_to_fastapi(router, LEAN_ENDPOINTS, monkeypatch)
    child = await world.child()
    await world.visit(child, kind="teleport", expect=422)
    assert handed == ["POST /v1/casework/visits"]  # an invalid body: FastAPI answers
    await world.visit(child)
    assert handed == ["POST /v1/casework/visits"]


async def test_a_visit_answers_alike(world: World, fastapi_api: httpx.AsyncClient) -> None:
    worker = await world.worker()
    staff = world.headers()
    docs: list[dict[str, Any]] = []
    answers = []
    for client in (world.api, fastapi_api):
        child = await world.child()
        await world.assign(child, worker["id"])
        body = {
            "child_id": child,
            "date": (today() - timedelta(days=1)).isoformat(),
            "kind": "home_visit",
            "outcome": "met",
            "notes": "ate well",
            "next_visit_on": (today() + timedelta(days=14)).isoformat(),
        }
        r = await client.post("/v1/casework/visits", json=body, headers=staff)
        assert r.status_code == 201, r.text
        doc = r.json()
        assert r.headers["location"] == f"/v1/casework/visits/{doc['id']}"
        assert doc["worker_id"] == worker["id"]
        docs.append({k: v for k, v in doc.items() if k not in OWN_FIELDS})
        answers.append(r)
    assert docs[0] == docs[1]
    lean, fastapi = answers
    assert (lean.headers["content-type"], lean.headers["etag"]) == (
        fastapi.headers["content-type"],
        fastapi.headers["etag"],
    )


async def test_refused_visits_answer_alike(world: World, fastapi_api: httpx.AsyncClient) -> None:
    child = await world.child()
    path = "/v1/casework/visits"
    good = {"child_id": child, "date": today().isoformat(), "kind": "home_visit", "outcome": "met"}
    staff = world.headers()
    cases: list[tuple[dict[str, Any], int]] = [
        ({"json": good}, 401),
        ({"headers": world.headers(scope="casework:read"), "json": good}, 403),
        ({"headers": world.partner("another-ngo"), "json": good}, 404),
        ({"headers": world.headers(areas=[world.place.other_commune]), "json": good}, 404),
        ({"headers": staff, "json": {**good, "child_id": "not-an-id"}}, 422),
        ({"headers": staff, "json": {**good, "date": "2999-01-01"}}, 422),
        ({"headers": staff, "json": [1]}, 422),
        ({"headers": staff}, 422),
        ({"headers": {**staff, "Content-Type": "text/plain"}, "content": "{}"}, 422),
        ({"headers": {**staff, "Content-Type": "application/json"}, "content": "{"}, 422),
    ]
    for request, status in cases:
        lean = await world.api.post(path, **request)
        fastapi = await fastapi_api.post(path, **request)
        assert lean.status_code == status, (request, lean.text)
        assert_same_answer(lean, fastapi, request)
    assert (await world.case(child))["last_visit"] is None
