"""The outbox relay: claim unpublished rows (marking them published), publish them with
Nats-Msg-Id, and commit.

Several relays may run at once (replicas): rows are claimed with FOR UPDATE SKIP LOCKED,
and a row published before its transaction committed (a crash in between) is published
again with the same message id, which JetStream's duplicate window discards.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

from sqlalchemy import Table

from libs.common.db import Database
from libs.common.events import store
from libs.common.events.bus import EventBus
from libs.common.logging import exception_facts, get_logger
from libs.common.metrics import OUTBOX_DUPLICATE_ACKS, OUTBOX_PUBLISHED

log = get_logger(__name__)

# How long a woken relay waits for more events before claiming (bounds the lag it adds).
GATHER_S = 0.01


class OutboxRelay:
    """Publishes one schema's outbox, woken by `notify()` or every `interval_s`."""

    def __init__(
        self,
        db: Database,
        bus: EventBus,
        table: Table,
        *,
        interval_s: float = 0.5,
        batch: int = 200,
        service: str | None = None,
    ) -> None:
        self.db = db
        self.bus = bus
        self.table = table
        self.interval_s = interval_s
        self.batch = batch
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        service = service or str(table.schema)
        self._published = OUTBOX_PUBLISHED.labels(service)
        self._duplicate_acks = OUTBOX_DUPLICATE_ACKS.labels(service)

    def notify(self) -> None:
        """Something was written to the outbox: publish soon."""
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"relay-{self.table.schema}")

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self.bus.wait_ready()
                published = await self.publish_batch()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("relay.failed", **exception_facts(exc))
                published = 0
            if published < self.batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.interval_s)
                    # Let the events of the requests committing now join this batch: one
                    # transaction for several events under a steady load, not one each.
                    await asyncio.sleep(GATHER_S)
                self._wake.clear()

    async def publish_batch(self) -> int:
        """Publish up to `batch` rows; return how many were published.

        The rows are claimed and marked published in one statement, then published all at
        once on the one connection (JetStream stores them in the order sent) and their
        acknowledgements awaited together. When a publish fails, its outcome is unknown: it
        and the rows after it go back unpublished and are published again later with the
        same message ids (those JetStream already holds are discarded as duplicates; only
        then may a record's later event precede an earlier one in the stream, which the
        consumers' newest-version-wins projections and the indicators' arrival-order
        independence absorb). Nothing is kept unless the transaction commits."""
        async with self.db.transaction() as conn:
            rows = await store.claim_for_publishing(conn, self.table, self.batch)
            acks = await asyncio.gather(
                *(self.bus.publish(row.type, row.payload.encode(), row.id) for row in rows),
                return_exceptions=True,
            )
            done = 0
            error: BaseException | None = None
            for row, ack in zip(rows, acks, strict=True):
                if isinstance(ack, BaseException):
                    error = ack
                    await store.unclaim(conn, self.table, row.seq, [r.seq for r in rows[done:]])
                    break
                if getattr(ack, "duplicate", False):
                    # Published before (a relay died between publish and commit): JetStream
                    # kept the first copy. Nonzero means a replay, never a double publish.
                    self._duplicate_acks.inc()
                done += 1
        if done:
            self._published.inc(done)
        if error is not None:
            raise error
        if done:
            log.debug("relay.published", count=done)
        return done

    async def purge_published(self, older_than: timedelta) -> int:
        """Delete rows published longer ago than `older_than` (the stream keeps the events);
        return how many went. Unpublished rows are never touched."""
        async with self.db.transaction() as conn:
            return await store.delete_published(conn, self.table, older_than)

    async def pending(self) -> int:
        """How many events wait to be published."""
        async with self.db.transaction() as conn:
            return await store.count_unpublished(conn, self.table)

    async def stop(self, flush_timeout_s: float = 5.0) -> None:
        """Flush what can be flushed in time, then stop."""
        self._stopping = True
        if self.bus.connected:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._flush(), flush_timeout_s)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _flush(self) -> None:
        while await self.publish_batch() > 0:
            pass
