"""Every SQL statement on the event tables of a schema: the outbox (`outbox_table`) and the
inbox of applied events (`inbox_table`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import Row, Table, delete, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

# ---------------------------------------------------------------- the outbox


async def insert_outbox_rows(
    conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]]
) -> None:
    """Add rows (id, type, payload) to the outbox, in one statement."""
    await conn.execute(insert(table), list(rows))


async def claim_unpublished(
    conn: AsyncConnection, table: Table, limit: int
) -> Sequence[Row[int, str, str, Any]]:
    """The oldest unpublished rows (seq, id, type, payload), up to `limit`, locked for this
    transaction; rows another relay holds are skipped."""
    t = table
    found = await conn.execute(
        select(t.c.seq, t.c.id, t.c.type, t.c.payload)
        .where(t.c.published_at.is_(None))
        .order_by(t.c.seq)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return found.all()


async def count_attempt(conn: AsyncConnection, table: Table, seq: int) -> None:
    """One more failed publish of the row."""
    t = table
    await conn.execute(update(t).where(t.c.seq == seq).values(attempts=t.c.attempts + 1))


async def mark_published(conn: AsyncConnection, table: Table, seqs: Sequence[int]) -> None:
    """The rows were published, now."""
    t = table
    await conn.execute(update(t).where(t.c.seq.in_(seqs)).values(published_at=func.now()))


async def delete_published(conn: AsyncConnection, table: Table, older_than: timedelta) -> int:
    """Delete the rows published longer ago than `older_than`; return how many went."""
    t = table
    result = await conn.execute(delete(t).where(t.c.published_at < func.now() - older_than))
    return int(result.rowcount or 0)


async def count_unpublished(conn: AsyncConnection, table: Table) -> int:
    """How many rows wait to be published."""
    n = await conn.scalar(
        select(func.count()).select_from(table).where(table.c.published_at.is_(None))
    )
    return int(n or 0)


# ---------------------------------------------------------------- the inbox


async def record_applied_batch(
    conn: AsyncConnection, inbox: Table, consumer: str, events: Sequence[tuple[str, str]]
) -> set[str]:
    """Record events (id, type) as applied, in one statement; return the ids that were not
    recorded before (an id given twice is new once)."""
    if not events:
        return set()
    table = f'"{inbox.schema}"."{inbox.name}"' if inbox.schema else f'"{inbox.name}"'
    rows = await conn.execute(
        text(
            f"""
            INSERT INTO {table} (event_id, type, consumer)
            SELECT e, t, :c FROM unnest(CAST(:ids AS uuid[]), CAST(:types AS text[])) AS d(e, t)
            ON CONFLICT DO NOTHING
            RETURNING event_id
            """
        ),
        {"c": consumer, "ids": [e for e, _ in events], "types": [t for _, t in events]},
    )
    return {str(r.event_id) for r in rows}
