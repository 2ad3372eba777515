"""Periodic jobs that run once per tick however many replicas run them.

Time is cut into ticks of the job's interval (tick = floor(epoch seconds / interval)). Before
running a job, a process claims the tick in its schema's `job_runs` table with one atomic
statement; of several replicas waking at the same tick, exactly one gets the row back and
runs the job, the others skip that tick.

A tick is also claimable when the job has not run for a whole interval: ticks of a longer
interval are smaller numbers, so after the interval is lengthened (or a clock jumped back)
the stored tick would otherwise block the job for a long time.
"""

from __future__ import annotations

import math
import time

from sqlalchemy import BigInteger, Column, DateTime, MetaData, String, Table, func
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common import store


def job_runs_table(metadata: MetaData, schema: str) -> Table:
    """The last tick each periodic job of one schema was claimed for."""
    return Table(
        "job_runs",
        metadata,
        Column("job", String(100), primary_key=True),
        Column("last_tick", BigInteger, nullable=False),
        Column("last_run_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        schema=schema,
    )


def tick_of(interval_s: float, now: float | None = None) -> int:
    """The tick a moment falls in: floor(epoch seconds / interval)."""
    return math.floor((time.time() if now is None else now) / interval_s)


def seconds_to_next_tick(interval_s: float, now: float | None = None) -> float:
    """How long until the next tick begins."""
    now = time.time() if now is None else now
    return (math.floor(now / interval_s) + 1) * interval_s - now


async def claim_tick(
    conn: AsyncConnection, table: Table, job: str, tick: int, interval_s: float
) -> bool:
    """Claim `tick` of `job`: True for exactly one caller per tick, False for the others.

    One statement: the row is inserted, or moved to this tick when its tick is older (or
    its last run is more than an interval ago), and returned only when this caller wrote
    it. A concurrent claimer of the same tick waits on the row lock, then finds it taken.
    """
    return await store.claim_job_tick(conn, table, job, tick, interval_s)
