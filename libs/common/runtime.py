"""What a service process holds while it runs: pool, bus, relay, consumers, periodic jobs.

Every part is safe to run in several replicas at once: the relay claims outbox rows with
SKIP LOCKED, consumers share one durable JetStream consumer and de-duplicate through the
inbox, and each tick of a periodic job is claimed in the schema's `job_runs` table, so it
runs on one replica only.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import Response

from libs.common import places
from libs.common.auth import JwksFetcher, Principal, TokenVerifier, http_jwks_fetcher
from libs.common.db import Database
from libs.common.events.bus import EventBus
from libs.common.events.consumer import DurableConsumer, Handlers
from libs.common.events.relay import OutboxRelay
from libs.common.http import Idempotency, Work, run_idempotent
from libs.common.jobs import Job, PeriodicJobs
from libs.common.logging import get_logger
from libs.common.settings import Settings
from libs.common.tables import CommonTables

log = get_logger(__name__)


class ServiceRuntime:
    """The long-lived parts of one service process, started and stopped together."""

    def __init__(
        self,
        service: str,
        settings: Settings,
        tables: CommonTables,
        *,
        streams: dict[str, list[str]],
        jwks_fetcher: JwksFetcher | None = None,
    ) -> None:
        """`tables` are the schema's own (`common_tables` in its models); `job_runs` makes
        periodic jobs run once per tick across replicas."""
        self.service = service
        self.settings = settings
        self.db = Database(
            settings.database_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
        )
        self.bus = EventBus(settings.nats_url, f"komar-{service}", streams)
        self.relay = OutboxRelay(
            self.db, self.bus, tables.outbox, interval_s=settings.relay_interval_s, service=service
        )
        self.inbox = tables.inbox
        self.jobs = PeriodicJobs(service, claims=(self.db, tables.job_runs))
        self.idempotency = Idempotency(tables.idempotency)
        self.verifier = TokenVerifier(
            jwks_fetcher or http_jwks_fetcher(settings.jwks_url),
            issuer=settings.issuer,
            audience=settings.audience,
        )
        self.consumers: list[DurableConsumer] = []
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

    def consume(self, durable: str, stream: str, subject: str, handlers: Handlers) -> None:
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

    def every(self, name: str, interval_s: float, job: Job) -> None:
        """Declare a periodic job (started with the runtime), run once per tick of
        `interval_s` across all replicas: tick = floor(epoch seconds / interval)."""
        self.jobs.every(name, interval_s, job, once_across_replicas=True)

    async def start(self) -> None:
        places.load()
        self.bus.start()
        self.relay.start()
        for consumer in self.consumers:
            consumer.start()
        self.jobs.start()
        log.info("service.started", consumers=len(self.consumers), jobs=len(self.jobs))

    async def stop(self) -> None:
        """Stop taking work, drain consumers, flush the relay, close the pool and the bus."""
        await self.jobs.stop()
        for consumer in self.consumers:
            await consumer.stop()
        await self.relay.stop()
        await self.bus.close()
        await self.db.close()
        log.info("service.stopped")

    async def ready(self) -> dict[str, bool]:
        """Readiness checks: database and broker reachable."""
        return {"database": await self.db.ping(), "broker": self.bus.connected}


async def runtime_of(request: Request) -> ServiceRuntime:
    """FastAPI dependency: the service's runtime (pool, bus, relay…); async, so FastAPI
    does not send it to the thread pool."""
    rt: ServiceRuntime = request.app.state.runtime
    return rt


RuntimeDep = Annotated[ServiceRuntime, Depends(runtime_of)]
