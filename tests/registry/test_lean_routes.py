"""The lean hot routes answer exactly as the FastAPI routes they are derived from, and an
endpoint a lean route cannot call fails when the app is built."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute

from libs.common.app import service_app
from libs.common.auth import PrincipalDep
from libs.common.http import PageDep
from libs.common.runtime import RuntimeDep
from libs.common.settings import Settings
from services.registry.api import LEAN_ENDPOINTS, router
from services.registry.app import create_runtime
from tests.registry.conftest import child_body
from tests.support import (
    SigningKeys,
    assert_same_answer,
    handed_to_fastapi,
    lean_routes,
)

CHILDREN = "/v1/registry/children"
# What differs between two records created alike: their identity, number and times.
CREATED_FIELDS = ("id", "case_number", "created_at", "updated_at")


def partner(keys: SigningKeys, **token: Any) -> dict[str, str]:
    """A partner of its own: it sees only the children it registers (no duplicates)."""
    return keys.headers(org=f"ngo-{uuid.uuid4().hex[:8]}", org_type="partner", **token)


async def both(
    lean: httpx.AsyncClient, fastapi: httpx.AsyncClient, method: str, path: str, **request: Any
) -> tuple[httpx.Response, httpx.Response]:
    return (
        await lean.request(method, path, **request),
        await fastapi.request(method, path, **request),
    )


def test_lean_routes_are_derived_from_their_fastapi_routes(registry_app: FastAPI) -> None:
    lean = lean_routes(registry_app)
    declared = {
        route.endpoint: route
        for route in router.routes
        if isinstance(route, APIRoute) and route.endpoint in LEAN_ENDPOINTS
    }
    assert registry_app.router.routes[: len(lean)] == lean  # served ahead of every other
    assert [route.endpoint for route in lean] == list(LEAN_ENDPOINTS)
    for route in lean:
        assert (route.path, route.methods, route.name) == (
            declared[route.endpoint].path,
            declared[route.endpoint].methods,
            declared[route.endpoint].name,
        )


async def test_the_lean_routes_hand_only_what_they_do_not_serve_to_fastapi(
    api: httpx.AsyncClient, keys: SigningKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    handed = handed_to_fastapi(router, LEAN_ENDPOINTS, monkeypatch)
    headers = keys.headers()
    created = await api.post(CHILDREN, json=child_body(), headers=headers)
    assert created.status_code == 201, created.text
    assert (await api.get(created.headers["location"], headers=headers)).status_code == 200
    assert handed == []  # the hot path: no FastAPI routing or dependency solving
    refused = await api.post(CHILDREN, json=child_body(nickname="Sok"), headers=headers)
    assert refused.status_code == 422
    assert handed == [f"POST {CHILDREN}"]


async def test_registering_answers_alike_but_for_the_new_records_identity(
    api: httpx.AsyncClient, fastapi_api: httpx.AsyncClient, keys: SigningKeys
) -> None:
    for content_type in ("application/json", "application/json; charset=utf-8"):
        answers = [
            await client.post(
                CHILDREN,
                content=json.dumps(child_body()),
                headers={**partner(keys), "Content-Type": content_type},
            )
            for client in (api, fastapi_api)
        ]
        docs = []
        for answer in answers:
            assert answer.status_code == 201, answer.text
            doc = answer.json()
            assert answer.headers["location"] == f"{CHILDREN}/{doc['id']}"
            assert doc["owner_org"].startswith("ngo-")
            docs.append({k: v for k, v in doc.items() if k not in (*CREATED_FIELDS, "owner_org")})
        lean, fastapi = answers
        assert (lean.headers["content-type"], lean.headers["etag"]) == (
            fastapi.headers["content-type"],
            fastapi.headers["etag"],
        )
        assert docs[0] == docs[1]


def sent_as_json(content: str | bytes) -> dict[str, Any]:
    return {"content": content, "headers": {"Content-Type": "application/json"}}


INVALID_REGISTRATIONS = [
    pytest.param({"json": child_body(nickname="Sok")}, id="unknown field"),
    pytest.param({"json": child_body(given_name="So\x00kha")}, id="NUL in a name"),
    pytest.param({}, id="missing body"),
    pytest.param(sent_as_json(b""), id="empty body"),
    pytest.param(sent_as_json(b'{"given_name": '), id="malformed JSON"),
    pytest.param(sent_as_json(b'{"given_name": "\xff"}'), id="not UTF-8"),
    pytest.param(sent_as_json(b"[" * 100_000), id="nested too deep"),
    pytest.param(sent_as_json(json.dumps([child_body()])), id="a list"),
    pytest.param({"json": child_body(given_name=17, birth_date=20150412)}, id="wrong type"),
    pytest.param({"json": child_body(given_name="S" * 101)}, id="over-long string"),
    pytest.param({"content": json.dumps(child_body())}, id="no content type"),
    pytest.param(
        {"content": json.dumps(child_body()), "headers": {"Content-Type": "text/plain"}},
        id="not declared JSON",
    ),
]


@pytest.mark.parametrize("request_", INVALID_REGISTRATIONS)
async def test_an_invalid_registration_answers_alike(
    api: httpx.AsyncClient,
    fastapi_api: httpx.AsyncClient,
    keys: SigningKeys,
    request_: dict[str, Any],
) -> None:
    auth = keys.headers()
    request = {**request_, "headers": {**auth, **request_.get("headers", {})}}
    lean, fastapi = await both(api, fastapi_api, "POST", CHILDREN, **request)
    assert lean.status_code == 422, lean.text
    assert_same_answer(lean, fastapi)


@pytest.mark.parametrize(
    ("token", "body", "status"),
    [
        (None, child_body(), 401),
        ({"scope": "registry:read"}, child_body(), 403),
        ({"areas": ["02"]}, child_body(), 403),
        # FastAPI reads the body, then checks the token, then validates the body.
        (None, b'{"given_name": ', 422),
        (None, child_body(nickname="Sok"), 401),
        ({"scope": "registry:read"}, child_body(nickname="Sok"), 422),
    ],
    ids=[
        "no token",
        "wrong scope",
        "outside ones areas",
        "no token, malformed JSON",
        "no token, invalid",
        "wrong scope, invalid",
    ],
)
async def test_a_refused_registration_answers_alike(
    api: httpx.AsyncClient,
    fastapi_api: httpx.AsyncClient,
    keys: SigningKeys,
    token: dict[str, Any] | None,
    body: dict[str, Any] | bytes,
    status: int,
) -> None:
    sent = sent_as_json(body) if isinstance(body, bytes) else {"json": body, "headers": {}}
    if token is not None:
        sent["headers"].update(keys.headers(**token))
    lean, fastapi = await both(api, fastapi_api, "POST", CHILDREN, **sent)
    assert lean.status_code == status, lean.text
    assert_same_answer(lean, fastapi)


async def test_reads_answer_alike(
    api: httpx.AsyncClient, fastapi_api: httpx.AsyncClient, keys: SigningKeys
) -> None:
    tonle_basak = keys.headers(areas=["120101"])
    created = await api.post(CHILDREN, json=child_body(), headers=tonle_basak)
    assert created.status_code == 201, created.text
    child = created.headers["location"]
    cases = [
        (child, tonle_basak, 200),
        (f"{CHILDREN}/{uuid.uuid4()}", tonle_basak, 404),
        (f"{CHILDREN}/not-a-uuid", tonle_basak, 404),
        (child, keys.headers(areas=["120109"]), 404),  # another commune's child
        (child, {}, 401),
        (child, keys.headers(scope="registry:write"), 403),
    ]
    for path, headers, status in cases:
        lean, fastapi = await both(api, fastapi_api, "GET", path, headers=headers)
        assert lean.status_code == status, (path, lean.text)
        assert_same_answer(lean, fastapi, path)


# Endpoints a lean route cannot call, each with what the start-up error names.
wrong = APIRouter(prefix="/v1/wrong")


@wrong.get("/query")
async def takes_a_query_parameter(principal: PrincipalDep, limit: int = 10) -> Response:
    raise AssertionError("never called")


@wrong.get("/dependency")
async def takes_another_dependency(principal: PrincipalDep, page: PageDep) -> Response:
    raise AssertionError("never called")


@wrong.get("/typed/{child_id}")
async def takes_a_typed_path_parameter(child_id: uuid.UUID, rt: RuntimeDep) -> Response:
    raise AssertionError("never called")


@wrong.get("/untaken/{child_id}")
async def leaves_a_path_parameter_untaken(request: Request) -> Response:
    raise AssertionError("never called")


@wrong.get("/answer")
async def answers_a_dict(request: Request) -> dict[str, str]:
    raise AssertionError("never called")


async def not_routed(request: Request) -> Response:
    raise AssertionError("never called")


@pytest.mark.parametrize(
    ("endpoint", "named"),
    [
        (takes_a_query_parameter, "parameter 'limit'"),
        (takes_another_dependency, "the dependency page_params"),
        (takes_a_typed_path_parameter, "path parameter child_id must be plain str"),
        (leaves_a_path_parameter_untaken, "must take each path parameter"),
        (answers_a_dict, "must return a Response"),
        (not_routed, "not_routed serves 0 routes"),
    ],
)
def test_an_endpoint_a_lean_route_cannot_call_fails_when_the_app_is_built(
    endpoint: Any, named: str
) -> None:
    rt = create_runtime(Settings())
    with pytest.raises(TypeError, match=named):
        service_app(rt, title="wrong", description="", router=wrong, lean_endpoints=[endpoint])
