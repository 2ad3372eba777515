"""Several outbox relays at once publish every event exactly once."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import timedelta

import nats
from sqlalchemy import MetaData, text

from libs.common.db import Database
from libs.common.events import new_event, store
from libs.common.events.bus import EventBus
from libs.common.events.catalog import ChildV1
from libs.common.events.outbox import outbox_table, write_events
from libs.common.events.relay import OutboxRelay


def child_data() -> ChildV1:
    return ChildV1(
        child_id=str(uuid.uuid4()),
        case_number="120101-1",
        commune_code="120101",
        village_code=None,
        sex="male",
        birth_month="2019-01",
        vulnerabilities=[],
        risk_level="low",
        status="open",
        owner_org="x",
        data_sharing_consent=True,
        version=1,
        registered_on="2026-01-01",
    )


async def test_three_relays_publish_each_event_once(pg_url: str, nats_url: str) -> None:
    schema = f"relay_{uuid.uuid4().hex[:6]}"
    metadata = MetaData()
    table = outbox_table(metadata, schema)
    db = Database(pg_url)
    async with db.engine.begin() as conn:
        await conn.execute(text(f"CREATE SCHEMA {schema}"))
        await conn.run_sync(metadata.create_all)
    # a stream of its own so the count is exact
    stream, subject = f"R{schema.upper()}", "registry.child.registered.v1"
    events = [
        new_event("registry", subject, str(uuid.uuid4()), child_data(), None) for _ in range(300)
    ]
    async with db.transaction() as conn:
        await write_events(conn, table, events)
    buses = [EventBus(nats_url, f"relay-{i}", {}) for i in range(3)]
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await js.add_stream(name=stream, subjects=[f"{schema}.>"])
    try:
        relays = []
        for bus in buses:
            bus.start()
            await bus.wait_ready(20)
            relay = OutboxRelay(db, bus, table, interval_s=0.05, batch=20)
            # publish under a test-only subject prefix so this test's stream sees only its events
            original = bus.publish

            async def publish(subj: str, payload: bytes, msg_id: str, _o=original) -> object:
                return await _o(f"{schema}.{subj}", payload, msg_id)

            bus.publish = publish  # type: ignore[method-assign]
            relays.append(relay)
        for relay in relays:
            relay.start()
        for _ in range(600):  # a minute at most, on a busy machine
            if await relays[0].pending() == 0:
                break
            await asyncio.sleep(0.1)
        for relay in relays:
            await relay.stop()
        sub = await js.pull_subscribe(f"{schema}.>", stream=stream)
        seen: Counter[str] = Counter()
        while True:
            try:
                msgs = await sub.fetch(500, timeout=1)
            except TimeoutError:  # nats-py raises its own subclass or asyncio's
                break
            for m in msgs:
                seen[m.headers["Nats-Msg-Id"]] += 1
                await m.ack()
        assert seen == dict.fromkeys((e.id for e in events), 1)
    finally:
        for bus in buses:
            await bus.close()
        await js.delete_stream(stream)
        await nc.close()
        await db.close()


async def test_the_feeds_beginning_is_purged_up_to_its_first_row_within_retention(
    pg_url: str,
) -> None:
    """Rows go from the feed's beginning only: up to the first one published within the
    retention or not published (a row whose publish failed keeps its position and holds
    back the purge behind it); the newest row always stays, so positions go on from it."""
    schema = f"purge_{uuid.uuid4().hex[:6]}"
    metadata = MetaData()
    table = outbox_table(metadata, schema)
    db = Database(pg_url)
    async with db.engine.begin() as conn:
        await conn.execute(text(f"CREATE SCHEMA {schema}"))
        await conn.run_sync(metadata.create_all)
    events = [
        new_event("registry", "registry.child.registered.v1", str(uuid.uuid4()), child_data(), None)
        for _ in range(7)
    ]
    # (position, published days ago or None): the last row has no position yet
    state = [(1, 40), (2, 32), (3, None), (4, 40), (5, 0), (6, 40), (None, None)]

    async def ids_left() -> set[str]:
        async with db.transaction() as conn:
            return {str(r[0]) for r in await conn.execute(text(f"SELECT id FROM {schema}.outbox"))}

    async def purge() -> int:
        relay = OutboxRelay(db, EventBus("nats://127.0.0.1:1", "unused", {}), table)
        return await relay.purge_published(timedelta(days=31))

    try:
        async with db.transaction() as conn:
            await write_events(conn, table, events)
            for event, (position, days) in zip(events, state, strict=True):
                await conn.execute(
                    text(
                        f"UPDATE {schema}.outbox SET position = :p,"
                        " published_at = now() - make_interval(days => :d),"
                        " created_at = now() - interval '41 days' WHERE id = :id"
                    ),
                    {"p": position, "d": days, "id": event.id},
                )
            # published_at NULL where days is None
            await conn.execute(
                text(f"UPDATE {schema}.outbox SET published_at = NULL WHERE id = ANY(:ids)"),
                {"ids": [e.id for e, (_, d) in zip(events, state, strict=True) if d is None]},
            )
        assert await purge() == 2
        assert await ids_left() == {e.id for e in events[2:]}

        # once published, the purge goes on up to the row published today
        async with db.transaction() as conn:
            await conn.execute(
                text(
                    f"UPDATE {schema}.outbox SET published_at = now() - interval '40 days'"
                    " WHERE position = 3"
                )
            )
        assert await purge() == 2
        assert await ids_left() == {e.id for e in events[4:]}

        # when every row is old, the newest stays
        async with db.transaction() as conn:
            await conn.execute(
                text(
                    f"UPDATE {schema}.outbox SET published_at = now() - interval '40 days'"
                    " WHERE position IS NOT NULL"
                )
            )
        assert await purge() == 1
        assert await ids_left() == {events[5].id, events[6].id}
    finally:
        async with db.engine.begin() as conn:
            await conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        await db.close()


async def test_feed_positions_follow_the_claims_and_reach_rows_published_without_one(
    pg_url: str,
) -> None:
    """A claim gives the rows it takes the next positions in seq order, and one published
    by a relay of the version before feeds (during an upgrade) a position without
    publishing it again; a row whose publish failed keeps its position when claimed again."""
    schema = f"feed_{uuid.uuid4().hex[:6]}"
    metadata = MetaData()
    table = outbox_table(metadata, schema)
    db = Database(pg_url)
    async with db.engine.begin() as conn:
        await conn.execute(text(f"CREATE SCHEMA {schema}"))
        await conn.run_sync(metadata.create_all)
    events = [
        new_event("registry", "registry.child.registered.v1", str(uuid.uuid4()), child_data(), None)
        for _ in range(4)
    ]

    async def positions() -> dict[str, int | None]:
        async with db.transaction() as conn:
            rows = await conn.execute(text(f"SELECT id, position FROM {schema}.outbox"))
            return {str(r[0]): r[1] for r in rows}

    try:
        async with db.transaction() as conn:
            await write_events(conn, table, events)
            await conn.execute(  # the first published by an older relay: no position
                text(f"UPDATE {schema}.outbox SET published_at = now() WHERE id = :id"),
                {"id": events[0].id},
            )
        async with db.transaction() as conn:
            claimed = await store.claim_for_publishing(conn, table, 2)
            assert [c.id for c in claimed] == [events[1].id]  # the first only positioned
            await store.unclaim(conn, table, claimed[0].seq, [claimed[0].seq])
        assert await positions() == {
            events[0].id: 1,
            events[1].id: 2,
            events[2].id: None,
            events[3].id: None,
        }
        async with db.transaction() as conn:
            claimed = await store.claim_for_publishing(conn, table, 10)
        assert [c.id for c in claimed] == [e.id for e in events[1:]]
        assert await positions() == {e.id: n for n, e in enumerate(events, start=1)}
        async with db.transaction() as conn:
            assert await store.claim_for_publishing(conn, table, 10) == []
    finally:
        async with db.engine.begin() as conn:
            await conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        await db.close()
