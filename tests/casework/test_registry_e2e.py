"""Reintegration from end to end: a child registered in a residential institution through
the registry's API, then moved into a family by a PATCH of its care setting; the casework
service learns it from the registry's events and schedules the four follow-ups."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI

from libs.common import clock
from libs.common.settings import Settings
from services.casework import domain
from tests.casework.conftest import CASEWORK, World, until
from tests.support import SigningKeys, client, running_service, service_settings

REGISTRY = "registry:read registry:write"


@pytest.fixture(scope="session")
async def registry_app(pg_url: str, nats_url: str, keys: SigningKeys) -> AsyncIterator[FastAPI]:
    settings = service_settings(pg_url, nats_url, Settings)
    async with running_service("services.registry", settings, keys) as app:
        yield app


def child_body(village: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "given_name": "Sokha",
        "family_name": "Chan",
        "sex": "female",
        "birth_date": "2015-04-12",
        "village_code": village,
        "caregiver": {"name": "Dara Chan", "relationship": "mother", "phone": "+855 12 345 678"},
        "vulnerabilities": ["poor_household"],
        "risk_level": "medium",
        "consent": {"data_sharing": True, "given_by": "mother", "date": "2026-11-01"},
        **overrides,
    }
    return body


async def test_a_child_reintegrated_in_the_registry_gets_its_followups(
    world: World, registry_app: FastAPI
) -> None:
    h = world.headers(scope=f"{REGISTRY} {CASEWORK}")
    async with client(registry_app, "registry") as registry:
        r = await registry.post(
            "/v1/registry/children",
            json=child_body(world.place.village, care_setting="residential_institution"),
            headers=h,
        )
        assert r.status_code == 201, r.text
        child = r.json()

        async def projected() -> dict[str, Any] | None:
            got = await world.api.get(f"/v1/casework/children/{child['id']}", headers=h)
            return got.json() if got.status_code == 200 else None

        case = await until(projected, what="the child in casework")
        assert case["care_setting"] == "residential_institution"
        assert case["followups"] == []

        r = await registry.patch(
            f"/v1/registry/children/{child['id']}",
            content=b'{"care_setting": "family"}',
            headers={
                **h,
                "Content-Type": "application/merge-patch+json",
                "If-Match": r.headers["etag"],
            },
        )
        assert r.status_code == 200, r.text

    async def followed() -> dict[str, Any] | None:
        case = await projected()
        return case if case and case["followups"] else None

    case = await until(followed, what="the follow-ups")
    moved = clock.today()
    assert case["care_setting"] == "family"
    assert case["reintegrated_on"] == moved.isoformat()
    assert [(f["month"], f["due_on"]) for f in case["followups"]] == [
        (m, domain.add_months(moved, m).isoformat()) for m in (1, 3, 6, 12)
    ]
    r = await world.visit(child["id"], headers=h)
    assert r.json()["followups_made"] == [1]
