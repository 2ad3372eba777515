"""The registry app on the session's PostgreSQL and NATS, and principals to call it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from libs.common.settings import Settings
from services.registry.api import router
from services.registry.app import create_app
from tests.support import SigningKeys, fastapi_client, migrate


@pytest.fixture(scope="session")
def keys() -> SigningKeys:
    return SigningKeys()


@pytest.fixture(scope="session")
async def registry_app(pg_url: str, nats_url: str, keys: SigningKeys) -> AsyncIterator[FastAPI]:
    await migrate(pg_url, "services.registry")
    settings = Settings(
        database_url=pg_url,
        nats_url=nats_url,
        log_json=True,
        log_level="warning",
        relay_interval_s=0.1,
    )
    app = create_app(settings, jwks_fetcher=keys.fetch)
    async with app.router.lifespan_context(app):
        await app.state.runtime.bus.wait_ready(30)
        yield app


@pytest.fixture
async def api(registry_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=registry_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://registry") as client:
        yield client


@pytest.fixture
async def fastapi_api(registry_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The registry's routes on the same runtime without its LeanRoutes: every request
    answered by FastAPI's own routing and dependency solving."""
    async with fastapi_client(registry_app, router, "registry") as client:
        yield client


def child_body(**overrides: Any) -> dict[str, Any]:
    """A valid child of Tonle Basak commune, Phnom Penh."""
    body: dict[str, Any] = {
        "given_name": "Sokha",
        "family_name": "Chan",
        "sex": "female",
        "birth_date": "2015-04-12",
        "village_code": "12010101",
        "caregiver": {"name": "Dara Chan", "relationship": "mother", "phone": "+855 12 345 678"},
        "vulnerabilities": ["poor_household", "out_of_school"],
        "risk_level": "medium",
        "consent": {"data_sharing": True, "given_by": "mother", "date": "2026-11-01"},
    }
    body.update(overrides)
    return body
