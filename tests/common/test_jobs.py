"""Periodic jobs run once per tick, however many replicas run them."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import MetaData, text

from libs.common.db import Database
from libs.common.jobs import claim_tick, seconds_to_next_tick, tick_of
from libs.common.runtime import ServiceRuntime
from libs.common.settings import Settings
from libs.common.tables import common_tables
from tests.support import schema_database

SCHEMA = "jobs_test"
metadata = MetaData()
tables = common_tables(metadata, SCHEMA)
job_runs = tables.job_runs


@pytest.fixture(scope="module")
async def db(pg_url: str) -> AsyncIterator[Database]:
    async with schema_database(pg_url, SCHEMA, metadata) as database:
        yield database


def test_ticks_cut_time_by_the_interval() -> None:
    assert tick_of(2.0, now=10.0) == 5
    assert tick_of(2.0, now=11.999) == 5
    assert tick_of(0.5, now=10.25) == 20
    assert seconds_to_next_tick(2.0, now=11.5) == pytest.approx(0.5)


async def test_of_many_concurrent_claims_of_a_tick_exactly_one_wins(db: Database) -> None:
    job = f"job-{uuid.uuid4().hex[:6]}"

    async def claim(tick: int) -> bool:
        async with db.transaction() as conn:
            return await claim_tick(conn, job_runs, job, tick, 60.0)

    first = await asyncio.gather(*(claim(100) for _ in range(12)))  # the row is new
    assert first.count(True) == 1
    later = await asyncio.gather(*(claim(101) for _ in range(12)))  # the row moves on
    assert later.count(True) == 1
    assert await claim(101) is False  # taken
    assert await claim(99) is False  # the past never comes back
    assert await claim(102) is True


async def test_a_lengthened_interval_does_not_block_the_job(db: Database) -> None:
    job = f"job-{uuid.uuid4().hex[:6]}"

    async def claim(tick: int, interval_s: float) -> bool:
        async with db.transaction() as conn:
            return await claim_tick(conn, job_runs, job, tick, interval_s)

    assert await claim(tick_of(1.0), 1.0) is True  # ticks of a 1 s interval: big numbers
    assert await claim(tick_of(60.0), 60.0) is False  # just ran: wait for the interval
    async with db.transaction() as conn:  # a minute later
        await conn.execute(
            text(
                f"UPDATE {SCHEMA}.job_runs SET last_run_at = last_run_at - interval '61 s'"
                " WHERE job = :job"
            ),
            {"job": job},
        )
    assert await claim(tick_of(60.0), 60.0) is True
    assert await claim(tick_of(60.0), 60.0) is False  # and then once per tick again
    assert await claim(tick_of(60.0) + 1, 60.0) is True


async def test_two_replicas_run_a_job_once_per_tick(
    db: Database, pg_url: str, nats_url: str
) -> None:
    settings = Settings(database_url=pg_url, nats_url=nats_url, db_pool_size=2, log_json=True)
    interval = 0.2
    job = f"tick-{uuid.uuid4().hex[:6]}"
    ran: list[tuple[str, int]] = []

    def replica(name: str) -> ServiceRuntime:
        rt = ServiceRuntime("jobs_test", settings, tables, streams={})

        async def work() -> None:
            ran.append((name, tick_of(interval)))

        rt.every(job, interval, work)
        return rt

    replicas = [replica("a"), replica("b")]
    for rt in replicas:
        await rt.start()
    try:
        await asyncio.sleep(3.0)
    finally:
        for rt in replicas:
            await rt.stop()
    per_tick = Counter(tick for _, tick in ran)
    assert max(per_tick.values(), default=0) == 1, per_tick  # never twice in a tick
    assert len(ran) >= 3.0 / interval / 2  # and it does run (about 15 ticks; slack for a busy box)
    assert len(ran) <= 3.0 / interval + 2  # once per tick, not once per replica per tick
