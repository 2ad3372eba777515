"""What a service process holds while it runs: pool, bus, relay, consumers, periodic jobs.

Every part is safe to run in several replicas at once: the relay claims outbox rows with
SKIP LOCKED, consumers share one durable JetStream consumer and de-duplicate through the
inbox, and each tick of a periodic job is claimed in the schema's `job_runs` table, so it
runs on one replica only.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from sqlalchemy import Table

from libs.common import places
from libs.common.auth import JwksFetcher, Principal, TokenVerifier, http_jwks_fetcher
from libs.common.db import Database
from libs.common.events.bus import EventBus
from libs.common.events.consumer import DurableConsumer, Handler
from libs.common.events.relay import OutboxRelay
from libs.common.http import Idempotency, Work, run_idempotent
from libs.common.jobs import claim_tick, seconds_to_next_tick, tick_of
from libs.common.logging import exception_facts, get_logger
from libs.common.metrics import JOB_RUNS
from libs.common.settings import Settings

log = get_logger(__name__)

# Wake this long after a tick begins, so every replica reads the new tick off its clock.
_TICK_SLACK_S = 0.02


class ServiceRuntime:
    """The long-lived parts of one service process, started and stopped together."""

    def __init__(
        self,
        service: str,
        settings: Settings,
        *,
        outbox: Table,
        inbox: Table,
        idempotency: Table,
        streams: dict[str, list[str]],
        jobs: Table,
        jwks_fetcher: JwksFetcher | None = None,
    ) -> None:
        """The tables are the schema's own: `outbox_table`, `inbox_table`,
        `idempotency_table` and `job_runs_table` (which makes periodic jobs run once per
        tick across replicas)."""
        self.service = service
        self.settings = settings
        self.db = Database(
            settings.database_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
        )
        self.bus = EventBus(settings.nats_url, f"komar-{service}", streams)
        self.relay = OutboxRelay(
            self.db, self.bus, outbox, interval_s=settings.relay_interval_s, service=service
        )
        self.inbox = inbox
        self.jobs = jobs
        self.idempotency = Idempotency(idempotency)
        self.verifier = TokenVerifier(
            jwks_fetcher or http_jwks_fetcher(settings.jwks_url),
            issuer=settings.issuer,
            audience=settings.audience,
        )
        self.consumers: list[DurableConsumer] = []
        self._jobs: list[tuple[str, float, Callable[[], Awaitable[Any]]]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.every("idempotency-purge", settings.idempotency_purge_s, self._purge_idempotency)
        self.every("outbox-purge", settings.outbox_purge_s, self._purge_outbox)

    async def write(self, request: Request, principal: Principal, work: Work) -> Response:
        """Run a POST's work in one transaction (honouring Idempotency-Key), then wake the
        relay so the events it wrote leave at once."""
        answer = await run_idempotent(self.db, self.idempotency, request, principal, work)
        self.relay.notify()
        return answer

    async def _purge_outbox(self) -> None:
        await self.relay.purge_published(timedelta(seconds=self.settings.outbox_retention_s))

    async def _purge_idempotency(self) -> None:
        async with self.db.transaction() as conn:
            await self.idempotency.purge_expired(conn)

    def consume(
        self, durable: str, stream: str, subject: str, handlers: dict[str, Handler]
    ) -> None:
        """Declare a durable consumer (started with the runtime)."""
        self.consumers.append(
            DurableConsumer(
                self.db,
                self.bus,
                self.inbox,
                durable=durable,
                stream=stream,
                subject=subject,
                handlers=handlers,
                max_deliveries=self.settings.consumer_max_deliveries,
                service=self.service,
            )
        )

    def every(self, name: str, interval_s: float, job: Callable[[], Awaitable[Any]]) -> None:
        """Declare a periodic job (started with the runtime), run once per tick of
        `interval_s` across all replicas: tick = floor(epoch seconds / interval)."""
        if interval_s <= 0:
            raise ValueError(f"job {name}: the interval must be positive")
        self._jobs.append((name, interval_s, job))

    async def claim(self, name: str, interval_s: float) -> bool:
        """Whether this process runs job `name` in the current tick (one replica does)."""
        async with self.db.transaction() as conn:
            return await claim_tick(conn, self.jobs, name, tick_of(interval_s), interval_s)

    async def _loop(self, name: str, interval_s: float, job: Callable[[], Awaitable[Any]]) -> None:
        runs = JOB_RUNS.labels(self.service, name)
        while True:
            try:
                if await self.claim(name, interval_s):
                    runs.inc()
                    await job()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("job.failed", job=name, **exception_facts(exc))
            await asyncio.sleep(seconds_to_next_tick(interval_s) + _TICK_SLACK_S)

    async def start(self) -> None:
        places.load()
        self.bus.start()
        self.relay.start()
        for consumer in self.consumers:
            consumer.start()
        for name, interval, job in self._jobs:
            self._tasks.append(asyncio.create_task(self._loop(name, interval, job), name=name))
        log.info(
            "service.started",
            consumers=len(self.consumers),
            jobs=len(self._jobs),
            jobs_claimed=self.jobs is not None,
        )

    async def stop(self) -> None:
        """Stop taking work, drain consumers, flush the relay, close the pool and the bus."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for consumer in self.consumers:
            await consumer.stop()
        await self.relay.stop()
        await self.bus.close()
        await self.db.close()
        log.info("service.stopped")

    async def ready(self) -> dict[str, bool]:
        """Readiness checks: database and broker reachable."""
        return {"database": await self.db.ping(), "broker": self.bus.connected}
