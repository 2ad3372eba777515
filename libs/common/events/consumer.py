"""Durable JetStream consumers that apply every event exactly once.

Each event's id goes into the service's `processed_events` table in the same transaction
as its effect, so a redelivered event is skipped. Ack after commit; nak with a delay on
an error; after `max_deliveries` the message is copied to `deadletter.<durable>.<type>`
and terminated.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from sqlalchemy import Column, DateTime, MetaData, String, Table, func
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.db import Database
from libs.common.events import store
from libs.common.events.bus import EventBus
from libs.common.events.envelope import CloudEvent
from libs.common.logging import get_logger
from libs.common.metrics import EVENTS_APPLIED, EVENTS_DUPLICATE

log = get_logger(__name__)

Handler = Callable[[AsyncConnection, CloudEvent], Awaitable[None]]


def inbox_table(metadata: MetaData, schema: str) -> Table:
    """The ids of events a service has applied, one table per schema."""
    return Table(
        "processed_events",
        metadata,
        Column("event_id", UUID(as_uuid=False), primary_key=True),
        Column("type", String(200), nullable=False),
        Column("consumer", String(100), nullable=False),
        Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        schema=schema,
    )


async def apply_once(
    conn: AsyncConnection, inbox: Table, consumer: str, event: CloudEvent, handler: Handler
) -> bool:
    """Apply an event inside the caller's transaction unless already applied."""
    if not await store.record_applied(
        conn, inbox, event_id=event.id, type_=event.type, consumer=consumer
    ):
        return False
    await handler(conn, event)
    return True


class DurableConsumer:
    """One durable pull consumer on one stream, dispatching by event type."""

    def __init__(
        self,
        db: Database,
        bus: EventBus,
        inbox: Table,
        *,
        durable: str,
        stream: str,
        subject: str,
        handlers: dict[str, Handler],
        max_deliveries: int = 5,
        batch: int = 100,
        service: str | None = None,
    ) -> None:
        self.db = db
        self.bus = bus
        self.inbox = inbox
        self.durable = durable
        self.stream = stream
        self.subject = subject
        self.handlers = handlers
        self.max_deliveries = max_deliveries
        self.batch = batch
        self.last_sequence = 0
        self._task: asyncio.Task[None] | None = None
        self._sub: Any = None
        self._stopping = False
        self.service = service or str(inbox.schema)
        self._duplicates = EVENTS_DUPLICATE.labels(self.service, durable)
        self._applied: dict[str, Any] = {}

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"consumer-{self.durable}")

    async def _subscribe(self) -> Any:
        config = ConsumerConfig(
            durable_name=self.durable,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=30,
            max_deliver=-1,
            filter_subject=self.subject,
            max_ack_pending=1000,
        )
        return await self.bus.js.pull_subscribe(
            self.subject, durable=self.durable, stream=self.stream, config=config
        )

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self.bus.wait_ready()
                if self._sub is None:
                    self._sub = await self._subscribe()
                try:
                    msgs = await self._sub.fetch(self.batch, timeout=1.0)
                except TimeoutError:  # nats-py raises its own subclass or asyncio's: no news
                    continue
                for msg in msgs:
                    await self.handle(msg)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("consumer.failed", consumer=self.durable, error=type(exc).__name__)
                await self._unsubscribe()
                await asyncio.sleep(1.0)

    async def handle(self, msg: Msg) -> None:
        """Apply one message exactly once, then ack; nak or dead-letter on failure."""
        meta = msg.metadata
        try:
            event = CloudEvent.model_validate(json.loads(msg.data))
        except ValueError:
            await self._dead_letter(msg, "unparseable", "malformed")
            return
        handler = self.handlers.get(event.type)
        applied: bool | None = None
        try:
            if handler is not None:
                async with self.db.transaction() as conn:
                    applied = await apply_once(conn, self.inbox, self.durable, event, handler)
        except Exception as exc:
            if meta.num_delivered >= self.max_deliveries:
                await self._dead_letter(msg, event.type, type(exc).__name__)
                return
            log.warning(
                "consumer.retry",
                consumer=self.durable,
                event_id=event.id,
                type=event.type,
                delivered=meta.num_delivered,
                error=type(exc).__name__,
            )
            await msg.nak(delay=min(30.0, 0.5 * 2**meta.num_delivered))
            return
        if applied:  # committed: count it now, before the ack (which may still fail)
            self._count_applied(event.type)
        elif applied is not None:
            self._duplicates.inc()
        await msg.ack()
        self.last_sequence = meta.sequence.stream

    def _count_applied(self, type_: str) -> None:
        counter = self._applied.get(type_)
        if counter is None:
            counter = self._applied[type_] = EVENTS_APPLIED.labels(
                self.service, self.durable, type_
            )
        counter.inc()

    async def _dead_letter(self, msg: Msg, type_: str, reason: str) -> None:
        subject = f"deadletter.{self.durable}.{type_}"
        headers = {"Komar-Reason": reason, "Komar-Original-Subject": msg.subject}
        await self.bus.js.publish(subject, msg.data, headers=headers)
        await msg.term()
        log.error("consumer.dead_lettered", consumer=self.durable, type=type_, reason=reason)

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._unsubscribe()

    async def _unsubscribe(self) -> None:
        """Drop the pull subscription's inbox (the durable consumer stays on the server).

        Left open, it holds the connection's drain for its full 30 s timeout at shutdown.
        """
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
