"""The live consumers with a backlog: applied in batches, exactly once across a stop in the
middle of a batch, and the same cells as a rebuild. Prints (never asserts) events/s."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from deploy.local.infra import EmbeddedNats
from libs.common import places
from libs.common.events import CloudEvent
from libs.common.events.consumer import DurableConsumer
from libs.common.settings import Settings
from services.indicators import dates, jetstream, replay, service
from services.indicators.store import bookkeeping, counting
from tests.indicators.conftest import (
    child_event,
    durables_with_short_ack_wait,
    grant_event,
    publish,
    referral_event,
    uuid_of,
)
from tests.support import SigningKeys, running_service

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
async def indicators_app(
    own_db: str, own_nats: EmbeddedNats, keys: SigningKeys
) -> AsyncIterator[FastAPI]:
    """The app, its durables made beforehand with a 2 s ack wait (it binds to existing
    ones), so what a stopped consumer had fetched but not acked comes back quickly."""
    await durables_with_short_ack_wait(own_nats.url)
    settings = Settings(
        database_url=own_db, nats_url=own_nats.url, log_json=True, log_level="warning"
    )
    async with running_service("services.indicators", settings, keys) as app:
        await service.roll_forward(app.state.runtime.db)  # stock cells live: the costly path
        yield app


def backlog(
    n: int, seed: int, year: int = 2025, months: tuple[int, int] = (1, 12)
) -> tuple[list[CloudEvent], int]:
    """n children registered in some months of a year, a third closed at its last month's
    end, with referrals and grants for some: the events and how many registrations."""
    rng = random.Random(seed)
    communes = [c for c in places.all_communes() if c[:2] in ("12", "17")]
    events: list[CloudEvent] = []
    for i in range(n):
        cid = uuid_of(f"backlog-{seed}-{i}")
        month, day = rng.randint(*months), rng.randint(1, 28)
        commune = rng.choice(communes)
        common: dict[str, Any] = {
            "commune": commune,
            "sex": rng.choice(("female", "male")),
            "birth": f"{rng.randint(year - 17, year - 1)}-{rng.randint(1, month):02d}",
            "registered_on": f"{year}-{month:02d}-{day:02d}",
        }
        when = f"{year}-{month:02d}-{day:02d}T03:00:00Z"
        events.append(child_event("registered", cid, version=1, when=when, **common))
        if rng.random() < 1 / 3:
            events.append(
                child_event(
                    "closed",
                    cid,
                    version=2,
                    status="closed",
                    when=f"{year}-{months[1]:02d}-28T03:00:00Z",
                    **common,
                )
            )
        if rng.random() < 1 / 4:
            rid = uuid_of(f"backlog-ref-{seed}-{i}")
            for version, verb in enumerate(("created", "accepted"), start=1):
                events.append(
                    referral_event(
                        verb,
                        rid,
                        child_id=cid,
                        commune=commune,
                        service_type="health",
                        version=version,
                        when=when,
                    )
                )
        if rng.random() < 1 / 8:
            gid = uuid_of(f"backlog-grant-{seed}-{i}")
            for version, verb in enumerate(("approved", "disbursed"), start=1):
                events.append(
                    grant_event(
                        verb,
                        gid,
                        child_id=cid,
                        commune=commune,
                        category="food",
                        amount=100_000,
                        version=version,
                        when=when,
                    )
                )
    return events, n


def consumers(app: FastAPI) -> list[DurableConsumer]:
    return list(app.state.runtime.consumers)


async def stream_ends(own_nats: EmbeddedNats) -> dict[str, int]:
    nc = await nats.connect(own_nats.url)
    try:
        js = nc.jetstream()
        return {s: int((await js.stream_info(s)).state.last_seq) for s in jetstream.CONSUMERS}
    finally:
        await nc.close()


async def applied_through(
    app: FastAPI, ends: dict[str, int], timeout: float = 180
) -> dict[str, float]:
    """Wait until every durable's ack floor reaches the stream's end as it was; when each
    did (monotonic seconds)."""
    js = app.state.runtime.bus.js
    deadline = time.monotonic() + timeout
    done: dict[str, float] = {}
    while len(done) < len(ends):
        for stream in ends:
            if stream not in done:
                durable = jetstream.CONSUMERS[stream][0]
                state = await jetstream.stream_status(js, stream, durable)
                if state["last_applied_sequence"] >= ends[stream]:
                    done[stream] = time.monotonic()
        assert time.monotonic() < deadline, done
        await asyncio.sleep(0.02)
    return done


async def totals(app: FastAPI) -> tuple[int, dict[Any, int], int]:
    async with app.state.runtime.db.transaction() as conn:
        target = await bookkeeping.active_target(conn)
        cells = await counting.nonzero_cells(conn, target.generation)
        inbox = await conn.scalar(
            text("SELECT count(*) FROM indicators.applied_events WHERE generation = :g"),
            {"g": target.generation},
        )
        return target.generation, cells, int(inbox or 0)


def registrations(cells: dict[Any, int]) -> int:
    """CP_CHILD_REG over the year cells."""
    return sum(
        v for (ind, period, _, _), v in cells.items() if ind == "CP_CHILD_REG" and len(period) == 4
    )


@pytest.mark.parametrize("when", ["registered this month", "registered over 2025"])
async def test_a_backlog_is_applied_in_batches_then_equals_a_rebuild(
    indicators_app: FastAPI, own_nats: EmbeddedNats, when: str
) -> None:
    """Registered this month (an import, the bench's shape), a child's version changes one
    month's stock cells; registered over 2025, each changes every month since."""
    if when == "registered this month":
        year, month = dates.year_month(dates.current_month())
        events, children = backlog(3000, seed=10, year=year, months=(month, month))
    else:
        events, children = backlog(3000, seed=11)
    _, before, before_inbox = await totals(indicators_app)
    for consumer in consumers(indicators_app):
        await consumer.stop()
    await publish(own_nats.url, events)
    ends = await stream_ends(own_nats)
    by_stream = Counter(e.type.split(".")[0].upper() for e in events)
    for consumer in consumers(indicators_app):  # one at a time: each one's own figure
        started, cpu = time.monotonic(), time.process_time()
        consumer.start()
        await applied_through(indicators_app, {consumer.stream: ends[consumer.stream]})
        seconds, cpu = time.monotonic() - started, time.process_time() - cpu
        n = by_stream[consumer.stream]
        if not n:  # a stream the backlog has no events of (CASEWORK)
            continue
        print(
            f"\nindicators backlog {when}, {consumer.durable} alone: {n} events in"
            f" {seconds:.2f} s: {n / seconds:.0f} events/s, {1000 * cpu / n:.2f} ms of this"
            " process's CPU per event (2 shared cores: noisy)"
        )
    generation, live, inbox = await totals(indicators_app)
    assert inbox == before_inbox + len(events)
    assert registrations(live) == registrations(before) + children
    result = await replay.rebuild(
        indicators_app.state.runtime.db, indicators_app.state.runtime.bus.js
    )
    assert result.generation == generation + 1
    rebuilt_generation, rebuilt, _ = await totals(indicators_app)
    assert rebuilt_generation == generation + 1
    assert rebuilt == live


async def test_stopped_in_the_middle_of_a_batch_and_restarted_each_event_counts_once(
    indicators_app: FastAPI, own_nats: EmbeddedNats
) -> None:
    _, before, before_inbox = await totals(indicators_app)
    events, children = backlog(2000, seed=12)
    registry = next(c for c in consumers(indicators_app) if c.stream == "REGISTRY")
    start_seq = registry.last_sequence
    for consumer in consumers(indicators_app):
        await consumer.stop()
    await publish(own_nats.url, events)
    ends = await stream_ends(own_nats)
    for consumer in consumers(indicators_app):
        consumer.start()
    deadline = time.monotonic() + 60
    while registry.last_sequence < start_seq + 300:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.001)
    for consumer in consumers(indicators_app):
        await consumer.stop()  # cancelled wherever it is: in a batch's transaction or its acks
    assert registry.last_sequence < ends["REGISTRY"], "it finished before it could be stopped"
    for consumer in consumers(indicators_app):
        consumer.start()
    await applied_through(indicators_app, ends)
    _, live, inbox = await totals(indicators_app)
    assert inbox == before_inbox + len(events)
    assert registrations(live) == registrations(before) + children
    await replay.rebuild(indicators_app.state.runtime.db, indicators_app.state.runtime.bus.js)
    _, rebuilt, _ = await totals(indicators_app)
    assert rebuilt == live


async def test_an_uncountable_event_in_a_batch_is_dead_lettered_at_once_the_rest_counted(
    indicators_app: FastAPI, own_nats: EmbeddedNats
) -> None:
    _, before, _ = await totals(indicators_app)
    events, children = backlog(300, seed=13, year=2026, months=(1, 1))
    registrations_ = [e for e in events if e.type == "registry.child.registered.v1"]
    nowhere = child_event(
        "registered",
        uuid_of("backlog-nowhere"),
        commune="129999",  # no such commune in the gazetteer
        sex="female",
        birth="2019-01",
        registered_on="2026-01-05",
        version=1,
        when="2026-01-05T03:00:00Z",
    )
    for consumer in consumers(indicators_app):
        await consumer.stop()
    await publish(own_nats.url, [*registrations_[:150], nowhere, *registrations_[150:]])
    ends = await stream_ends(own_nats)
    for consumer in consumers(indicators_app):
        consumer.start()
    await applied_through(indicators_app, ends, timeout=60)
    _, live, _ = await totals(indicators_app)
    assert registrations(live) == registrations(before) + children
    nc = await nats.connect(own_nats.url)
    try:
        sub = await nc.jetstream().pull_subscribe(
            "deadletter.indicators-registry.>", stream="DEADLETTER"
        )
        [msg] = await sub.fetch(10, timeout=2)
        assert (msg.headers or {}).get("Komar-Reason") == "invalid"
        assert json.loads(msg.data)["id"] == nowhere.id
    finally:
        await nc.close()
