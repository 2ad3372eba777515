"""Every casework answer holds strictly to the model its route declares (no undeclared
key, no missing one, right types), as tests/test_response_shapes.py checks the others."""

from __future__ import annotations

import types
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any, Union, get_args, get_origin

import httpx
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel
from starlette.routing import compile_path

from tests.casework.conftest import GOV_ORG, World, projected, publish, reintegration, today, until

# ---------------------------------------------------------------- the check (as
# tests/test_response_shapes.py does it, without importing the other services' test helpers)


def _routes(app: FastAPI) -> Iterator[tuple[str, str, APIRoute]]:
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute) and context.path is not None:
            for method in sorted(context.methods or ()):
                yield method, context.path, route


def _model(route: APIRoute) -> type[BaseModel] | None:
    model = route.response_model
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _check_keys(annotation: Any, value: Any, where: str) -> None:
    """Fail where `value` has a key the declared type does not, or lacks a required one."""
    origin = get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        assert isinstance(value, dict), f"{where}: {value!r} is not an object"
        fields = annotation.model_fields
        allowed = set(fields)
        required = {n for n, f in fields.items() if f.is_required()}
        assert set(value) <= allowed, f"{where}: undeclared {sorted(set(value) - allowed)}"
        assert required <= set(value), f"{where}: missing {sorted(required - set(value))}"
        for name, field in fields.items():
            if name in value:
                _check_keys(field.annotation, value[name], f"{where}.{name}")
    elif origin in (Union, types.UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        if value is not None and len(members) == 1:
            _check_keys(members[0], value, where)
    elif origin is list and isinstance(value, list):
        for i, element in enumerate(value):
            _check_keys(get_args(annotation)[0], element, f"{where}[{i}]")


class Checked:
    """A client whose every answer is checked against the model its route declares."""

    def __init__(self, app: FastAPI, api: httpx.AsyncClient) -> None:
        self.app, self.api = app, api
        self.checked: set[tuple[str, str]] = set()

    async def call(self, method: str, url: str, expect: int = 200, **kw: Any) -> Any:
        response = await self.api.request(method, url, **kw)
        assert response.status_code == expect, response.text
        answering = [
            (path, route)
            for m, path, route in _routes(self.app)
            if m == method and compile_path(path)[0].fullmatch(response.request.url.path)
        ]
        assert answering, f"no route answers {method} {url}"
        path, route = answering[0]
        model = _model(route)
        assert model is not None, f"{method} {path} declares no response model"
        _check_keys(model, response.json(), model.__name__)
        model.model_validate_json(response.content, strict=True)
        self.checked.add((method, path))
        return response.json()


def modelled_routes(app: FastAPI) -> set[tuple[str, str]]:
    return {(m, p) for m, p, r in _routes(app) if p.startswith("/v1/") and _model(r)}


async def test_casework_answers_match_their_models(world: World, casework_app: FastAPI) -> None:
    checked = Checked(casework_app, world.api)
    h = world.headers()
    child = await world.child(care_setting="residential_institution")
    await publish(
        world.js,
        reintegration(
            today() - timedelta(days=40),
            child_id=child,
            commune=world.place.commune,
            village=world.place.village,
            owner_org=GOV_ORG,
            version=2,
        ),
    )
    await projected(world.db, child, 2)
    from tests.casework.conftest import valid_worker

    worker = await checked.call(
        "POST", "/v1/casework/workers", 201, json=valid_worker(world.place), headers=h
    )
    wurl = f"/v1/casework/workers/{worker['id']}"
    await checked.call("GET", wurl, headers=h)
    await checked.call("GET", "/v1/casework/workers?limit=1", headers=h)
    await checked.call(
        "PATCH",
        wurl,
        content=b'{"max_caseload": 2}',
        headers={**h, "Content-Type": "application/merge-patch+json", "If-Match": '"1"'},
    )
    await checked.call("GET", f"{wurl}/history", headers=h)
    body = {"child_id": child, "worker_id": worker["id"]}
    assignment = await checked.call("POST", "/v1/casework/assignments", 201, json=body, headers=h)
    await checked.call("GET", f"/v1/casework/assignments/{assignment['id']}", headers=h)
    await checked.call("GET", f"/v1/casework/assignments?child_id={child}", headers=h)
    plan = {"goals": [{"domain": "safety", "action": "x", "due_on": "2027-01-01"}]}
    purl = f"/v1/casework/children/{child}/plan"
    await checked.call("PUT", purl, 201, json=plan, headers=h)
    await checked.call("GET", purl, headers=h)
    visit = {
        "child_id": child,
        "date": today().isoformat(),
        "kind": "home_visit",
        "outcome": "met",
        "notes": "fine",
        "next_visit_on": (today() + timedelta(days=7)).isoformat(),
    }
    made = await checked.call("POST", "/v1/casework/visits", 201, json=visit, headers=h)
    await checked.call("GET", f"/v1/casework/visits/{made['id']}", headers=h)
    await checked.call("GET", f"/v1/casework/visits?child_id={child}", headers=h)
    await checked.call("GET", "/v1/casework/visits/due", headers=h)

    async def with_followups() -> bool:
        case = await checked.call("GET", f"/v1/casework/children/{child}", headers=h)
        return bool(case["followups"]) and case["plan"] is not None

    await until(with_followups)
    await checked.call("GET", "/v1/casework/changes?limit=5", headers=h)
    assert uuid.UUID(made["id"])
    assert checked.checked == modelled_routes(casework_app)
