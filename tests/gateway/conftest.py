"""Fixtures of the gateway tests: a migrated database, the app, a tiny upstream, and helpers."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict

from deploy.local.infra import free_port
from gateway.app import create_app
from gateway.kek import new_kek
from gateway.settings import GatewaySettings

ADMIN_SECRET = "test-admin-" + secrets.token_urlsafe(24)
KEK = new_kek()
CLIENT_ADDRESS = "203.0.113.7"
ALL_READ = ["registry:read", "referrals:read", "funds:read", "indicators:read"]


# ---------------------------------------------------------------- a tiny upstream "registry"


class Thing(BaseModel):
    """A body model, so the upstream's OpenAPI has a component to merge."""

    model_config = ConfigDict(extra="forbid")
    label: str


@dataclass
class Upstream:
    url: str
    seen: list[dict[str, Any]] = field(default_factory=list)


def upstream_app(seen: list[dict[str, Any]]) -> FastAPI:
    """What a service looks like from the gateway: routes at the full public path."""
    app = FastAPI(title="fake registry")

    @app.post("/v1/registry/things", status_code=201)
    async def create_thing(thing: Thing) -> dict[str, str]:
        return {"label": thing.label}

    @app.get("/v1/registry/slow")
    async def slow() -> dict[str, str]:
        await asyncio.sleep(3)
        return {"late": "yes"}

    @app.get("/v1/registry/big")
    async def big() -> Response:
        return Response(b"x" * (3 * 1024 * 1024 + 7), media_type="application/octet-stream")

    @app.get("/v1/registry/stream")
    async def stream() -> StreamingResponse:
        async def parts() -> AsyncIterator[bytes]:
            for i in range(50):
                yield f"line {i}\n".encode()

        return StreamingResponse(parts(), media_type="text/plain")

    @app.get("/internal/debug")
    async def internal() -> dict[str, str]:
        return {"internal": "yes"}

    async def echo(rest: str, request: Request) -> Response:
        body = await request.body()
        record = {
            "method": request.method,
            "path": request.url.path,
            "raw_path": request.scope.get("raw_path", b"").decode("latin-1"),
            "query": request.url.query,
            "headers": [
                [k.decode("latin-1"), v.decode("latin-1")] for k, v in request.scope["headers"]
            ],
            "body": body.decode("latin-1"),
        }
        seen.append(record)
        status = int(request.query_params.get("status", "200"))
        return JSONResponse(
            record,
            status_code=status,
            headers={
                "ETag": '"7"',
                "X-Upstream": "fake-registry",
                "Set-Cookie": "upstream=1; Path=/",
                "Cache-Control": "no-cache",
            },
        )

    for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        app.add_api_route(
            "/v1/registry/echo/{rest:path}", echo, methods=[method], name=f"echo_{method.lower()}"
        )
    return app


@asynccontextmanager
async def serve(app: FastAPI, port: int) -> AsyncIterator[uvicorn.Server]:
    """Serve an ASGI app on a loopback port inside this event loop."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="off"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield server
    finally:
        server.should_exit = True
        await task


@pytest.fixture(scope="session")
async def upstream() -> AsyncIterator[Upstream]:
    seen: list[dict[str, Any]] = []
    port = free_port()
    async with serve(upstream_app(seen), port):
        yield Upstream(f"http://127.0.0.1:{port}", seen)


# ---------------------------------------------------------------- the gateway


@pytest.fixture(scope="session")
def gateway_db(pg_url: str, repo_root: Path) -> str:
    """The session database with the `gateway` schema migrated by `python -m gateway migrate`."""
    env = {**os.environ, "DATABASE_URL": pg_url, "KOMAR_LOG_JSON": "false"}
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "migrate"],
        cwd=repo_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return pg_url


@pytest.fixture(scope="session")
def dead_url() -> str:
    """A loopback URL nothing listens on."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(scope="session")
def gateway_settings(
    gateway_db: str, upstream: Upstream, dead_url: str, tmp_path_factory: pytest.TempPathFactory
) -> GatewaySettings:
    return make_settings(
        database_url=gateway_db,
        data_dir=tmp_path_factory.mktemp("gateway-data"),
        registry_url=upstream.url,
        referrals_url=dead_url,
        funds_url=dead_url,
        indicators_url=dead_url,
        webhooks_url=dead_url,
        casework_url=dead_url,
    )


def make_settings(**overrides: Any) -> GatewaySettings:
    """Test settings: fast refreshes, a short upstream timeout, no login throttle by default."""
    values: dict[str, Any] = {
        "admin_secret": ADMIN_SECRET,
        "kek": KEK,
        "log_json": False,
        "upstream_timeout_s": 1.0,
        "principal_refresh_interval_s": 0.5,
        "key_refresh_interval_s": 1.0,
        "login_failures_per_minute": 100_000,
        "login_failure_burst": 100_000,
        "client_failures_per_minute": 100_000,
        "client_failure_burst": 100_000,
        "openapi_cache_s": 0.5,
        "db_pool_size": 5,
        "db_max_overflow": 5,
    }
    values.update(overrides)
    return GatewaySettings(**values)


@asynccontextmanager
async def running(settings: GatewaySettings) -> AsyncIterator[FastAPI]:
    """A gateway app with its lifespan running (another replica, when called again)."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


def client_for(app: FastAPI, address: str = CLIENT_ADDRESS) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=(address, 50_000)),
        base_url="http://gateway.test",
        timeout=30.0,
    )


@pytest.fixture(scope="session")
async def gateway_app(gateway_settings: GatewaySettings) -> AsyncIterator[FastAPI]:
    async with running(gateway_settings) as app:
        yield app


@pytest.fixture(scope="session")
async def http(gateway_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(gateway_app) as client:
        yield client


# ---------------------------------------------------------------- helpers


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


class Gateway:
    """Test helpers over the gateway's HTTP API."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self._admin_token: str | None = None

    async def token(
        self,
        client_id: str,
        secret: str,
        scope: str | None = None,
        *,
        http: httpx.AsyncClient | None = None,
    ) -> str:
        data = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
        if scope is not None:
            data["scope"] = scope
        response = await (http or self.http).post("/oauth/token", data=data)
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token

    async def user_token(self, username: str, password: str) -> str:
        response = await self.http.post(
            "/oauth/token",
            data={"grant_type": "password", "username": username, "password": password},
        )
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token

    async def admin_token(self) -> str:
        if self._admin_token is None:
            self._admin_token = await self.token("admin", ADMIN_SECRET)
        return self._admin_token

    async def admin_headers(self) -> dict[str, str]:
        return bearer(await self.admin_token())

    async def create_client(self, **fields: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": unique("client"),
            "org": unique("org"),
            "org_type": "partner",
            "scopes": ALL_READ,
            "areas": ["12"],
        }
        body.update(fields)
        response = await self.http.post(
            "/v1/admin/clients", json=body, headers=await self.admin_headers()
        )
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    async def client_token(
        self, scope: str | None = None, **fields: Any
    ) -> tuple[dict[str, Any], str]:
        client = await self.create_client(**fields)
        return client, await self.token(client["client_id"], client["client_secret"], scope)

    async def create_user(self, password: str | None = None, **fields: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": "Test User",
            "username": unique("user"),
            "password": password or "correct horse battery staple",
            "org": unique("org"),
            "org_type": "government",
            "scopes": ["registry:read", "registry:write"],
            "areas": ["1201"],
        }
        body.update(fields)
        response = await self.http.post(
            "/v1/admin/users", json=body, headers=await self.admin_headers()
        )
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        created["password"] = body["password"]
        return created


@pytest.fixture(scope="session")
def gw(http: httpx.AsyncClient) -> Gateway:
    return Gateway(http)
