"""The funds app on the session's PostgreSQL and NATS, children from registry events, and
principals to call it.

Children reach the funds service the way they do in production: as registry.child.* events
on the REGISTRY stream, applied by the `funds-children` durable consumer.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from libs.common.events import CloudEvent
from libs.common.events.bus import EventBus
from libs.common.events.catalog import STREAMS
from services.funds.models import children, inbox
from tests import support
from tests.support import SigningKeys, client, running_service, service_settings, stream_events

TONLE_BASAK = "120101"  # a commune of Chamkar Mon district (1201), Phnom Penh (12)
VILLAGE = "12010101"
OTHER_COMMUNE = "120109"
OTHER_VILLAGE = "12010901"


@pytest.fixture(scope="session")
async def funds_app(pg_url: str, nats_url: str, keys: SigningKeys) -> AsyncIterator[FastAPI]:
    async with running_service("services.funds", service_settings(pg_url, nats_url), keys) as app:
        yield app


@asynccontextmanager
async def producer_bus(nats_url: str, stream: str) -> AsyncIterator[EventBus]:
    """A bus publishing onto `stream` in place of the service that produces it."""
    bus = EventBus(nats_url, f"test-{stream.lower()}", {stream: STREAMS[stream]})
    bus.start()
    try:
        await bus.wait_ready(30)
        yield bus
    finally:
        await bus.close()


@pytest.fixture(scope="session")
async def registry_bus(nats_url: str) -> AsyncIterator[EventBus]:
    """Publishes registry.child.* events as the registry would."""
    async with producer_bus(nats_url, "REGISTRY") as bus:
        yield bus


@pytest.fixture(scope="session")
async def referrals_bus(nats_url: str) -> AsyncIterator[EventBus]:
    """Publishes referrals.referral.* events as the referrals service would."""
    async with producer_bus(nats_url, "REFERRALS") as bus:
        yield bus


@pytest.fixture
async def api(funds_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client(funds_app, "funds") as api:
        yield api


# ---------------------------------------------------------------- principals


@dataclass
class People:
    """The principals of one test, with subjects of their own (approver ≠ requester is by sub)."""

    keys: SigningKeys
    tag: str
    _signed: dict[str, dict[str, str]] = field(default_factory=dict)

    def h(self, role: str, **kw: Any) -> dict[str, str]:
        """Headers with a token for the role (signed once: RS256 signing is slow)."""
        kw.setdefault("sub", f"{role}-{self.tag}")
        key = json.dumps([role, kw], sort_keys=True)
        if key not in self._signed:
            self._signed[key] = self.keys.headers(**kw)
        return dict(self._signed[key])

    @property
    def manager(self) -> dict[str, str]:
        """Province-level fund manager."""
        return self.h("manager", areas=["12"], scope="funds:read funds:manage")

    @property
    def requester(self) -> dict[str, str]:
        """A CCWC worker of Tonle Basak."""
        return self.h("requester", areas=[TONLE_BASAK], scope="funds:read funds:request")

    @property
    def approver(self) -> dict[str, str]:
        """A commune-level approver of Tonle Basak."""
        return self.h("approver", areas=[TONLE_BASAK], scope="funds:read funds:approve")

    @property
    def district_approver(self) -> dict[str, str]:
        """A district-level approver of Chamkar Mon."""
        return self.h("district", areas=["1201"], scope="funds:read funds:approve")

    @property
    def disburser(self) -> dict[str, str]:
        return self.h("cashier", areas=[TONLE_BASAK], scope="funds:read funds:disburse")


@pytest.fixture
def people(keys: SigningKeys) -> People:
    return People(keys, uuid.uuid4().hex[:8])


# ---------------------------------------------------------------- children


# A registry.child.* event of a Tonle Basak child registered by the province's staff, by default.
child_event = partial(support.child_event, owner_org="moswvy-phnom-penh", village=VILLAGE)


async def publish(bus: EventBus, events: Iterable[Any]) -> None:
    for event in events:
        payload = json.dumps(event.model_dump(mode="json")).encode()
        await bus.publish(event.type, payload, event.id)


async def wait_for_children(app: FastAPI, expected: dict[str, int], timeout: float = 30) -> None:
    """Until the projection holds each child at (at least) the expected version."""
    ids = [uuid.UUID(i) for i in expected]
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        async with app.state.runtime.db.transaction() as conn:
            rows = await conn.execute(
                select(children.c.id, children.c.version).where(children.c.id.in_(ids))
            )
            have = {str(r.id): r.version for r in rows}
        if all(have.get(i, 0) >= v for i, v in expected.items()):
            return
        assert asyncio.get_running_loop().time() < deadline, f"projection lags: {have}"
        await asyncio.sleep(0.1)


async def wait_processed(app: FastAPI, event_ids: list[str], timeout: float = 30) -> None:
    """Until the funds service has applied (or skipped as stale) each event."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        async with app.state.runtime.db.transaction() as conn:
            rows = await conn.execute(
                select(inbox.c.event_id).where(inbox.c.event_id.in_(event_ids))
            )
            done = {str(r.event_id) for r in rows}
        if done >= set(event_ids):
            return
        assert asyncio.get_running_loop().time() < deadline, "events not applied in time"
        await asyncio.sleep(0.1)


def referral_event(
    child_id: str, provider_org: str, status: str, version: int, referral_id: str | None = None
) -> CloudEvent:
    """A referrals.referral.<status>.v1 event about a child of Tonle Basak."""
    return support.referral_event(
        child_id,
        provider_org=provider_org,
        status=status,
        version=version,
        referral_id=referral_id,
        commune=TONLE_BASAK,
        village=VILLAGE,
    )


async def add_children(app: FastAPI, bus: EventBus, n: int = 1, **kw: Any) -> list[str]:
    """Register n children in the registry (by event) and wait until funds knows them."""
    ids = [str(uuid.uuid4()) for _ in range(n)]
    await publish(bus, [child_event(i, **kw) for i in ids])
    await wait_for_children(app, dict.fromkeys(ids, kw.get("version", 1)))
    return ids


# ---------------------------------------------------------------- funds and grants


def fund_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "commune_code": TONLE_BASAK,
        "fiscal_year": 2026,
        "name": f"Tonle Basak emergency fund {uuid.uuid4().hex[:6]}",
        "budget_khr": 1_000_000,
        "max_grant_khr": 400_000,
        "approval_threshold_khr": 200_000,
    }
    body.update(overrides)
    return body


async def make_fund(api: httpx.AsyncClient, people: People, **overrides: Any) -> dict[str, Any]:
    r = await api.post("/v1/funds/funds", json=fund_body(**overrides), headers=people.manager)
    assert r.status_code == 201, r.text
    return dict(r.json())


def grant_body(fund_id: str, child_id: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "child_id": child_id,
        "fund_id": fund_id,
        "category": "education_support",
        "amount_khr": 100_000,
        "justification": "uniform and bicycle to reach the lower secondary school",
    }
    body.update(overrides)
    return body


async def make_grant(
    api: httpx.AsyncClient, people: People, fund_id: str, child_id: str, **overrides: Any
) -> dict[str, Any]:
    r = await api.post(
        "/v1/funds/grants",
        json=grant_body(fund_id, child_id, **overrides),
        headers=people.requester,
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


async def wait_for_events(
    nats_url: str, subject: str, subjects: set[str], timeout: float = 60
) -> list[dict[str, Any]]:
    """Events on a subject (pattern) about the given entities, once each has at least one."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        events = [
            e for e in await stream_events(nats_url, "FUNDS", subject) if e["subject"] in subjects
        ]
        if {e["subject"] for e in events} >= subjects:
            return events
        if asyncio.get_running_loop().time() > deadline:
            return events
        await asyncio.sleep(0.3)
