"""Several outbox relays at once publish every event exactly once."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import timedelta

import nats
from sqlalchemy import MetaData, text

from libs.common.db import Database
from libs.common.events import new_event
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


async def test_published_rows_are_purged_after_their_retention_and_no_others(
    pg_url: str,
) -> None:
    schema = f"purge_{uuid.uuid4().hex[:6]}"
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
    old_published, new_published, old_unpublished = events[0].id, events[1].id, events[2].id
    try:
        async with db.transaction() as conn:
            await write_events(conn, table, events)
            await conn.execute(
                text(
                    f"UPDATE {schema}.outbox SET published_at = now() - interval '8 days'"
                    " WHERE id = :old"
                ),
                {"old": old_published},
            )
            await conn.execute(
                text(f"UPDATE {schema}.outbox SET published_at = now() WHERE id = :new"),
                {"new": new_published},
            )
            await conn.execute(
                text(
                    f"UPDATE {schema}.outbox SET created_at = now() - interval '9 days'"
                    " WHERE id = :old"
                ),
                {"old": old_unpublished},
            )
        relay = OutboxRelay(db, EventBus("nats://127.0.0.1:1", "unused", {}), table)
        assert await relay.purge_published(timedelta(days=7)) == 1
        async with db.transaction() as conn:
            left = {str(r[0]) for r in await conn.execute(text(f"SELECT id FROM {schema}.outbox"))}
        assert left == {e.id for e in events} - {old_published}
    finally:
        async with db.engine.begin() as conn:
            await conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        await db.close()
