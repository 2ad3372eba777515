"""Durable JetStream consumers that apply every event exactly once, checked.

A consumer applies an event type through its `EventHandler`: the data model its events
carry and the function that applies them, which receives the event's data already
validated against that model (`handle` declares one over catalogued types). An event that
cannot be read, or whose data is not its model, is copied to
`deadletter.<durable>.<type>` and terminated at once: no retry would change it.

Each event's id goes into the service's `processed_events` table in the same transaction
as its effect, so a redelivered event is skipped. Ack after commit; nak with a delay on
an error; after `max_deliveries` the message is copied to `deadletter.<durable>.<type>`
and terminated.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from pydantic import ValidationError
from sqlalchemy import Column, DateTime, MetaData, String, Table, func
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.db import Database
from libs.common.events import store
from libs.common.events.base import EventData
from libs.common.events.bus import EventBus
from libs.common.events.catalog import model_for
from libs.common.events.envelope import CloudEvent
from libs.common.logging import get_logger
from libs.common.metrics import EVENTS_APPLIED, EVENTS_DUPLICATE

log = get_logger(__name__)

D = TypeVar("D", bound=EventData)


@dataclass(frozen=True)
class EventHandler(Generic[D]):
    """How a consumer applies one event type: `apply` receives the event and its data,
    validated against `model` before the transaction begins."""

    model: type[D]
    apply: Callable[[AsyncConnection, CloudEvent, D], Awaitable[None]]

    def check(self, event: CloudEvent) -> D:
        """The event's data as its model (pydantic's ValidationError when it is not)."""
        return self.model.model_validate(event.data)


Handlers = dict[str, EventHandler[Any]]


def handle(
    types: Iterable[str],
    model: type[D],
    apply: Callable[[AsyncConnection, CloudEvent, D], Awaitable[None]],
) -> Handlers:
    """Apply each of the catalogued `types` with `apply`, which takes their data as `model`.

    Refused when the catalogue gives one of the types data that is not a `model`, so a
    mismatch shows when the service is built, not when an event arrives.
    """
    handlers: Handlers = {}
    for type_ in types:
        carried = model_for(type_)
        if not issubclass(carried, model):
            raise TypeError(f"{type_} carries {carried.__name__}, not {model.__name__}")
        # Checked against the type's own model (a subclass may add fields, as an update does).
        handlers[type_] = EventHandler(carried, apply)
    return handlers


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
    conn: AsyncConnection,
    inbox: Table,
    consumer: str,
    event: CloudEvent,
    handler: EventHandler[D],
    data: D,
) -> bool:
    """Apply a checked event inside the caller's transaction unless already applied."""
    if not await store.record_applied(
        conn, inbox, event_id=event.id, type_=event.type, consumer=consumer
    ):
        return False
    await handler.apply(conn, event, data)
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
        handlers: Handlers,
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
        applied: bool | None = None  # None: not an event this consumer applies
        if handler is not None:
            try:
                data = handler.check(event)
            except ValidationError:
                await self._dead_letter(msg, event.type, "invalid")
                return
            try:
                async with self.db.transaction() as conn:
                    applied = await apply_once(conn, self.inbox, self.durable, event, handler, data)
            except Exception as exc:
                await self._retry_or_dead_letter(msg, event, exc)
                return
        if applied:  # committed: count it now, before the ack (which may still fail)
            self._count_applied(event.type)
        elif applied is not None:
            self._duplicates.inc()
        await msg.ack()
        self.last_sequence = meta.sequence.stream

    async def _retry_or_dead_letter(self, msg: Msg, event: CloudEvent, exc: Exception) -> None:
        """Nak with a growing delay, or dead-letter once `max_deliveries` is reached."""
        delivered = msg.metadata.num_delivered
        if delivered >= self.max_deliveries:
            await self._dead_letter(msg, event.type, type(exc).__name__)
            return
        log.warning(
            "consumer.retry",
            consumer=self.durable,
            event_id=event.id,
            type=event.type,
            delivered=delivered,
            error=type(exc).__name__,
        )
        await msg.nak(delay=min(30.0, 0.5 * 2**delivered))

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
