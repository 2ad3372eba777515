"""Every SQL statement on the event tables of a schema: the outbox (`outbox_table`) and the
inbox of applied events (`inbox_table`).

The statements every request or batch makes run on the driver (`store.driver_in_transaction`),
their text built once per table."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import timedelta
from typing import NamedTuple

from sqlalchemy import Table, delete, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.store import driver_in_transaction


def _qualified(table: Table) -> str:
    return f'"{table.schema}"."{table.name}"' if table.schema else f'"{table.name}"'


# ---------------------------------------------------------------- the outbox


class _OutboxSQL(NamedTuple):
    insert: str
    claim: str
    unclaim: str


@functools.cache
def _outbox_sql(table: Table) -> _OutboxSQL:
    """The statements on one schema's outbox, built once."""
    name = _qualified(table)
    return _OutboxSQL(
        insert=(
            f"INSERT INTO {name} (id, type, payload)"
            " SELECT i, t, p::jsonb FROM unnest($1::uuid[], $2::text[], $3::text[])"
            " WITH ORDINALITY AS e(i, t, p, n) ORDER BY n"
        ),
        claim=(
            f"WITH c AS (SELECT seq FROM {name} WHERE published_at IS NULL"
            " ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED),"
            f" m AS (UPDATE {name} AS o SET published_at = now() FROM c WHERE o.seq = c.seq"
            " RETURNING o.seq, o.id::text AS id, o.type, o.payload::text AS payload)"
            " SELECT seq, id, type, payload FROM m ORDER BY seq"
        ),
        unclaim=(
            f"UPDATE {name} SET published_at = NULL,"
            " attempts = attempts + CASE WHEN seq = $1 THEN 1 ELSE 0 END"
            " WHERE seq = ANY($2::bigint[])"
        ),
    )


async def insert_outbox_rows(
    conn: AsyncConnection, table: Table, rows: Sequence[tuple[str, str, str]]
) -> None:
    """Add rows (id, type, payload as JSON text) to the outbox, in one statement, their
    `seq` in the order given."""
    pg = await driver_in_transaction(conn)
    await pg.execute(
        _outbox_sql(table).insert,
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
    )


class Claimed(NamedTuple):
    """An outbox row claimed for publishing."""

    seq: int
    id: str
    type: str
    payload: str  # the event as JSON text, published as it is


async def claim_for_publishing(conn: AsyncConnection, table: Table, limit: int) -> list[Claimed]:
    """The oldest unpublished rows, up to `limit`, in `seq` order, locked for this
    transaction and marked published now, in one statement; rows another relay holds are
    skipped. Those that are not published after all go back with `unclaim`."""
    pg = await driver_in_transaction(conn)
    return [Claimed(*r) for r in await pg.fetch(_outbox_sql(table).claim, limit)]


async def unclaim(conn: AsyncConnection, table: Table, failed: int, seqs: Sequence[int]) -> None:
    """Claimed rows `seqs` were not published: unpublished again, and `failed` (whose
    publish failed) with one more attempt."""
    pg = await driver_in_transaction(conn)
    await pg.execute(_outbox_sql(table).unclaim, failed, list(seqs))


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


@functools.cache
def _record_applied_sql(inbox: Table) -> str:
    """`record_applied_batch`'s statement for one schema's inbox, built once."""
    return (
        f"INSERT INTO {_qualified(inbox)} (event_id, type, consumer)"
        " SELECT e, t, $1::text FROM unnest($2::uuid[], $3::text[]) AS d(e, t)"
        " ON CONFLICT DO NOTHING RETURNING event_id"
    )


async def record_applied_batch(
    conn: AsyncConnection, inbox: Table, consumer: str, events: Sequence[tuple[str, str]]
) -> set[str]:
    """Record events (id, type) as applied, in one statement; return the ids that were not
    recorded before (an id given twice is new once)."""
    if not events:
        return set()
    pg = await driver_in_transaction(conn)
    rows = await pg.fetch(
        _record_applied_sql(inbox),
        consumer,
        [e for e, _ in events],
        [t for _, t in events],
    )
    return {str(r[0]) for r in rows}
