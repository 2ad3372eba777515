"""One running platform — PostgreSQL, NATS, every service and the gateway as real processes —
shared by the tests that attack it from outside, through the gateway, as a careless partner
or an attacker would."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.e2e.conftest import Platform, running_platform, token


@pytest.fixture(scope="package")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with running_platform(tmp_path_factory.mktemp("trust")) as p:
        yield p


@pytest.fixture
async def gateway(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=platform.gateway, timeout=60) as client:
        yield client


@dataclass
class Caller:
    """An API client made through the admin API: its id, secret, and bearer headers."""

    client_id: str
    secret: str
    org: str
    headers: dict[str, str]


@pytest.fixture
async def admin_headers(platform: Platform, gateway: httpx.AsyncClient) -> dict[str, str]:
    return {"Authorization": f"Bearer {await token(gateway, 'admin', platform.admin_secret)}"}


async def new_caller(
    gateway: httpx.AsyncClient,
    admin_headers: dict[str, str],
    *,
    scopes: list[str],
    areas: list[str],
    org_type: str = "partner",
    org: str | None = None,
) -> Caller:
    """A fresh API client of a fresh (or the given) organisation, with a token."""
    org = org or f"{org_type[:3]}-{secrets.token_hex(4)}"
    r = await gateway.post(
        "/v1/admin/clients",
        json={
            "name": f"trust test {org}",
            "org": org,
            "org_type": org_type,
            "scopes": scopes,
            "areas": areas,
            "rate_limit_per_second": 1000,
        },
        headers=admin_headers,
    )
    assert r.status_code == 201, r.text
    client_id, secret = r.json()["client_id"], r.json()["client_secret"]
    headers = {"Authorization": f"Bearer {await token(gateway, client_id, secret)}"}
    return Caller(client_id, secret, org, headers)
