"""Two replicas of the casework service on one database: the overdue job runs once per
tick across them, so a missed visit is flagged, and announced, once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from fastapi import FastAPI

from services.casework.app import CaseworkSettings
from tests.casework.conftest import World, casework_events, today, until
from tests.support import SigningKeys, running_service, service_settings


@pytest.fixture
async def second_replica(
    pg_url: str, nats_url: str, keys: SigningKeys, casework_app: FastAPI
) -> AsyncIterator[FastAPI]:
    settings = service_settings(pg_url, nats_url, CaseworkSettings, casework_overdue_sweep_s=0.5)
    async with running_service("services.casework", settings, keys) as app:
        yield app


async def test_two_replicas_flag_a_missed_visit_once(world: World, second_replica: FastAPI) -> None:
    children = [await world.child() for _ in range(10)]
    due = today() - timedelta(days=1)
    for child in children:
        await world.visit(child, on=today() - timedelta(days=5), next_visit_on=due.isoformat())

    async def flagged() -> list[dict]:
        found = [
            e
            for e in await casework_events(world.nats_url, "casework.visit.>")
            if e["type"] == "casework.visit.overdue.v1" and e["subject"] in children
        ]
        return found if len(found) >= len(children) else []

    await until(flagged, what="every overdue event")
    await asyncio.sleep(2)  # a few more ticks on both replicas
    events = await flagged()
    assert sorted(e["subject"] for e in events) == sorted(children)
