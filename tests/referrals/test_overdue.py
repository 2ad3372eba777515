"""Pending referrals past due are flagged for escalation: once, with one event, however many
sweepers run."""

from __future__ import annotations

import asyncio
from collections import Counter

from fastapi import FastAPI
from sqlalchemy import text

from services.referrals import service
from tests.referrals.conftest import World, wait_for_events

OVERDUE = "referrals.referral.overdue.v1"


async def make_past_due(world: World, ids: list[str]) -> None:
    async with world.db.transaction() as conn:
        await conn.execute(
            text(
                "UPDATE referrals.referrals SET due_at = now() - interval '1 minute' "
                "WHERE id = ANY(CAST(:ids AS uuid[]))"
            ),
            {"ids": ids},
        )


async def overdue_ids(world: World, provider: dict) -> set[str]:
    r = await world.api.get(
        f"/v1/referrals?overdue=true&provider_id={provider['id']}&limit=500",
        headers=world.headers(),
    )
    assert r.status_code == 200
    return {x["id"] for x in r.json()["items"]}


async def test_two_sweepers_at_once_flag_each_referral_once_with_one_event(
    world: World, referrals_app: FastAPI, nats_url: str
) -> None:
    provider = await world.provider([world.place.village], capacity=40)
    ids = [(await world.refer(await world.child())).json()["id"] for _ in range(20)]
    not_due = (await world.refer(await world.child())).json()
    accepted = (await world.refer(await world.child())).json()
    r = await world.api.post(
        f"/v1/referrals/{accepted['id']}/accept", headers=world.provider_staff(provider)
    )
    assert r.status_code == 200
    await make_past_due(world, [*ids, accepted["id"]])

    async def sweep() -> list[str]:
        async with world.db.transaction() as conn:
            return [str(row["id"]) for row in await service.flag_overdue(conn)]

    # two sweepers racing (and the app's own one, which runs every half second)
    first, second = await asyncio.gather(sweep(), sweep())
    assert not set(first) & set(second)
    assert set(first) | set(second) <= set(ids)

    deadline = asyncio.get_running_loop().time() + 20
    while await overdue_ids(world, provider) != set(ids):
        assert asyncio.get_running_loop().time() < deadline, "not all were flagged"
        await asyncio.sleep(0.2)
    assert await sweep() == []  # nothing left to flag

    flagged = await world.get_referral(ids[0])
    assert flagged["overdue"] is True
    assert flagged["status"] == "pending"
    assert flagged["version"] == 2
    assert (await world.get_referral(accepted["id"]))["overdue"] is False  # already accepted
    assert (await world.get_referral(not_due["id"]))["overdue"] is False

    async with world.db.transaction() as conn:
        rows = await conn.execute(
            text(
                "SELECT payload->>'subject' AS id, count(*) AS n FROM referrals.outbox "
                "WHERE type = :t AND payload->>'subject' = ANY(:ids) GROUP BY 1"
            ),
            {"t": OVERDUE, "ids": [*ids, accepted["id"], not_due["id"]]},
        )
        assert {row.id: row.n for row in rows} == dict.fromkeys(ids, 1)
    events = await wait_for_events(nats_url, set(ids), {OVERDUE}, len(ids))
    assert Counter(e["subject"] for e in events) == dict.fromkeys(ids, 1)
    assert all(e["data"]["overdue"] and e["data"]["status"] == "pending" for e in events)
    assert {e["data"]["due_at"][-1] for e in events} == {"Z"}


async def test_an_overdue_referral_can_still_be_accepted_and_stays_marked(
    world: World,
) -> None:
    provider = await world.provider([world.place.village])
    referral = (await world.refer(await world.child(), urgency="emergency")).json()
    await make_past_due(world, [referral["id"]])
    deadline = asyncio.get_running_loop().time() + 20
    while not (await world.get_referral(referral["id"]))["overdue"]:  # the app's sweeper
        assert asyncio.get_running_loop().time() < deadline, "the sweeper never ran"
        await asyncio.sleep(0.2)
    r = await world.api.post(
        f"/v1/referrals/{referral['id']}/accept", headers=world.provider_staff(provider)
    )
    assert r.status_code == 200
    assert r.json()["overdue"] is True
    assert r.json()["status"] == "accepted"
