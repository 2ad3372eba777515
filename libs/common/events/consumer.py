"""Durable JetStream consumers that apply every event exactly once, checked, in batches.

A consumer applies an event type through its `EventHandler`: the data model its events
carry and the function that applies them, which receives the event's data already
validated against that model (`handle` declares one over catalogued types). An event that
cannot be read, or whose data is not its model, is copied to
`deadletter.<durable>.<type>` and terminated at once: no retry would change it; so is
one whose handler raises `UnusableEvent`.

The messages of one fetch are applied in stream order in ONE transaction: their ids go
into the service's `processed_events` table in one statement, and only the new ones are
applied, by their handler's `batch` function when it has one (one call for a run of
events, as a rebuild does) or one call each. Commit, then ack. When the batch fails, it is
applied again one transaction per event, so a bad event fails alone: nak with a delay,
and after `max_deliveries` the message is copied to `deadletter.<durable>.<type>` and
terminated. After each commit the delay from an event's `time` to its application is
observed in `komar_events_lag_seconds`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
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
from libs.common.metrics import EVENTS_APPLIED, EVENTS_DUPLICATE, EVENTS_LAG

log = get_logger(__name__)

D = TypeVar("D", bound=EventData)

# Once a message has come with fewer than a batch behind it, how long a fetch lets more
# gather before taking them (bounds the lag it adds): at a steady few hundred events a second,
# batches of several events instead of one transaction and one fetch per event.
FILL_S = 0.02

# Applies a run of new, checked events (event, data), in stream order, in the caller's
# transaction: the batch form of a handler's `apply`, with the same effect.
BatchApply = Callable[[AsyncConnection, Sequence[tuple[CloudEvent, Any]]], Awaitable[None]]


@dataclass(frozen=True)
class EventHandler(Generic[D]):
    """How a consumer applies one event type: `apply` receives the event and its data,
    validated against `model` before the transaction begins; `batch`, when given, applies
    a run of consecutive events that share it in one call instead."""

    model: type[D]
    apply: Callable[[AsyncConnection, CloudEvent, D], Awaitable[None]]
    batch: BatchApply | None = None

    def check(self, event: CloudEvent) -> D:
        """The event's data as its model (pydantic's ValidationError when it is not)."""
        return self.model.model_validate(event.data)


Handlers = dict[str, EventHandler[Any]]


class UnusableEvent(ValueError):
    """Raised by a handler for an event whose data, though its model, can never be applied
    (a code no gazetteer knows): dead-lettered at once, as invalid data is."""


def handle(
    types: Iterable[str],
    model: type[D],
    apply: Callable[[AsyncConnection, CloudEvent, D], Awaitable[None]],
    *,
    batch: BatchApply | None = None,
) -> Handlers:
    """Apply each of the catalogued `types` with `apply`, which takes their data as `model`
    (or with `batch`, a run of them at once).

    Refused when the catalogue gives one of the types data that is not a `model`, so a
    mismatch shows when the service is built, not when an event arrives.
    """
    handlers: Handlers = {}
    for type_ in types:
        carried = model_for(type_)
        if not issubclass(carried, model):
            raise TypeError(f"{type_} carries {carried.__name__}, not {model.__name__}")
        # Checked against the type's own model (a subclass may add fields, as an update does).
        handlers[type_] = EventHandler(carried, apply, batch)
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


@dataclass(frozen=True, slots=True)
class Checked:
    """A fetched message that could be read: its event, handler (None: not an event this
    consumer applies) and checked data."""

    msg: Msg
    event: CloudEvent
    handler: EventHandler[Any] | None
    data: Any


async def apply_batch(
    conn: AsyncConnection, inbox: Table, consumer: str, items: Sequence[Checked]
) -> list[Checked]:
    """Apply checked events, in order, inside the caller's transaction, each unless already
    applied; return those applied now (an id met twice is applied at its first place)."""
    new = await store.record_applied_batch(
        conn, inbox, consumer, [(i.event.id, i.event.type) for i in items]
    )
    fresh: list[Checked] = []
    for item in items:
        if item.event.id in new:
            new.discard(item.event.id)
            fresh.append(item)
    start = 0
    while start < len(fresh):
        handler = fresh[start].handler
        assert handler is not None  # items are events this consumer applies
        end = start + 1
        if handler.batch is not None:
            while end < len(fresh) and _batch_of(fresh[end]) is handler.batch:
                end += 1
        try:
            if handler.batch is None:
                await handler.apply(conn, fresh[start].event, fresh[start].data)
            else:
                await handler.batch(conn, [(i.event, i.data) for i in fresh[start:end]])
        except Exception as exc:
            if end - start == 1:  # the one event that failed is known
                raise EventFailed(fresh[start], exc) from exc
            raise
        start = end
    return fresh


class EventFailed(Exception):
    """The handler of one known event of a batch failed (`error`)."""

    def __init__(self, item: Checked, error: Exception) -> None:
        super().__init__(type(error).__name__)
        self.item = item
        self.error = error


def _batch_of(item: Checked) -> BatchApply | None:
    return item.handler.batch if item.handler is not None else None


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
        batch: int = 500,
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
        self._lag = EVENTS_LAG.labels(self.service, durable)
        self._applied: dict[str, Any] = {}

    def start(self) -> None:
        """Start (or, after `stop`, restart) fetching and applying."""
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name=f"consumer-{self.durable}")

    async def _subscribe(self) -> Any:
        config = ConsumerConfig(
            durable_name=self.durable,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=30,
            max_deliver=-1,
            filter_subject=self.subject,
            max_ack_pending=max(1000, 2 * self.batch),
        )
        return await self.bus.js.pull_subscribe(
            self.subject, durable=self.durable, stream=self.stream, config=config
        )

    async def _run(self) -> None:
        """Fetch and apply batches; the next batch is fetched and checked while the current
        one is applied (it is applied after the current one's acks, so order holds)."""
        ahead: asyncio.Task[list[Checked]] | None = None
        try:
            while not self._stopping:
                try:
                    await self.bus.wait_ready()
                    if self._sub is None:
                        self._sub = await self._subscribe()
                    checked = await (ahead or self._fetch(self._sub))
                    ahead = None
                    if not checked:
                        continue
                    ahead = asyncio.create_task(self._fetch(self._sub))
                    await self._settle(checked)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("consumer.failed", consumer=self.durable, error=type(exc).__name__)
                    await _cancelled(ahead)
                    ahead = None
                    await self._unsubscribe()
                    await asyncio.sleep(1.0)
        finally:
            if ahead is not None and ahead.done() and not ahead.cancelled():
                if ahead.exception() is None:
                    await self._release(ahead.result())
            await _cancelled(ahead)

    async def _release(self, checked: Sequence[Checked]) -> None:
        """Hand back fetched messages this consumer will not apply (it is stopping), so
        another replica need not wait for the ack wait; a duplicate is absorbed by the inbox."""
        for item in checked:
            with contextlib.suppress(Exception):
                await item.msg.nak()

    async def _fetch(self, sub: Any) -> list[Checked]:
        """The next messages, read and checked (none when none came within a second).

        A fetch of the whole batch would wait for the batch to fill (up to its timeout) once
        a message has come, holding each event back up to a second under light load: so
        the first message is awaited alone; when fewer than a batch are behind it, `FILL_S`
        is given for more to arrive; then whatever has arrived is taken with it.
        """
        try:
            msgs = await sub.fetch(1, timeout=1.0)
        except TimeoutError:  # nats-py raises its own subclass or asyncio's: no news
            return []
        if self.batch > 1:
            try:
                if msgs[0].metadata.num_pending < self.batch - 1:
                    await asyncio.sleep(FILL_S)
                with contextlib.suppress(TimeoutError):
                    msgs += await sub.fetch(self.batch - 1, timeout=FILL_S)
            except asyncio.CancelledError:  # stopping: hand back what was fetched
                for msg in msgs:
                    with contextlib.suppress(Exception):
                        await msg.nak()
                raise
        return [c for c in [await self._check(m) for m in msgs] if c is not None]

    async def handle(self, msg: Msg) -> None:
        """Apply one message exactly once, then ack; nak or dead-letter on failure."""
        await self.handle_batch([msg])

    async def handle_batch(self, msgs: Sequence[Msg]) -> None:
        """Apply fetched messages, in stream order, in one transaction, then ack them.

        Unreadable or invalid ones are dead-lettered first. When the handler of a known
        event fails, the ones before it are applied again without it, it is retried or
        dead-lettered, and the rest go on; when a batch fails otherwise, its events are
        applied one transaction each (`_handle_one`), so only a bad one fails.
        """
        await self._settle([c for c in [await self._check(m) for m in msgs] if c is not None])

    async def _settle(self, checked: list[Checked]) -> None:
        try:
            await self._settle_all(checked)
        except asyncio.CancelledError:  # stopping: hand back what may not be acked yet
            await self._release(checked)
            raise

    async def _settle_all(self, checked: list[Checked]) -> None:
        while checked:
            ours = [c for c in checked if c.handler is not None]
            try:
                fresh = []
                if ours:
                    async with self.db.transaction() as conn:
                        fresh = await apply_batch(conn, self.inbox, self.durable, ours)
            except EventFailed as failed:
                at = checked.index(failed.item)
                await self._settle_all(checked[:at])
                await self._retry_or_dead_letter(failed.item.msg, failed.item.event, failed.error)
                checked = checked[at + 1 :]
                continue
            except Exception as exc:
                log.warning(
                    "consumer.batch_failed",
                    consumer=self.durable,
                    size=len(ours),
                    error=type(exc).__name__,
                )
                for item in checked:
                    await self._handle_one(item)
                return
            self._committed(fresh)
            if len(fresh) < len(ours):
                self._duplicates.inc(len(ours) - len(fresh))
            for item in checked:
                await self._ack(item.msg)
            return

    async def _check(self, msg: Msg) -> Checked | None:
        """The message read and its data checked; None when it was dead-lettered."""
        try:
            event = CloudEvent.model_validate(json.loads(msg.data))
        except ValueError:
            await self._dead_letter(msg, "unparseable", "malformed")
            return None
        handler = self.handlers.get(event.type)
        if handler is None:
            return Checked(msg, event, None, None)
        try:
            return Checked(msg, event, handler, handler.check(event))
        except ValidationError:
            await self._dead_letter(msg, event.type, "invalid")
            return None

    async def _handle_one(self, item: Checked) -> None:
        """Apply one checked message in its own transaction, then ack; nak or
        dead-letter it when it fails."""
        if item.handler is not None:
            try:
                async with self.db.transaction() as conn:
                    fresh = await apply_batch(conn, self.inbox, self.durable, [item])
            except Exception as exc:
                error = exc.error if isinstance(exc, EventFailed) else exc
                await self._retry_or_dead_letter(item.msg, item.event, error)
                return
            self._committed(fresh)
            if not fresh:
                self._duplicates.inc()
        await self._ack(item.msg)

    def _committed(self, fresh: Sequence[Checked]) -> None:
        """Count what a commit applied, and its lag (before the acks, which may fail)."""
        now = datetime.now(UTC)
        for item in fresh:
            self._count_applied(item.event.type)
            self._lag.observe(max(0.0, (now - _aware(item.event.time)).total_seconds()))

    async def _ack(self, msg: Msg) -> None:
        await msg.ack()
        self.last_sequence = max(self.last_sequence, msg.metadata.sequence.stream)

    async def _retry_or_dead_letter(self, msg: Msg, event: CloudEvent, exc: Exception) -> None:
        """Nak with a growing delay, or dead-letter once `max_deliveries` is reached."""
        if isinstance(exc, UnusableEvent):
            await self._dead_letter(msg, event.type, "invalid")
            return
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


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def _cancelled(task: asyncio.Task[Any] | None) -> None:
    """Cancel a task and wait for it to end, whatever it raised."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
