"""The durable consumer in batches: a backlog applied exactly once across a stop in the
middle of a batch, a poison event dead-lettered alone, a redelivered batch counted once,
the lag observed. Prints (never asserts) events/s."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import nats
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import Column, Integer, MetaData, String, Table, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.db import Database
from libs.common.events import CloudEvent
from libs.common.events.base import EventData
from libs.common.events.bus import EventBus
from libs.common.events.consumer import DurableConsumer, EventHandler, inbox_table
from tests.support import schema_database, short_ack_durable, stream_bus

SCHEMA = "consumer_batches_test"
metadata = MetaData()
inbox = inbox_table(metadata, SCHEMA)
effects = Table(
    "effects",
    metadata,
    Column("n", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False),
    Column("record", String(64), nullable=False),
    Column("seq", Integer, nullable=False),
    schema=SCHEMA,
)


@pytest.fixture(scope="module")
async def db(pg_url: str) -> AsyncIterator[Database]:
    async with schema_database(pg_url, SCHEMA, metadata) as database:
        yield database


@pytest.fixture
async def bus(nats_url: str) -> AsyncIterator[EventBus]:
    async with stream_bus(nats_url, "consumer-batches-test", "B") as b:
        yield b


class Step(EventData):
    """A step of a record: the handlers write (record, seq)."""

    record: str
    seq: int


def step(stream: str, record: str, seq: int, kind: str = "step.v1") -> CloudEvent:
    return CloudEvent(
        id=str(uuid.uuid4()),
        source="/services/test",
        type=f"{stream.lower()}.{kind}",
        subject=record,
        time="2026-01-01T00:00:00Z",
        data={"record": record, "seq": seq},
    )


async def write(conn: AsyncConnection, ev: CloudEvent, data: Step) -> None:
    await conn.execute(effects.insert().values(event_id=ev.id, record=data.record, seq=data.seq))


batch_calls: list[int] = []


async def write_batch(conn: AsyncConnection, events: Sequence[tuple[CloudEvent, Any]]) -> None:
    """The batch form of `write`: one statement; refuses a batch holding a poison event."""
    batch_calls.append(len(events))
    if any(data.seq < 0 for _, data in events):
        raise RuntimeError("cannot apply")
    await conn.execute(
        effects.insert(),
        [{"event_id": e.id, "record": d.record, "seq": d.seq} for e, d in events],
    )


def consumer(db: Database, bus: EventBus, durable: str, **kw: Any) -> DurableConsumer:
    stream = bus.test_stream  # type: ignore[attr-defined]
    handler = EventHandler(Step, write, write_batch)
    return DurableConsumer(
        db,
        bus,
        inbox,
        durable=durable,
        stream=stream,
        subject=f"{stream.lower()}.>",
        handlers={f"{stream.lower()}.step.v1": handler, f"{stream.lower()}.poison.v1": handler},
        **kw,
    )


async def publish(bus: EventBus, events: Sequence[CloudEvent], suffix: str = "") -> None:
    for e in events:
        await bus.js.publish(
            e.type, e.model_dump_json().encode(), headers={"Nats-Msg-Id": e.id + suffix}
        )


async def short_ack_wait(bus: EventBus, durable: str) -> None:
    """The durable made beforehand with a 2 s ack wait (the consumer binds to it), so what a
    stopped consumer fetched but did not ack comes back quickly."""
    stream = bus.test_stream  # type: ignore[attr-defined]
    await bus.js.add_consumer(stream, short_ack_durable(durable, f"{stream.lower()}.>"))


async def applied(db: Database, ids: Sequence[str]) -> dict[str, int]:
    """How many times each event's effect was written."""
    async with db.transaction() as conn:
        rows = await conn.execute(
            select(effects.c.event_id, func.count())
            .where(effects.c.event_id.in_(list(ids)))
            .group_by(effects.c.event_id)
        )
        return {r[0]: int(r[1]) for r in rows}


async def until(check: Any, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_backlog_stopped_mid_batch_and_restarted_is_applied_once(
    db: Database, bus: EventBus
) -> None:
    stream = bus.test_stream  # type: ignore[attr-defined]
    durable = f"k-{stream}"
    await short_ack_wait(bus, durable)
    events = [step(stream, f"r{i % 50}", i // 50) for i in range(4000)]
    await publish(bus, events)
    ids = [e.id for e in events]
    first = consumer(db, bus, durable)
    started = time.monotonic()
    first.start()
    await until(lambda: _at_least(db, ids, 700))
    await first.stop()  # cancelled wherever it is: a batch's transaction or its acks
    assert len(await applied(db, ids)) < len(ids), "it finished before it could be stopped"
    second = consumer(db, bus, durable)
    second.start()
    try:
        await until(lambda: _at_least(db, ids, len(ids)))
        seconds = time.monotonic() - started
        await asyncio.sleep(2.5)  # what the first had fetched comes back: skipped
    finally:
        await second.stop()
    print(
        f"\nconsumer backlog (one insert per batch): {len(ids)} events in {seconds:.2f} s,"
        f" a stop and a restart included: {len(ids) / seconds:.0f} events/s (noisy)"
    )
    counts = await applied(db, ids)
    assert set(counts.values()) == {1}
    assert len(counts) == len(ids)


async def steps_in_order(db: Database, ids: Sequence[str]) -> bool:
    """Whether each record's steps were written in stream order."""
    async with db.transaction() as conn:
        rows = await conn.execute(
            select(effects.c.record, effects.c.seq)
            .where(effects.c.event_id.in_(list(ids)))
            .order_by(effects.c.n)
        )
        seen: dict[str, list[int]] = {}
        for record, seq in rows:
            seen.setdefault(record, []).append(seq)
    return all(seqs == sorted(seqs) for seqs in seen.values())


async def _at_least(db: Database, ids: Sequence[str], n: int) -> bool:
    return len(await applied(db, ids)) >= n


async def test_a_poison_event_in_a_batch_is_dead_lettered_alone(
    db: Database, bus: EventBus, nats_url: str
) -> None:
    stream = bus.test_stream  # type: ignore[attr-defined]
    durable = f"p-{stream}"
    good = [step(stream, f"r{i}", 1) for i in range(60)]
    poison = step(stream, "bad", -1, "poison.v1")
    events = [*good[:30], poison, *good[30:]]
    await publish(bus, events)
    batch_calls.clear()
    c = consumer(db, bus, durable, max_deliveries=3)
    c.start()
    try:
        await until(lambda: _at_least(db, [e.id for e in good], len(good)))
        await until(lambda: _dead_lettered(nats_url, durable))
    finally:
        await c.stop()
    assert batch_calls[0] == len(events)  # the whole fetch in one call first
    counts = await applied(db, [e.id for e in events])
    assert poison.id not in counts
    assert set(counts.values()) == {1}
    assert len(counts) == len(good)
    [msg] = await _dead_letters(nats_url, durable)
    assert msg.subject == f"deadletter.{durable}.{poison.type}"
    assert json.loads(msg.data)["id"] == poison.id


async def _dead_letters(nats_url: str, durable: str) -> list[Any]:
    nc = await nats.connect(nats_url)
    try:
        sub = await nc.jetstream().pull_subscribe(f"deadletter.{durable}.>", stream="DEADLETTER")
        try:
            return list(await sub.fetch(10, timeout=0.5))
        except TimeoutError:
            return []
    finally:
        await nc.close()


async def _dead_lettered(nats_url: str, durable: str) -> bool:
    return bool(await _dead_letters(nats_url, durable))


async def test_a_redelivered_batch_is_counted_once(db: Database, bus: EventBus) -> None:
    stream = bus.test_stream  # type: ignore[attr-defined]
    durable = f"d-{stream}"
    events = [step(stream, f"r{i % 10}", i // 10) for i in range(150)]
    service = SCHEMA
    labels = {"service": service, "consumer": durable}
    await publish(bus, events)
    await publish(bus, events, suffix="-again")  # the broker keeps both copies
    c = consumer(db, bus, durable)
    c.start()
    try:
        await until(lambda: _sequence_reached(c, 2 * len(events)))
    finally:
        await c.stop()
    counts = await applied(db, [e.id for e in events])
    assert set(counts.values()) == {1}
    assert len(counts) == len(events)
    assert await steps_in_order(db, [e.id for e in events])
    applied_total = metric("komar_events_applied_total", **labels, type=f"{stream.lower()}.step.v1")
    assert applied_total == len(events)
    assert metric("komar_events_duplicate_total", **labels) == len(events)
    # the lag of each applied event, from its `time` (in January 2026): above 1 s
    assert metric("komar_events_lag_seconds_count", **labels) == len(events)
    assert metric("komar_events_lag_seconds_bucket", **labels, le="1.0") == 0


async def _sequence_reached(c: DurableConsumer, n: int) -> bool:
    return c.last_sequence >= n
