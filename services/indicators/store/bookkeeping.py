"""SQL of the indicators' bookkeeping: generations and the switch between them, advisory
locks, snapshots, the rounding key and the inbox of applied events."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.db import Database
from services.indicators.models import AGGREGATES, generations

# Advisory lock keys (two-int form): (namespace, key).
LOCKS = 0x6B6F  # "ko"
# Handlers hold SWITCH shared; switching the answering generation, or rolling its stocks into
# a new month, holds it exclusive.
SWITCH = 1
REBUILD = 2  # one rebuild at a time (session lock)
CHILD_NS = LOCKS + 2  # (CHILD_NS, hashtext(child id)): one change of a child at a time


@dataclass(frozen=True)
class Target:
    """The generation a unit of work writes to, and how far its stock cells are complete."""

    generation: int
    stock_through: int | None


@asynccontextmanager
async def snapshot(db: Database) -> AsyncIterator[AsyncConnection]:
    """A read-only, repeatable-read transaction: one consistent view for a whole answer."""
    async with db.engine.connect() as conn:
        conn = await conn.execution_options(
            isolation_level="REPEATABLE READ", postgresql_readonly=True
        )
        async with conn.begin():
            yield conn


async def lock_switch_shared(conn: AsyncConnection) -> None:
    await conn.execute(
        text("SELECT pg_advisory_xact_lock_shared(:n, :k)"), {"n": LOCKS, "k": SWITCH}
    )


async def lock_switch(conn: AsyncConnection) -> None:
    await conn.execute(text("SELECT pg_advisory_xact_lock(:n, :k)"), {"n": LOCKS, "k": SWITCH})


async def lock_children(conn: AsyncConnection, child_ids: Sequence[str]) -> None:
    """One change of a child at a time: lock children in one statement, in the order of
    their lock keys (so two writers never wait on each other in a cycle)."""
    if not child_ids:
        return
    await conn.execute(
        text(
            """
            SELECT pg_advisory_xact_lock(:n, h)
            FROM (SELECT DISTINCT hashtext(c) AS h
                  FROM unnest(CAST(:ids AS text[])) AS c ORDER BY h) AS k
            """
        ),
        {"n": CHILD_NS, "ids": list(child_ids)},
    )


async def try_rebuild_lock(conn: AsyncConnection) -> bool:
    """Take the session-level rebuild lock on this connection, if free."""
    got = await conn.scalar(text("SELECT pg_try_advisory_lock(:n, :k)"), {"n": LOCKS, "k": REBUILD})
    return bool(got)


async def release_rebuild_lock(conn: AsyncConnection) -> None:
    await conn.execute(text("SELECT pg_advisory_unlock(:n, :k)"), {"n": LOCKS, "k": REBUILD})


async def rounding_key(conn: AsyncConnection, candidate: bytes) -> bytes:
    """The stored rounding key; `candidate` becomes it when none is stored yet.

    INSERT … ON CONFLICT DO NOTHING, then read: two replicas starting at once both end up
    with the row the first one wrote.
    """
    await conn.execute(
        text("INSERT INTO indicators.rounding_key (id, key) VALUES (1, :k) ON CONFLICT DO NOTHING"),
        {"k": candidate},
    )
    key = await conn.scalar(text("SELECT key FROM indicators.rounding_key WHERE id = 1"))
    return bytes(key)


async def active_target(conn: AsyncConnection) -> Target:
    """The active generation and its stock horizon."""
    row = (
        await conn.execute(
            select(generations.c.generation, generations.c.stock_through).where(
                generations.c.active
            )
        )
    ).one()
    return Target(row.generation, row.stock_through)


async def target_of(conn: AsyncConnection, generation: int, *, lock: bool = False) -> Target:
    """A generation's target; with lock, its row is locked until the transaction ends."""
    stmt = select(generations.c.generation, generations.c.stock_through).where(
        generations.c.generation == generation
    )
    if lock:
        stmt = stmt.with_for_update()
    row = (await conn.execute(stmt)).one()
    return Target(row.generation, row.stock_through)


async def new_generation(conn: AsyncConnection) -> int:
    """Start a building generation numbered after every existing one."""
    number = int(await conn.scalar(select(func.coalesce(func.max(generations.c.generation), 0))))
    await conn.execute(
        insert(generations).values(generation=number + 1, active=False, state="building")
    )
    return number + 1


async def set_stock_through(conn: AsyncConnection, generation: int, month: int) -> None:
    await conn.execute(
        update(generations)
        .where(generations.c.generation == generation)
        .values(stock_through=month)
    )


async def add_replayed(conn: AsyncConnection, generation: int, count: int) -> None:
    await conn.execute(
        update(generations)
        .where(generations.c.generation == generation)
        .values(events_replayed=generations.c.events_replayed + count)
    )


async def activate(conn: AsyncConnection, new: int, old: int) -> None:
    """Make `new` the answering generation (the caller holds the switch lock)."""
    await conn.execute(
        update(generations)
        .where(generations.c.generation == old)
        .values(active=False, state="retired", finished_at=func.now())
    )
    await conn.execute(
        update(generations)
        .where(generations.c.generation == new)
        .values(active=True, state="active", finished_at=func.now())
    )


async def mark_failed(conn: AsyncConnection, generation: int) -> None:
    await conn.execute(
        update(generations)
        .where(generations.c.generation == generation, ~generations.c.active)
        .values(state="failed", finished_at=func.now())
    )


async def delete_generation_rows(conn: AsyncConnection, generation: int) -> None:
    """Remove every aggregate of a generation that no longer answers."""
    for table in AGGREGATES:
        await conn.execute(delete(table).where(table.c.generation == generation))


async def leftover_generations(conn: AsyncConnection) -> list[int]:
    """Generations that do not answer and are not retired-and-cleaned: remains of a rebuild."""
    rows = await conn.execute(
        select(generations.c.generation).where(~generations.c.active, generations.c.state != "gone")
    )
    return [r.generation for r in rows]


async def forget_generation(conn: AsyncConnection, generation: int) -> None:
    await conn.execute(
        update(generations)
        .where(generations.c.generation == generation, ~generations.c.active)
        .values(state="gone")
    )


async def latest_rebuild(conn: AsyncConnection) -> dict[str, Any] | None:
    """The newest generation that was built by a rebuild (not the first one)."""
    row = (
        await conn.execute(
            select(generations)
            .where(generations.c.generation > 1)
            .order_by(generations.c.generation.desc())
            .limit(1)
        )
    ).first()
    return dict(row._mapping) if row is not None else None


async def claim_events(conn: AsyncConnection, generation: int, ids: Sequence[str]) -> set[str]:
    """Record events as applied in a generation; return those not applied before."""
    if not ids:
        return set()
    rows = await conn.execute(
        text(
            """
            INSERT INTO indicators.applied_events (generation, event_id)
            SELECT :g, e FROM unnest(CAST(:ids AS uuid[])) AS e
            ON CONFLICT DO NOTHING
            RETURNING event_id
            """
        ),
        {"g": generation, "ids": list(ids)},
    )
    return {str(r.event_id) for r in rows}
