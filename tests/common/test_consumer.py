"""The durable consumer applies each event once, and dead-letters poison after bounded tries."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import nats
import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, select
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.db import Database
from libs.common.events import CloudEvent
from libs.common.events.base import EventData
from libs.common.events.bus import EventBus
from libs.common.events.catalog import REGISTRY_EVENTS, ChildUpdatedV1, ChildV1
from libs.common.events.consumer import DurableConsumer, EventHandler, handle, inbox_table
from tests.support import schema_database, stream_bus

SCHEMA = "consumer_test"
metadata = MetaData()
inbox = inbox_table(metadata, SCHEMA)
effects = Table(
    "effects",
    metadata,
    Column("n", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False),
    schema=SCHEMA,
)


@pytest.fixture(scope="module")
async def db(pg_url: str) -> AsyncIterator[Database]:
    async with schema_database(pg_url, SCHEMA, metadata) as database:
        yield database


@pytest.fixture
async def bus(nats_url: str) -> AsyncIterator[EventBus]:
    async with stream_bus(nats_url, "consumer-test", "T") as b:
        yield b


class Thing(EventData):
    """The data of the test's events: none."""


def event(stream: str, kind: str = "thing.happened.v1") -> CloudEvent:
    return CloudEvent(
        id=str(uuid.uuid4()),
        source="/services/test",
        type=f"{stream.lower()}.{kind}",
        subject="x",
        time="2026-01-01T00:00:00Z",
        data={},
    )


async def count_effects(db: Database, event_id: str) -> int:
    async with db.transaction() as conn:
        rows = await conn.execute(select(effects).where(effects.c.event_id == event_id))
        return len(rows.all())


async def test_an_event_delivered_twice_is_applied_once(db: Database, bus: EventBus) -> None:
    stream = bus.test_stream  # type: ignore[attr-defined]
    e = event(stream)

    async def apply(conn: AsyncConnection, ev: CloudEvent, data: Thing) -> None:
        await conn.execute(effects.insert().values(event_id=ev.id))

    consumer = DurableConsumer(
        db,
        bus,
        inbox,
        durable=f"c-{stream}",
        stream=stream,
        subject=f"{stream.lower()}.>",
        handlers={e.type: EventHandler(Thing, apply)},
    )
    payload = e.model_dump_json().encode()
    # published twice with different message ids: the broker cannot de-duplicate, the inbox must
    await bus.js.publish(e.type, payload, headers={"Nats-Msg-Id": "a"})
    await bus.js.publish(e.type, payload, headers={"Nats-Msg-Id": "b"})
    consumer.start()
    try:
        for _ in range(50):
            if consumer.last_sequence >= 2:
                break
            await asyncio.sleep(0.1)
    finally:
        await consumer.stop()
    assert await count_effects(db, e.id) == 1


async def test_poison_is_dead_lettered_after_bounded_tries(
    db: Database, bus: EventBus, nats_url: str
) -> None:
    stream = bus.test_stream  # type: ignore[attr-defined]
    poison, good = event(stream, "poison.v1"), event(stream)
    tries = 0

    async def explode(conn: AsyncConnection, ev: CloudEvent, data: Thing) -> None:
        nonlocal tries
        tries += 1
        raise RuntimeError("cannot apply")

    async def apply(conn: AsyncConnection, ev: CloudEvent, data: Thing) -> None:
        await conn.execute(effects.insert().values(event_id=ev.id))

    durable = f"p-{stream}"
    consumer = DurableConsumer(
        db,
        bus,
        inbox,
        durable=durable,
        stream=stream,
        subject=f"{stream.lower()}.>",
        handlers={poison.type: EventHandler(Thing, explode), good.type: EventHandler(Thing, apply)},
        max_deliveries=3,
    )
    await bus.js.publish(poison.type, poison.model_dump_json().encode())
    await bus.js.publish(good.type, good.model_dump_json().encode())
    await bus.js.publish(f"{stream.lower()}.garbage.v1", b"{not json")
    consumer.start()
    try:
        for _ in range(200):
            if tries >= 3 and await count_effects(db, good.id) == 1:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
    finally:
        await consumer.stop()
    assert tries == 3
    assert await count_effects(db, good.id) == 1
    nc = await nats.connect(nats_url)
    try:
        sub = await nc.jetstream().pull_subscribe(f"deadletter.{durable}.>", stream="DEADLETTER")
        msgs = await sub.fetch(10, timeout=2)
        subjects = sorted(m.subject for m in msgs)
        assert subjects == sorted(
            [f"deadletter.{durable}.{poison.type}", f"deadletter.{durable}.unparseable"]
        )
        assert json.loads(next(m for m in msgs if "poison" in m.subject).data)["id"] == poison.id
    finally:
        await nc.close()


class Counted(EventData):
    """The data of an event that carries a number."""

    n: int


async def test_an_event_whose_data_is_not_its_model_is_dead_lettered_at_once(
    db: Database, bus: EventBus, nats_url: str
) -> None:
    stream = bus.test_stream  # type: ignore[attr-defined]
    invalid, good = event(stream, "counted.v1"), event(stream, "counted.v1")
    invalid.data, good.data = {"n": "many"}, {"n": 1}
    seen: list[int] = []

    async def apply(conn: AsyncConnection, ev: CloudEvent, data: Counted) -> None:
        seen.append(data.n)
        await conn.execute(effects.insert().values(event_id=ev.id))

    durable = f"v-{stream}"
    consumer = DurableConsumer(
        db,
        bus,
        inbox,
        durable=durable,
        stream=stream,
        subject=f"{stream.lower()}.>",
        handlers={good.type: EventHandler(Counted, apply)},
        max_deliveries=3,
    )
    await bus.js.publish(invalid.type, invalid.model_dump_json().encode())
    await bus.js.publish(good.type, good.model_dump_json().encode())
    consumer.start()
    try:
        for _ in range(100):
            if consumer.last_sequence >= 2:
                break
            await asyncio.sleep(0.1)
    finally:
        await consumer.stop()
    assert seen == [1]  # the handler only ever saw the checked data
    assert await count_effects(db, invalid.id) == 0
    nc = await nats.connect(nats_url)
    try:
        sub = await nc.jetstream().pull_subscribe(f"deadletter.{durable}.>", stream="DEADLETTER")
        [msg] = await sub.fetch(10, timeout=2)
        assert msg.subject == f"deadletter.{durable}.{invalid.type}"
        assert (msg.headers or {}).get("Komar-Reason") == "invalid"
        assert json.loads(msg.data)["id"] == invalid.id
    finally:
        await nc.close()


def test_a_handler_is_declared_only_for_types_that_carry_its_model() -> None:
    async def apply(conn: AsyncConnection, ev: CloudEvent, child: ChildV1) -> None:
        return None

    handlers = handle(REGISTRY_EVENTS, ChildV1, apply)
    # each type is checked against its own model: an update's data has `changed` too
    assert handlers["registry.child.updated.v1"].model is ChildUpdatedV1
    with pytest.raises(TypeError, match="carries ReferralV1"):
        handle(["referrals.referral.created.v1"], ChildV1, apply)
