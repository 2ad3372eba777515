"""Rebuild: replay every stream from its start into a new generation of the aggregates, then
switch to it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from nats.js import JetStreamContext

from libs.common.db import Database
from libs.common.errors import Conflict
from libs.common.logging import get_logger
from services.indicators import dates, service
from services.indicators.jetstream import CONSUMERS, StreamReader
from services.indicators.store import bookkeeping
from services.indicators.store.bookkeeping import Target

log = get_logger(__name__)


@dataclass
class RebuildResult:
    generation: int
    previous: int
    events: int
    seconds: float
    positions: dict[str, int]  # stream -> last sequence replayed


async def rebuild(
    db: Database, js: JetStreamContext, *, batch: int = 1000, close_gap: int = 200
) -> RebuildResult:
    """Recompute every aggregate from the streams into a new generation, then switch to it.

    Replays each stream from its start into generation N+1 (its own inbox), materialises the
    monthly stocks, catches up, and under the switch lock applies the last events and makes
    N+1 the answering generation; live consumers then skip what it already applied.
    """
    async with db.engine.connect() as lock_conn:
        if not await bookkeeping.try_rebuild_lock(lock_conn):
            raise Conflict("a rebuild is already running")
        await lock_conn.commit()
        try:
            return await _rebuild(db, js, batch, close_gap)
        finally:
            await bookkeeping.release_rebuild_lock(lock_conn)
            await lock_conn.commit()


async def _rebuild(db: Database, js: JetStreamContext, batch: int, close_gap: int) -> RebuildResult:
    started = asyncio.get_running_loop().time()
    for old in await _leftovers(db):
        async with db.transaction() as conn:
            await bookkeeping.delete_generation_rows(conn, old)
            await bookkeeping.forget_generation(conn, old)
    async with db.transaction() as conn:
        generation = await bookkeeping.new_generation(conn)
    log.info("indicators.rebuild_started", generation=generation)
    readers = [StreamReader(js, stream, subject) for stream, (_, subject) in CONSUMERS.items()]
    total = 0
    try:
        # 1. bulk replay: record versions and flows; no stock cells yet
        total += await _replay(db, readers, Target(generation, None), batch, close_gap)
        # 2. stock cells for every month up to now, then catch up incrementally
        async with db.transaction() as conn:
            await service.roll_forward_generation(conn, generation, dates.current_month())
        async with db.transaction() as conn:
            target = await bookkeeping.target_of(conn, generation)
        total += await _replay(db, readers, target, batch, close_gap)
        # 3. the last events and the switch, with live consumers held at the switch lock
        async with db.transaction() as conn:
            await bookkeeping.lock_switch(conn)
            await service.roll_forward_generation(conn, generation, dates.current_month())
            target = await bookkeeping.target_of(conn, generation)
            last = 0
            for reader in readers:
                upto = await reader.last_sequence()
                while events := await reader.read(upto, batch):
                    last += await service.apply_events(conn, target, events, skip_invalid=True)
            previous = (await bookkeeping.active_target(conn)).generation
            await bookkeeping.add_replayed(conn, generation, last)
            await bookkeeping.activate(conn, generation, previous)
            total += last
    except BaseException:
        async with db.transaction() as conn:
            await bookkeeping.mark_failed(conn, generation)
        raise
    finally:
        for reader in readers:
            await reader.close()
    async with db.transaction() as conn:
        await bookkeeping.delete_generation_rows(conn, previous)
        await bookkeeping.forget_generation(conn, previous)
    seconds = round(asyncio.get_running_loop().time() - started, 3)
    log.info("indicators.rebuilt", generation=generation, events=total, seconds=seconds)
    positions = {reader.stream: reader.position for reader in readers}
    return RebuildResult(generation, previous, total, seconds, positions)


async def _leftovers(db: Database) -> list[int]:
    async with db.transaction() as conn:
        return await bookkeeping.leftover_generations(conn)


async def _replay(
    db: Database, readers: Sequence[StreamReader], target: Target, batch: int, close_gap: int
) -> int:
    """Replay every stream until all are within `close_gap` of their ends (or 5 rounds)."""
    total = 0
    for _ in range(5):
        behind = 0
        for reader in readers:
            upto = await reader.last_sequence()
            while events := await reader.read(upto, batch):
                async with db.transaction() as conn:
                    applied = await service.apply_events(conn, target, events, skip_invalid=True)
                    await bookkeeping.add_replayed(conn, target.generation, applied)
                total += applied
            behind += max(0, await reader.last_sequence() - reader.position)
        if behind <= close_gap:
            break
    return total
