"""Test helpers shared by every test package: signing keys, principals, migrations, a
service's app started in-process with a client to call it, and the events on a stream."""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Collection, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
import structlog
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from sqlalchemy import MetaData, text
from starlette.types import Receive, Scope, Send

from deploy.local.infra import drop_database
from libs.common import jwt, migrations
from libs.common.app import service_app
from libs.common.db import Database
from libs.common.events import CloudEvent, new_event
from libs.common.events.bus import EventBus
from libs.common.events.catalog import ChildUpdatedV1, ChildV1
from libs.common.events.referrals_events import ReferralV1
from libs.common.lean import LeanRoute
from libs.common.logging import configure_logging
from libs.common.settings import Settings

ISSUER = "komar-gateway"
AUDIENCE = "komar-api"
ALL_SCOPES = (
    "registry:read registry:write referrals:read referrals:write referrals:respond "
    "funds:read funds:request funds:approve funds:disburse funds:manage "
    "indicators:read indicators:read:detail"
)


@dataclass
class SigningKeys:
    """A signing key standing in for the gateway's, served as a JWKS to the services."""

    kid: str = field(default_factory=lambda: f"test-{uuid.uuid4().hex[:8]}")
    private_pem: str = field(default_factory=jwt.generate_private_key_pem)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [jwt.public_jwk(self.private_pem, self.kid)]}

    async def fetch(self) -> dict[str, Any]:
        return self.jwks()

    def token(
        self,
        *,
        org: str = "moswvy-phnom-penh",
        org_type: str = "government",
        areas: list[str] | None = None,
        scope: str = ALL_SCOPES,
        sub: str | None = None,
        ttl_s: int = 900,
        **extra: Any,
    ) -> str:
        claims = {
            "sub": sub or f"user-{uuid.uuid4().hex[:8]}",
            "org": org,
            "org_type": org_type,
            "scope": scope,
            "areas": areas if areas is not None else ["12"],
            **extra,
        }
        token, _ = jwt.sign(
            claims,
            private_pem=self.private_pem,
            kid=self.kid,
            issuer=ISSUER,
            audience=AUDIENCE,
            ttl_s=ttl_s,
        )
        return token

    def headers(self, **kw: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(**kw)}"}


def child_event(
    child_id: str,
    *,
    owner_org: str,
    village: str | None,
    commune: str | None = None,
    version: int = 1,
    verb: str = "registered",
    status: str = "open",
    consent: bool = True,
) -> CloudEvent:
    """A registry.child.<verb>.v1 event exactly as the registry publishes it (an update
    changes the village); the commune is the village's unless given."""
    commune_code = commune or (village or "")[:6]
    fields: dict[str, Any] = {
        "child_id": child_id,
        "case_number": f"{commune_code}-{uuid.uuid4().int % 10_000_000:07d}",
        "commune_code": commune_code,
        "village_code": village,
        "sex": "female",
        "birth_month": "2015-04",
        "vulnerabilities": ["poor_household"],
        "risk_level": "medium",
        "status": status,
        "owner_org": owner_org,
        "data_sharing_consent": consent,
        "version": version,
        "registered_on": "2026-11-01",
    }
    data = (
        ChildUpdatedV1(**fields, changed=["village_code"])
        if verb == "updated"
        else ChildV1(**fields)
    )
    return new_event("registry", f"registry.child.{verb}.v1", child_id, data, "req-registry")


def referral_event(
    child_id: str,
    *,
    provider_org: str,
    status: str,
    version: int,
    referral_id: str | None = None,
    commune: str = "120101",
    village: str | None = None,
    at: datetime | None = None,
) -> CloudEvent:
    """A referrals.referral.<status>.v1 event exactly as the referrals service publishes it
    (dated `at`, now by default: a completion is dated by its event)."""
    referral_id = referral_id or str(uuid.uuid4())
    data = ReferralV1(
        referral_id=referral_id,
        child_id=child_id,
        commune_code=commune,
        village_code=village,
        service_type="health",
        urgency="normal",
        status=status,
        provider_id=str(uuid.uuid4()),
        provider_org=provider_org,
        referrer_org="moswvy",
        previous_referral_id=None,
        due_at="2026-12-01T00:00:00Z",
        overdue=False,
        consent_override=False,
        outcome_code="service_provided" if status == "completed" else None,
        version=version,
    )
    event = new_event("referrals", f"referrals.referral.{status}.v1", referral_id, data, "test")
    return event.model_copy(update={"time": at}) if at is not None else event


async def migrate(database_url: str, package: str) -> None:
    """Run a service's migrations (Alembic runs its own event loop, so in a thread)."""
    module = __import__(f"{package}.models", fromlist=["SCHEMA", "metadata"])
    versions = Path(module.__file__).parent / "migrations" / "versions"
    await asyncio.to_thread(
        migrations.upgrade, database_url, module.SCHEMA, module.metadata, versions
    )


def service_settings(
    database_url: str,
    nats_url: str,
    settings_class: type[Settings] = Settings,
    **overrides: Any,
) -> Settings:
    """A service's settings for tests: quiet JSON logs and a relay that publishes promptly."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "nats_url": nats_url,
        "log_json": True,
        "log_level": "warning",
        "relay_interval_s": 0.1,
        **overrides,
    }
    return settings_class(**values)


@asynccontextmanager
async def running_service(
    package: str, settings: Settings, keys: SigningKeys
) -> AsyncIterator[FastAPI]:
    """The service's app (`<package>.app.create_app`) on a migrated schema, its lifespan
    running and its event bus connected, trusting tokens signed by `keys`."""
    await migrate(settings.database_url, package)
    create_app = importlib.import_module(f"{package}.app").create_app
    app: FastAPI = create_app(settings, jwks_fetcher=keys.fetch)
    async with app.router.lifespan_context(app):
        await app.state.runtime.bus.wait_ready(30)
        yield app


@asynccontextmanager
async def client(app: FastAPI, host: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client calling the app in-process, at `http://<host>`."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=f"http://{host}") as api:
        yield api


def drop_test_database(pg_url: str, name: str) -> None:
    """Drop a test's own database, tried three times (DROP … WITH (FORCE) has been seen to
    lose its connection); a warning, not a failure, when it is left behind."""
    for attempt in range(3):
        try:
            drop_database(pg_url, name)
            return
        except Exception:
            if attempt == 2:
                warnings.warn(f"test database {name} left behind", stacklevel=2)
            time.sleep(0.5)


@asynccontextmanager
async def schema_database(pg_url: str, schema: str, metadata: MetaData) -> AsyncIterator[Database]:
    """A database whose `schema` holds the tables of `metadata` (made when missing)."""
    database = Database(pg_url)
    async with database.engine.begin() as conn:
        await conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {schema}"))
        await conn.run_sync(metadata.create_all)
    yield database
    await database.close()


@asynccontextmanager
async def stream_bus(nats_url: str, name: str, letter: str) -> AsyncIterator[EventBus]:
    """An event bus with a stream of its own (named `letter` + 8 hex digits, its subjects
    `<stream in lower case>.>`), told as `bus.test_stream`."""
    stream = f"{letter}{uuid.uuid4().hex[:8].upper()}"
    bus = EventBus(nats_url, name, {stream: [f"{stream.lower()}.>"]})
    bus.start()
    await bus.wait_ready(20)
    bus.test_stream = stream  # type: ignore[attr-defined]
    yield bus
    await bus.close()


def short_ack_durable(durable: str, subject: str) -> ConsumerConfig:
    """A durable to make beforehand with a 2 s ack wait (a consumer binds to an existing
    one), so what a stopped consumer had fetched but not acked comes back quickly."""
    return ConsumerConfig(
        durable_name=durable,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=2,
        max_deliver=-1,
        filter_subject=subject,
        max_ack_pending=1000,
    )


# ------------------------------------------------------- lean routes and their FastAPI routes

ANSWER_HEADERS = ("content-type", "location", "etag", "www-authenticate")


def answer_headers(response: httpx.Response) -> dict[str, str | None]:
    """The headers a lean route and its FastAPI route must answer alike."""
    return {name: response.headers.get(name) for name in ANSWER_HEADERS}


def assert_same_answer(lean: httpx.Response, fastapi: httpx.Response, note: object = "") -> None:
    """The same status, answer headers and body, byte for byte (`note` told on a failure)."""
    assert (lean.status_code, answer_headers(lean), lean.content) == (
        fastapi.status_code,
        answer_headers(fastapi),
        fastapi.content,
    ), note


def lean_routes(app: FastAPI) -> list[LeanRoute]:
    return [route for route in app.router.routes if isinstance(route, LeanRoute)]


@asynccontextmanager
async def fastapi_client(
    app: FastAPI, router: APIRouter, host: str
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app's routes on the same runtime without their LeanRoutes: every
    request answered by FastAPI's own routing and dependency solving."""
    bare = service_app(
        app.state.runtime, title=app.title, description=app.description, router=router
    )
    async with client(bare, host) as api:
        yield api


def handed_to_fastapi(
    router: APIRouter, endpoints: Collection[object], monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    """The requests ("METHOD path") the lean routes of `endpoints` hand to their FastAPI
    routes from now on (each FastAPI route's handle recorded, then called)."""
    handed: list[str] = []
    for route in router.routes:
        if isinstance(route, APIRoute) and route.endpoint in endpoints:

            async def handle(
                scope: Scope, receive: Receive, send: Send, fastapi: APIRoute = route
            ) -> None:
                handed.append(f"{scope['method']} {scope['path']}")
                await APIRoute.handle(fastapi, scope, receive, send)

            monkeypatch.setattr(route, "handle", handle)
    return handed


async def stream_events(
    nats_url: str, stream: str, subject: str | None = None
) -> list[dict[str, Any]]:
    """Every event on a JetStream stream so far (only those on `subject`, a pattern, when
    given), each with its Nats-Msg-Id as `_msg_id`."""
    nc = await nats.connect(nats_url)
    try:
        sub = await nc.jetstream().pull_subscribe(
            subject or f"{stream.lower()}.>",
            stream=stream,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL, inactive_threshold=30),
        )
        pending = (await sub.consumer_info()).num_pending
        events: list[dict[str, Any]] = []
        while len(events) < pending:
            try:
                msgs = await sub.fetch(min(1000, pending - len(events)), timeout=5)
            except TimeoutError:  # nats-py raises its own subclass or asyncio's
                break
            for msg in msgs:
                headers = msg.headers or {}
                events.append({**json.loads(msg.data), "_msg_id": headers.get("Nats-Msg-Id")})
                await msg.ack()
        return events
    finally:
        await nc.close()


async def migration_drift(database_url: str, schema: str, metadata: MetaData) -> list[Any]:
    """What the migrated `schema` of the database lacks or has beyond `metadata` (Alembic's
    autogenerate comparison, types included): empty when the migrations make exactly what
    the models declare."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy.ext.asyncio import create_async_engine

    from libs.common.db import async_url

    def ours(obj: Any, name: Any, type_: str, reflected: bool, compare_to: Any) -> bool:
        return type_ != "table" or obj.schema == schema

    def named(name: Any, type_: str, parents: Any) -> bool:
        return type_ != "schema" or name == schema

    def diff(sync: Any) -> list[Any]:
        context = MigrationContext.configure(
            sync,
            opts={
                "include_schemas": True,
                "include_object": ours,
                "include_name": named,
                "compare_type": True,
                "version_table_schema": schema,
            },
        )
        return list(compare_metadata(context, metadata))

    engine = create_async_engine(async_url(database_url))
    try:
        async with engine.connect() as conn:
            drift: list[Any] = await conn.run_sync(diff)
            return drift
    finally:
        await engine.dispose()


@contextmanager
def production_logging(service: str) -> Iterator[None]:
    """The processes' logging (JSON lines, redaction, safe tracebacks) for a while, each line
    to the stream of the moment (a test's capture, no logger cached), then the suite's again."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, formatters = list(root.handlers), [h.formatter for h in root.handlers]
    configure_logging(service, json=True, level="info")
    structlog.configure(
        cache_logger_on_first_use=False, logger_factory=structlog.PrintLoggerFactory()
    )
    try:
        yield
    finally:
        structlog.configure(**saved)
        root.handlers = handlers
        for handler, formatter in zip(handlers, formatters, strict=True):
            handler.setFormatter(formatter)
