"""A step that waits for a grant's lock sees every action written while it waited."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import httpx
from fastapi import FastAPI

from libs.common.events.bus import EventBus
from tests.funds.conftest import People, add_children, make_fund, make_grant


async def wait_for_lock_waiter(pg: asyncpg.Connection, timeout: float = 30) -> None:
    """Until a statement waits for a row lock on a grant."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await pg.fetchval(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    ):
        assert asyncio.get_running_loop().time() < deadline, "the approval never waited"
        await asyncio.sleep(0.05)


async def test_an_approval_waiting_for_the_lock_counts_the_one_committed_meanwhile(
    api: httpx.AsyncClient,
    funds_app: FastAPI,
    registry_bus: EventBus,
    people: People,
    pg_url: str,
) -> None:
    [child] = await add_children(funds_app, registry_bus)
    fund = await make_fund(api, people)
    grant = await make_grant(api, people, fund["id"], child, amount_khr=300_000)
    assert grant["approvals_required"] == 2
    grant_id = uuid.UUID(grant["id"])

    holder = await asyncpg.connect(pg_url)
    watcher = await asyncpg.connect(pg_url)
    try:
        tx = holder.transaction()
        await tx.start()
        await holder.execute(
            "SELECT id FROM funds.grants WHERE id = $1 FOR NO KEY UPDATE", grant_id
        )
        second = asyncio.create_task(
            api.post(f"/v1/funds/grants/{grant['id']}/approve", headers=people.district_approver)
        )
        await wait_for_lock_waiter(watcher)
        # The first approval, written as the service writes one, commits while the second
        # waits: after the second's statement began.
        await holder.execute(
            "INSERT INTO funds.grant_actions"
            " (grant_id, action, actor_sub, actor_org, district_level, request_id)"
            " VALUES ($1, 'approved', $2, 'moswvy-phnom-penh', false, 'first-approval')",
            grant_id,
            f"approver-{people.tag}",
        )
        await holder.execute(
            "UPDATE funds.grants SET version = version + 1, updated_at = now() WHERE id = $1",
            grant_id,
        )
        await tx.commit()
        r = await second
    finally:
        await holder.close()
        await watcher.close()

    assert r.status_code == 200, r.text
    approved = r.json()
    assert approved["status"] == "approved"
    assert [a["by"]["sub"] for a in approved["approvals"]] == [
        f"approver-{people.tag}",
        f"district-{people.tag}",
    ]
    assert [h["action"] for h in approved["history"]] == ["requested", "approved", "approved"]
    state = (await api.get(f"/v1/funds/funds/{fund['id']}", headers=people.manager)).json()
    assert state["committed_khr"] == 300_000
