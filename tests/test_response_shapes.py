"""Every answer agrees with the response model its route declares.

Routes answer with dicts built by hand (`child_out`, `fund_out`, `grant_out`, …) for speed;
the OpenAPI document shows the routes' `response_model`s. This test holds the two together:
every JSON route of every service and of the gateway declares a model (a few documented
exceptions aside), and the real answers of each service, driven in-process through create,
read, list and each action, match their route's model strictly: no key the model does not
declare, every required key present, every value of the declared type.
"""

from __future__ import annotations

import asyncio
import re
import types
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Union, get_args, get_origin

import httpx
import nats
import pytest
from aiohttp import web
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel
from starlette.routing import compile_path

from deploy.local.infra import EmbeddedNats, create_database, drop_database, free_port
from gateway.app import create_app as create_gateway_app
from libs.common.settings import Settings
from services.casework.app import create_app as create_casework_app
from services.funds.app import create_app as create_funds_app
from services.indicators.app import create_app as create_indicators_app
from services.referrals.app import ReferralsSettings
from services.referrals.app import create_app as create_referrals_app
from services.registry.app import create_app as create_registry_app
from services.webhooks.app import create_app as create_webhooks_app
from services.webhooks.runtime import WebhooksSettings
from tests.funds.conftest import People, add_children, fund_body, grant_body, producer_bus
from tests.gateway.conftest import ADMIN_SECRET, bearer, client_for, make_settings, running
from tests.indicators.conftest import caught_up
from tests.indicators.conftest import publish as publish_events
from tests.indicators.scenario import scenario_events
from tests.referrals.conftest import World, fresh_place
from tests.registry.conftest import child_body
from tests.support import SigningKeys, client, migrate, running_service, service_settings

# Routes that answer without a response model of their own, and why.
UNMODELLED_PATHS: dict[str, str] = {
    "/healthz": "liveness probe for the orchestrator, not part of the API",
    "/readyz": "readiness probe for the orchestrator, not part of the API",
    "/metrics": "Prometheus text exposition",
    "/openapi.json": "the gateway's merged OpenAPI document",
    "/docs": "the OpenAPI document's HTML viewer",
    "/docs/oauth2-redirect": "the HTML viewer's OAuth redirect page",
    "/.well-known/jwks.json": "a JSON Web Key Set (RFC 7517)",
    "/.well-known/oauth-authorization-server": "OAuth server metadata (RFC 8414)",
    "/oauth/revoke": "token revocation (RFC 7009): an empty 200, whether the token was known",
    **dict.fromkeys(
        (
            "/v1/indicators/dataValueSets",
            "/v1/indicators/dataValueSets.json",
            "/v1/indicators/dataValueSets.csv",
            "/v1/indicators/api/dataValueSets",
            "/v1/indicators/api/dataValueSets.json",
            "/v1/indicators/api/dataValueSets.csv",
        ),
        "DHIS2's dataValueSets format, in JSON, CSV or ADX as asked",
    ),
    "/v1/indicators/catalog": "the indicator catalogue, as documented in docs/",
}


def _settings() -> Settings:
    return Settings(database_url="postgresql://unused/unused", nats_url="nats://unused:4222")


def every_app() -> Iterator[FastAPI]:
    """Each service's app and the gateway's, built but not started."""
    for create_app in (
        create_registry_app,
        create_referrals_app,
        create_funds_app,
        create_indicators_app,
        create_webhooks_app,
        create_casework_app,
    ):
        yield create_app(_settings())
    yield create_gateway_app(make_settings())


def test_every_json_route_declares_its_answer() -> None:
    undeclared = [
        (method, path)
        for app in every_app()
        for method, path, route in api_routes(app)
        if declared_model(route) is None
        and path not in UNMODELLED_PATHS
        and route.status_code != 204  # no content: no JSON to declare
    ]
    assert undeclared == []


# ---------------------------------------------------------------- strict validation


def _keys_of(model: type[BaseModel]) -> tuple[set[str], set[str]]:
    """The keys a model's JSON form may have, and those it must have."""
    allowed = {f.alias or name for name, f in model.model_fields.items()}
    required = {f.alias or name for name, f in model.model_fields.items() if f.is_required()}
    return allowed, required


def check_keys(annotation: Any, value: Any, where: str) -> None:
    """Fail where `value` has a key the declared type does not, or lacks a required one."""
    origin = get_origin(annotation)
    if origin is Annotated:
        check_keys(get_args(annotation)[0], value, where)
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
        assert isinstance(value, dict), f"{where}: {value!r} is not an object"
        allowed, required = _keys_of(annotation)
        assert set(value) <= allowed, f"{where}: undeclared {sorted(set(value) - allowed)}"
        assert required <= set(value), f"{where}: missing {sorted(required - set(value))}"
        for name, field in annotation.model_fields.items():
            key = field.alias or name
            if key in value:
                check_keys(field.annotation, value[key], f"{where}.{key}")
    elif origin in (Union, types.UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        if value is not None and len(members) == 1:
            check_keys(members[0], value, where)
    elif origin in (list, tuple, set, frozenset) and isinstance(value, list):
        item = get_args(annotation)[0] if get_args(annotation) else Any
        for i, element in enumerate(value):
            check_keys(item, element, f"{where}[{i}]")
    elif origin is dict and isinstance(value, dict):
        item = get_args(annotation)[1]
        for key, element in value.items():
            check_keys(item, element, f"{where}.{key}")


class _Part(BaseModel):
    name: str


class _Whole(BaseModel):
    parts: list[_Part] | None
    note: str | None = None


@pytest.mark.parametrize(
    ("answer", "complaint"),
    [
        ({"parts": [{"name": "a", "colour": "red"}]}, "_Whole.parts[0]: undeclared ['colour']"),
        ({"parts": [{}]}, "_Whole.parts[0]: missing ['name']"),
        ({"note": "n"}, "_Whole: missing ['parts']"),
        ({"parts": None, "extra": 1}, "_Whole: undeclared ['extra']"),
    ],
)
def test_the_check_refuses_keys_the_model_does_not_declare_and_wants_those_it_requires(
    answer: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(AssertionError, match=re.escape(complaint)):
        check_keys(_Whole, answer, "_Whole")
    check_keys(_Whole, {"parts": [{"name": "a"}], "note": None}, "_Whole")


def api_routes(app: FastAPI) -> Iterator[tuple[str, str, APIRoute]]:
    """Each (method, path, route) the app answers through FastAPI, included routers too."""
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute) and context.path is not None:
            for method in sorted(context.methods or ()):
                yield method, context.path, route


def declared_model(route: APIRoute) -> type[BaseModel] | None:
    """The model a route declares for its answer (a bare `dict` declares no shape)."""
    model = route.response_model
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def route_of(app: FastAPI, request: httpx.Request) -> tuple[str, APIRoute]:
    """The path and FastAPI route that answer a request (a lean route's twin included)."""
    for method, path, route in api_routes(app):
        if method == request.method and compile_path(path)[0].fullmatch(request.url.path):
            return path, route
    raise AssertionError(f"no route answers {request.method} {request.url.path}")


class Checked:
    """A client whose every answer is checked against the model its route declares."""

    def __init__(self, app: FastAPI, api: httpx.AsyncClient) -> None:
        self.app = app
        self.api = api
        self.checked: set[tuple[str, str]] = set()

    async def call(self, method: str, url: str, expect: int = 200, **kw: Any) -> Any:
        response = await self.api.request(method, url, **kw)
        assert response.status_code == expect, response.text
        path, route = route_of(self.app, response.request)
        model = declared_model(route)
        assert model is not None, f"{method} {path} declares no response model"
        body = response.json()
        check_keys(model, body, model.__name__)
        model.model_validate_json(response.content, strict=True)
        self.checked.add((method, path))
        return body


def modelled_routes(app: FastAPI, prefix: str) -> set[tuple[str, str]]:
    return {
        (method, path)
        for method, path, route in api_routes(app)
        if path.startswith(prefix) and declared_model(route) is not None
    }


# ---------------------------------------------------------------- the services' answers


@pytest.fixture(scope="module")
async def registry_app(pg_url: str, nats_url: str, keys: SigningKeys) -> AsyncIterator[FastAPI]:
    async with running_service(
        "services.registry", service_settings(pg_url, nats_url), keys
    ) as app:
        yield app


async def test_registry_answers_match_their_models(
    registry_app: FastAPI, keys: SigningKeys
) -> None:
    h = keys.headers(areas=["12"])
    external_ids = [{"system": "ngo-cms", "value": uuid.uuid4().hex[:8]}]
    async with client(registry_app, "registry") as api:
        checked = Checked(registry_app, api)
        child = await checked.call(
            "POST", "/v1/registry/children", 201, json=child_body(), headers=h
        )
        # Through the path that looks up external ids and answers the idempotency key too.
        await checked.call(
            "POST",
            "/v1/registry/children",
            201,
            json=child_body(external_ids=external_ids),
            headers={**h, "Idempotency-Key": uuid.uuid4().hex},
        )
        url = f"/v1/registry/children/{child['id']}"
        await checked.call("GET", url, headers=h)
        await checked.call("GET", "/v1/registry/children?limit=1", headers=h)
        await checked.call(
            "PATCH", url, json={"risk_level": "high"}, headers={**h, "If-Match": '"1"'}
        )
        await checked.call(
            "POST", f"{url}/close", json={"reason": "reunified with family"}, headers=h
        )
        await checked.call("POST", f"{url}/reopen", headers=h)
        await checked.call("GET", f"{url}/duplicates", headers=h)
        await checked.call("GET", f"{url}/history", headers=h)
        batch = [
            child_body(given_name="Dara"),
            child_body(external_ids=external_ids),
            child_body(birth_date="not a date"),
        ]
        await checked.call("POST", "/v1/registry/children:batch", json={"items": batch}, headers=h)
        auditor = keys.headers(areas=["12"], scope="registry:read admin")
        await checked.call(
            "GET", "/v1/registry/audit", params={"child_id": child["id"]}, headers=auditor
        )
        await checked.call("GET", "/v1/registry/audit/verify", headers=auditor)
        await checked.call("GET", "/v1/registry/changes", headers=h)
    assert checked.checked == modelled_routes(registry_app, "/v1/")


@pytest.fixture(scope="module")
async def referrals_app(pg_url: str, nats_url: str, keys: SigningKeys) -> AsyncIterator[FastAPI]:
    settings = service_settings(pg_url, nats_url, ReferralsSettings)
    async with running_service("services.referrals", settings, keys) as app:
        yield app


async def test_referrals_answers_match_their_models(
    referrals_app: FastAPI, keys: SigningKeys, nats_url: str
) -> None:
    nc = await nats.connect(nats_url)
    try:
        async with client(referrals_app, "referrals") as api:
            world = World(api, keys, nc.jetstream(), referrals_app.state.runtime.db, fresh_place())
            checked = Checked(referrals_app, api)
            h = world.headers()
            province = world.headers(areas=[world.place.province])
            provider_body = {
                "name": "Health centre",
                "org": f"ngo-{uuid.uuid4().hex[:8]}",
                "service_types": ["health"],
                "areas": [world.place.commune],
                "capacity": 10,
            }
            provider = await checked.call(
                "POST", "/v1/referrals/providers", 201, json=provider_body, headers=province
            )
            purl = f"/v1/referrals/providers/{provider['id']}"
            await checked.call("GET", purl, headers=h)
            await checked.call("GET", "/v1/referrals/providers?limit=1", headers=h)
            await checked.call(
                "PATCH", purl, json={"capacity": 12}, headers={**province, "If-Match": '"1"'}
            )
            staff = world.provider_staff(provider)
            referrals = []
            for _ in range(4):
                child_id = await world.child()
                body = {
                    "child_id": child_id,
                    "service_type": "health",
                    "urgency": "normal",
                    "reason": "needs care",
                }
                referrals.append(
                    await checked.call("POST", "/v1/referrals", 201, json=body, headers=h)
                )
            await checked.call("GET", f"/v1/referrals/{referrals[0]['id']}", headers=h)
            await checked.call("GET", "/v1/referrals?limit=1", headers=h)
            completed, declined, cancelled, _ = (f"/v1/referrals/{r['id']}" for r in referrals)
            await checked.call("POST", f"{completed}/accept", headers=staff)
            await checked.call(
                "POST",
                f"{completed}/complete",
                json={"outcome": {"code": "service_provided", "note": "seen twice"}},
                headers=staff,
            )
            await checked.call(
                "POST", f"{declined}/decline", json={"reason": "no beds"}, headers=staff
            )
            await checked.call(
                "POST", f"{cancelled}/cancel", json={"reason": "family moved"}, headers=h
            )
            await checked.call("POST", f"{purl}/deactivate", headers=province)
            await checked.call("GET", "/v1/referrals/changes", headers=h)
    finally:
        await nc.close()
    assert checked.checked == modelled_routes(referrals_app, "/v1/")


@pytest.fixture(scope="module")
async def funds_app(pg_url: str, nats_url: str, keys: SigningKeys) -> AsyncIterator[FastAPI]:
    async with running_service("services.funds", service_settings(pg_url, nats_url), keys) as app:
        yield app


async def test_funds_answers_match_their_models(
    funds_app: FastAPI, keys: SigningKeys, nats_url: str
) -> None:
    people = People(keys, uuid.uuid4().hex[:8])
    async with producer_bus(nats_url, "REGISTRY") as bus:
        children = await add_children(funds_app, bus, 3)
    async with client(funds_app, "funds") as api:
        checked = Checked(funds_app, api)
        fund = await checked.call(
            "POST", "/v1/funds/funds", 201, json=fund_body(), headers=people.manager
        )
        furl = f"/v1/funds/funds/{fund['id']}"
        await checked.call("GET", furl, headers=people.manager)
        await checked.call("GET", "/v1/funds/funds?limit=1", headers=people.manager)
        await checked.call(
            "POST",
            f"{furl}/top-ups",
            json={"amount_khr": 50_000, "reference": "T-1"},
            headers=people.manager,
        )
        paid, rejected, cancelled = [
            await checked.call(
                "POST",
                "/v1/funds/grants",
                201,
                json=grant_body(fund["id"], child),
                headers=people.requester,
            )
            for child in children
        ]
        material = grant_body(
            fund["id"],
            children[0],
            category="material_support",
            amount_khr=30_000,
            items=[{"description": "rice, 25 kg sack", "quantity": 2, "unit_cost_khr": 15_000}],
        )
        await checked.call("POST", "/v1/funds/grants", 201, json=material, headers=people.requester)
        gurl = f"/v1/funds/grants/{paid['id']}"
        await checked.call("POST", f"{gurl}/approve", headers=people.approver)
        await checked.call(
            "POST",
            f"{gurl}/disburse",
            json={"method": "cash", "reference": "R-0001"},
            headers=people.disburser,
        )
        await checked.call("GET", gurl, headers=people.manager)
        await checked.call(
            "POST", f"{gurl}/reverse", json={"reason": "paid twice by hand"}, headers=people.manager
        )
        await checked.call(
            "POST",
            f"/v1/funds/grants/{rejected['id']}/reject",
            json={"reason": "already supported by an NGO"},
            headers=people.approver,
        )
        await checked.call(
            "POST", f"/v1/funds/grants/{cancelled['id']}/cancel", headers=people.requester
        )
        await checked.call("GET", "/v1/funds/grants?limit=2", headers=people.manager)
        await checked.call("GET", f"{furl}/ledger", headers=people.manager)
        await checked.call(
            "GET", f"/v1/funds/reconciliation?fund_id={fund['id']}", headers=people.manager
        )
        await checked.call("GET", "/v1/funds/changes", headers=people.manager)
    assert checked.checked == modelled_routes(funds_app, "/v1/")


@pytest.fixture(scope="module")
async def gateway_app(
    pg_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[FastAPI]:
    """A gateway on a database of its own (it rotates the signing keys), with no upstreams."""
    name = f"komar_shapes_{uuid.uuid4().hex[:8]}"
    database_url = create_database(pg_url, name)
    try:
        await migrate(database_url, "gateway")
        settings = make_settings(
            database_url=database_url, data_dir=tmp_path_factory.mktemp("gateway-data")
        )
        async with running(settings) as app:
            yield app
    finally:
        drop_database(pg_url, name)


async def test_gateway_answers_match_their_models(gateway_app: FastAPI) -> None:
    async with client_for(gateway_app) as http:
        checked = Checked(gateway_app, http)
        token = await checked.call(
            "POST",
            "/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": "admin",
                "client_secret": ADMIN_SECRET,
            },
        )
        admin = bearer(token["access_token"])
        client_body = {
            "name": "Case management system",
            "org": "ngo-shapes",
            "org_type": "partner",
            "scopes": ["registry:read"],
            "areas": ["12"],
        }
        api_client = await checked.call(
            "POST", "/v1/admin/clients", 201, json=client_body, headers=admin
        )
        curl = f"/v1/admin/clients/{api_client['client_id']}"
        await checked.call("GET", curl, headers=admin)
        await checked.call("GET", "/v1/admin/clients?limit=1", headers=admin)
        await checked.call("POST", f"{curl}/disable", headers=admin)
        await checked.call("POST", f"{curl}/enable", headers=admin)
        user_body = {
            "name": "Sophea Keo",
            "username": f"sophea-{uuid.uuid4().hex[:6]}",
            "password": "correct horse battery staple",
            "org": "moswvy-shapes",
            "org_type": "government",
            "scopes": ["registry:read"],
            "areas": ["1201"],
        }
        user = await checked.call("POST", "/v1/admin/users", 201, json=user_body, headers=admin)
        uurl = f"/v1/admin/users/{user['user_id']}"
        await checked.call("GET", uurl, headers=admin)
        await checked.call("GET", "/v1/admin/users?limit=1", headers=admin)
        await checked.call("POST", f"{uurl}/disable", headers=admin)
        await checked.call("POST", f"{uurl}/enable", headers=admin)
        await checked.call("POST", f"{uurl}/unlock", headers=admin)
        signed_in = await checked.call(
            "POST",
            "/oauth/token",
            data={
                "grant_type": "password",
                "username": user_body["username"],
                "password": user_body["password"],
            },
        )
        own = bearer(signed_in["access_token"])
        await checked.call("GET", "/v1/me", headers=admin)  # a client's profile
        me = await http.get("/v1/me", headers=own)
        await checked.call(
            "PATCH",
            "/v1/me",
            json={"locale": "km"},
            headers={**own, "If-Match": me.headers["etag"]},
        )
        await checked.call(
            "POST", f"{uurl}/password", json={"password": "a pass phrase anew"}, headers=admin
        )
        await checked.call("GET", "/v1/admin/keys", headers=admin)
        await checked.call("POST", "/v1/admin/keys/rotate", headers=admin)
    assert checked.checked == modelled_routes(gateway_app, "/")


@pytest.fixture(scope="module")
async def indicators_app(
    pg_url: str, keys: SigningKeys, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[FastAPI]:
    """The indicators on a database and a broker of their own (a rebuild replays the
    streams: they hold only this module's events)."""
    broker = EmbeddedNats(tmp_path_factory.mktemp("shapes-nats"), port=free_port())
    broker.start()
    name = f"komar_shapes_{uuid.uuid4().hex[:8]}"
    database_url = create_database(pg_url, name)
    try:
        settings = service_settings(database_url, broker.url)
        async with running_service("services.indicators", settings, keys) as app:
            await publish_events(broker.url, scenario_events())
            yield app
    finally:
        drop_database(pg_url, name)
        broker.stop()


async def test_indicators_answers_match_their_models(
    indicators_app: FastAPI, keys: SigningKeys
) -> None:
    admin = keys.headers(areas=["KH"], scope="admin indicators:read")
    async with client(indicators_app, "indicators") as api:
        checked = Checked(indicators_app, api)
        await caught_up(api, admin)
        query = {"indicator": "CP_CASE_OPEN", "period": "2025Q1", "area": "12"}
        await checked.call("GET", "/v1/indicators/values", params=query, headers=admin)
        await checked.call(
            "GET", "/v1/indicators/values", params={**query, "level": "commune"}, headers=admin
        )
        await checked.call("POST", "/v1/indicators/rebuild?wait=true", headers=admin)
        await checked.call("GET", "/v1/indicators/status", headers=admin)
    assert checked.checked == modelled_routes(indicators_app, "/v1/")


@pytest.fixture(scope="module")
async def webhooks_app(pg_url: str, nats_url: str, keys: SigningKeys) -> AsyncIterator[FastAPI]:
    settings = service_settings(
        pg_url, nats_url, WebhooksSettings, webhooks_allow_loopback=True, webhooks_poll_s=0.05
    )
    async with running_service("services.webhooks", settings, keys) as app:
        yield app


@asynccontextmanager
async def receiver() -> AsyncIterator[str]:
    """A receiver on 127.0.0.1 that answers every delivery 204; its URL."""

    async def answer(request: web.Request) -> web.Response:
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/hook"  # type: ignore[union-attr]
    finally:
        await runner.cleanup()


async def test_webhooks_answers_match_their_models(
    webhooks_app: FastAPI, keys: SigningKeys
) -> None:
    h = keys.headers(
        org=f"ngo-{uuid.uuid4().hex[:8]}",
        org_type="partner",
        areas=["12"],
        scope="webhooks:manage registry:read",
    )
    async with receiver() as url, client(webhooks_app, "webhooks") as api:
        checked = Checked(webhooks_app, api)
        body = {"url": url, "event_types": ["registry.child.updated.v1"], "description": "CMS"}
        endpoint = await checked.call("POST", "/v1/webhooks", 201, json=body, headers=h)
        eurl = f"/v1/webhooks/{endpoint['id']}"
        await checked.call("GET", eurl, headers=h)
        await checked.call("GET", "/v1/webhooks?limit=1", headers=h)
        await checked.call(
            "PATCH", eurl, json={"description": "our CMS"}, headers={**h, "If-Match": '"1"'}
        )
        await checked.call("POST", f"{eurl}/rotate-secret", headers=h)
        test = await checked.call("POST", f"{eurl}/test", 202, headers=h)
        for _ in range(100):
            listed = await checked.call("GET", f"{eurl}/deliveries", headers=h)
            if listed["items"][0]["status"] == "delivered":
                break
            await asyncio.sleep(0.1)
        assert listed["items"][0]["attempts"][0]["status_code"] == 204
        await checked.call("POST", f"{eurl}/deliveries/{test['id']}/retry", 202, headers=h)
    assert checked.checked == modelled_routes(webhooks_app, "/v1/")
