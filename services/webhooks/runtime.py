"""What the webhooks process holds while it runs: the common runtime (its consumers of every
stream) and the delivery worker.

The worker runs on every replica. The consumers run on one replica at a time, the one
holding a PostgreSQL session lock (`store.try_lead`): a durable consumer shared by fetchers
on several replicas applies their batches side by side, so a record's later event could make
its delivery before an earlier one, and deliveries about one record must reach an endpoint in
order. A replica taking over from one that died first lets the messages the dead one had
fetched come back (the consumer's ack wait), so that they are applied before newer ones.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any

from pydantic import Field

from libs.common import store as common_store
from libs.common.auth import JwksFetcher
from libs.common.events.catalog import STREAMS
from libs.common.events.consumer import DurableConsumer
from libs.common.logging import exception_facts, get_logger
from libs.common.runtime import ServiceRuntime
from libs.common.settings import Settings
from services.webhooks import SERVICE, domain, handlers, models, store, urls
from services.webhooks.delivery import DeliveryWorker, Sender

log = get_logger(__name__)

LEAD_RETRY_S = 1.0  # how often a replica that does not consume tries to take over
LEAD_CHECK_S = 2.0  # how often the consuming replica checks its lock's connection
ACK_WAIT_S = 31.0  # the durable consumers' ack wait (30 s), and a second


class WebhooksSettings(Settings):
    """The shared settings plus the delivery worker's (KOMAR_WEBHOOKS_*)."""

    # Local runs and tests: loopback addresses allowed, http:// to 127.0.0.1 and localhost.
    webhooks_allow_loopback: bool = False
    # Back-off: full jitter over min(cap, base * 2^(attempt-1)) seconds.
    webhooks_retry_base_s: float = Field(default=5.0, gt=0)
    webhooks_retry_cap_s: float = Field(default=3600.0, gt=0)
    # A delivery is tried for this long (at least 3 days), then failed.
    webhooks_retry_window_s: float = Field(default=3 * 86400.0 + 3600.0, gt=0)
    # An endpoint failing without a break for this long is disabled.
    webhooks_disable_after_s: float = Field(default=5 * 86400.0, gt=0)
    # A 2xx within this long delivers.
    webhooks_timeout_s: float = Field(default=10.0, gt=0, le=60)
    webhooks_concurrency: int = Field(default=32, ge=1, le=1000)
    webhooks_poll_s: float = Field(default=0.25, gt=0)


class WebhooksRuntime(ServiceRuntime):
    """The webhooks runtime: consumers of REGISTRY, REFERRALS and FUNDS that make the
    deliveries, and the worker that sends them (on every replica)."""

    def __init__(
        self,
        settings: WebhooksSettings,
        jwks_fetcher: JwksFetcher | None = None,
        resolver: urls.Resolver = urls.system_resolver,
    ) -> None:
        super().__init__(
            SERVICE,
            settings,
            models.common,
            streams={k: STREAMS[k] for k in ("REGISTRY", "REFERRALS", "FUNDS", "CASEWORK")},
            jwks_fetcher=jwks_fetcher,
        )
        self.webhooks = settings
        self.resolver = resolver
        self.consume(
            handlers.CHILDREN_CONSUMER, "REGISTRY", "registry.child.>", handlers.CHILD_HANDLERS
        )
        self.consume(
            handlers.REFERRALS_CONSUMER,
            "REFERRALS",
            "referrals.referral.>",
            handlers.REFERRAL_HANDLERS,
        )
        self.consume(handlers.GRANTS_CONSUMER, "FUNDS", "funds.grant.>", handlers.GRANT_HANDLERS)
        self.consume(
            handlers.CASEWORK_CONSUMER, "CASEWORK", "casework.>", handlers.CASEWORK_HANDLERS
        )
        # Started only while this replica holds the consumers' lock (`_lead`).
        self.led: list[DurableConsumer] = self.consumers
        self.consumers = []
        self.leading = False
        self._lead_task: asyncio.Task[None] | None = None
        self.worker = DeliveryWorker(
            self.db,
            Sender(
                timeout_s=settings.webhooks_timeout_s,
                allow_loopback=settings.webhooks_allow_loopback,
                resolver=resolver,
            ),
            domain.Policy(
                retry_base_s=settings.webhooks_retry_base_s,
                retry_cap_s=settings.webhooks_retry_cap_s,
                retry_window=timedelta(seconds=settings.webhooks_retry_window_s),
                disable_after=timedelta(seconds=settings.webhooks_disable_after_s),
            ),
            concurrency=settings.webhooks_concurrency,
            lease_s=settings.webhooks_timeout_s + 20.0,
            poll_s=settings.webhooks_poll_s,
        )

    async def start(self) -> None:
        await super().start()
        self.worker.start()
        self._lead_task = asyncio.create_task(self._lead(), name="webhooks-lead")

    async def stop(self) -> None:
        if self._lead_task is not None:
            self._lead_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lead_task
        await self.worker.stop()
        await super().stop()

    async def _lead(self) -> None:
        """Run the consumers while this replica holds their lock; try to take it otherwise."""
        while True:
            try:
                async with self.db.engine.connect() as conn:
                    taken = await store.try_lead(conn)
                    await conn.commit()
                    if taken:
                        try:
                            await self._consume_while_held(conn)
                        finally:
                            # Closed, not handed back: the lock ends with the session.
                            with contextlib.suppress(Exception):
                                await conn.invalidate()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("webhooks.lead_lost", **exception_facts(exc))
            await asyncio.sleep(LEAD_RETRY_S)

    async def _consume_while_held(self, conn: Any) -> None:
        try:
            if await self._fetched_elsewhere():
                await asyncio.sleep(ACK_WAIT_S)  # what the last consumer held comes back first
            for consumer in self.led:
                consumer.start()
            self.leading = True
            log.info("webhooks.consuming")
            while True:
                await asyncio.sleep(LEAD_CHECK_S)
                await common_store.select_one(conn)
                await conn.commit()
        finally:
            self.leading = False
            for consumer in self.led:
                with contextlib.suppress(Exception):
                    await consumer.stop()

    async def _fetched_elsewhere(self) -> bool:
        """Whether a durable consumer has messages out that no one acknowledged (a replica
        that consumed them died)."""
        await self.bus.wait_ready()
        for consumer in self.led:
            try:
                info = await self.bus.js.consumer_info(consumer.stream, consumer.durable)
            except Exception:  # not made yet: nothing out
                continue
            if info.num_ack_pending:
                return True
        return False
