"""What referrals knows of children comes from registry events: in order or not, once each."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import text

from libs.common.db import Database
from tests.referrals.conftest import World, child_event, publish, wait_projected


async def wait_processed(db: Database, event_ids: list[str], timeout: float = 30) -> None:
    """Wait until the consumer has recorded every one of these events."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        async with db.transaction() as conn:
            n = await conn.scalar(
                text(
                    "SELECT count(*) FROM referrals.processed_events "
                    "WHERE event_id = ANY(CAST(:ids AS uuid[]))"
                ),
                {"ids": event_ids},
            )
        if n == len(set(event_ids)):
            return
        assert asyncio.get_running_loop().time() < deadline, f"{n} of {len(event_ids)} applied"
        await asyncio.sleep(0.05)


async def test_registry_events_arrive_and_an_older_version_never_overwrites(
    world: World,
) -> None:
    p = world.place
    cid = str(uuid.uuid4())
    registered = child_event(cid, version=1, village=p.village, owner_org="ngo-a")
    await publish(world.js, [registered])
    row = await wait_projected(world.db, cid, 1)
    placed = (row["commune_code"], row["village_code"], row["place_code"])
    assert placed == (p.commune, p.village, p.village)
    assert row["owner_org"] == "ngo-a"
    assert row["data_sharing_consent"] is True
    assert set(row) == {
        "id",
        "commune_code",
        "village_code",
        "place_code",
        "owner_org",
        "status",
        "data_sharing_consent",
        "version",
        "synced_at",
    }  # no names, ever

    moved = child_event(
        cid, version=2, verb="updated", commune=p.other_commune, owner_org="ngo-a", consent=False
    )
    await publish(world.js, [moved])
    row = await wait_projected(world.db, cid, 2)
    assert (row["commune_code"], row["village_code"]) == (p.other_commune, None)
    assert row["data_sharing_consent"] is False

    # an older version arriving late (a different event) changes nothing
    stale = child_event(cid, version=1, village=p.village, owner_org="ngo-a")
    await publish(world.js, [stale])
    await wait_processed(world.db, [stale.id])
    row = await wait_projected(world.db, cid, 2)
    assert (row["version"], row["commune_code"]) == (2, p.other_commune)


async def test_the_same_event_delivered_twice_is_applied_once(world: World) -> None:
    cid = str(uuid.uuid4())
    registered = child_event(cid, version=1, village=world.place.village)
    closed = child_event(
        cid, version=2, verb="closed", village=world.place.village, status="closed"
    )
    await publish(world.js, [registered, closed])
    # the same event again under other message ids: the broker cannot tell, the inbox must
    await publish(world.js, [closed], msg_id=f"again-{uuid.uuid4()}")
    await publish(world.js, [registered], msg_id=f"again-{uuid.uuid4()}")
    other = str(uuid.uuid4())
    marker = child_event(other, village=world.place.village)
    await publish(world.js, [marker])  # published last: once it is applied, so are the copies
    await wait_projected(world.db, other, 1)
    row = await wait_projected(world.db, cid, 2)
    assert (row["version"], row["status"]) == (2, "closed")  # the late copy did not reopen it
    async with world.db.transaction() as conn:
        n = await conn.scalar(
            text(
                "SELECT count(*) FROM referrals.processed_events "
                "WHERE event_id = ANY(CAST(:ids AS uuid[]))"
            ),
            {"ids": [registered.id, closed.id]},
        )
    assert n == 2


async def test_events_out_of_order_end_at_the_newest_version(world: World) -> None:
    p = world.place
    cid = str(uuid.uuid4())
    events = [
        child_event(cid, version=1, village=p.village),
        child_event(cid, version=2, verb="closed", village=p.village, status="closed"),
        child_event(cid, version=3, verb="reopened", village=p.village),
        child_event(cid, version=4, verb="updated", village=p.other_village),
    ]
    await publish(world.js, [events[0], events[3], events[2], events[1]])
    await wait_processed(world.db, [e.id for e in events])
    row = await wait_projected(world.db, cid, 4)
    assert (row["version"], row["status"], row["village_code"]) == (4, "open", p.other_village)


async def test_a_child_is_referred_once_its_registration_has_synced(world: World) -> None:
    await world.provider([world.place.district])
    cid = str(uuid.uuid4())
    early = await world.refer(cid, expect=404)
    assert "try again" in early.json()["detail"]
    await publish(world.js, [child_event(cid, village=world.place.village)])
    await wait_projected(world.db, cid, 1)
    referral = (await world.refer(cid)).json()
    placed = (referral["commune_code"], referral["village_code"])
    assert placed == (world.place.commune, world.place.village)
    # a case closed in the registry cannot be referred any more
    await publish(
        world.js,
        [child_event(cid, version=2, verb="closed", village=world.place.village, status="closed")],
    )
    await wait_projected(world.db, cid, 2)
    await world.refer(cid, "health", expect=409)
