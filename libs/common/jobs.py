"""Periodic jobs: the one loop of every process, and ticks claimed once across replicas.

`PeriodicJobs` runs the jobs of one process (a service's runtime or the gateway's). A job
runs either on every replica (a chore on the process's own memory: refreshed keys, rate-limit
buckets), or once per tick however many replicas run it.

Time is cut into ticks of the job's interval (tick = floor(epoch seconds / interval)). Before
running a job, a process claims the tick in its schema's `job_runs` table with one atomic
statement; of several replicas waking at the same tick, exactly one gets the row back and
runs the job, the others skip that tick.

A tick is also claimable when the job has not run for a whole interval: ticks of a longer
interval are smaller numbers, so after the interval is lengthened (or a clock jumped back)
the stored tick would otherwise block the job for a long time.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, MetaData, String, Table, func
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common import store
from libs.common.db import Database
from libs.common.logging import exception_facts, get_logger
from libs.common.metrics import JOB_RUNS

log = get_logger(__name__)

# Wake this long after a tick begins, so every replica reads the new tick off its clock.
_TICK_SLACK_S = 0.02

Job = Callable[[], Awaitable[Any]]


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


@dataclass(frozen=True)
class _Declared:
    name: str
    interval_s: float
    job: Job
    once_across_replicas: bool


class PeriodicJobs:
    """The periodic jobs of one process, declared before `start` and stopped together.

    A job that fails is logged (`job.failed`, without the exception's message) and runs
    again at its next turn; each run is counted in `komar_job_runs_total`.
    """

    def __init__(self, process: str, claims: tuple[Database, Table] | None = None) -> None:
        """`claims`: the database and the schema's `job_runs` table where ticks of jobs
        run once across replicas are claimed (none: every job runs on every replica)."""
        self.process = process
        self._claims = claims
        self._declared: list[_Declared] = []
        self._tasks: list[asyncio.Task[None]] = []

    def __len__(self) -> int:
        return len(self._declared)

    def every(self, name: str, interval_s: float, job: Job, *, once_across_replicas: bool) -> None:
        """Declare a job run every `interval_s`. Once across replicas, it runs once per
        tick (tick = floor(epoch seconds / interval)) on whichever replica claims it; else
        on each replica, `interval_s` after its previous run ended."""
        if interval_s <= 0:
            raise ValueError(f"job {name}: the interval must be positive")
        if once_across_replicas and self._claims is None:
            raise ValueError(f"job {name}: no job_runs table to claim its ticks in")
        self._declared.append(_Declared(name, interval_s, job, once_across_replicas))

    async def claim(self, name: str, interval_s: float) -> bool:
        """Whether this process runs job `name` in the current tick (one replica does)."""
        if self._claims is None:
            raise ValueError(f"job {name}: no job_runs table to claim its ticks in")
        db, table = self._claims
        async with db.transaction() as conn:
            return await claim_tick(conn, table, name, tick_of(interval_s), interval_s)

    def start(self) -> None:
        for declared in self._declared:
            loop = self._claimed_loop if declared.once_across_replicas else self._replica_loop
            self._tasks.append(
                asyncio.create_task(loop(declared), name=f"{self.process}:{declared.name}")
            )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def _run(self, declared: _Declared) -> None:
        JOB_RUNS.labels(self.process, declared.name).inc()
        await declared.job()

    async def _claimed_loop(self, declared: _Declared) -> None:
        while True:
            try:
                if await self.claim(declared.name, declared.interval_s):
                    await self._run(declared)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("job.failed", job=declared.name, **exception_facts(exc))
            await asyncio.sleep(seconds_to_next_tick(declared.interval_s) + _TICK_SLACK_S)

    async def _replica_loop(self, declared: _Declared) -> None:
        while True:
            await asyncio.sleep(declared.interval_s)
            try:
                await self._run(declared)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("job.failed", job=declared.name, **exception_facts(exc))
