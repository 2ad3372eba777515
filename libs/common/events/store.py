"""Every SQL statement on the event tables of a schema: the outbox (`outbox_table`), which is
also the change feed (libs.common.feeds), and the inbox of applied events (`inbox_table`).

The statements every request or batch makes run on the driver (`store.driver_in_transaction`),
their text built once per table."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, FromClause, Integer, Table, delete, func, or_, select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.store import driver_in_transaction

# The outbox rows a relay has yet to settle: to publish, or (published during an upgrade by a
# relay of the version before feeds) to give a feed position; `outbox_table` indexes them.
UNSETTLED = "published_at IS NULL OR position IS NULL"


def _qualified(table: Table) -> str:
    return f'"{table.schema}"."{table.name}"' if table.schema else f'"{table.name}"'


# ---------------------------------------------------------------- the outbox


class _OutboxSQL(NamedTuple):
    insert: str
    lock: str
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
        lock=f"SELECT pg_advisory_xact_lock(hashtextextended('{name}.relay', 0))",
        # A row first claimed gets the next feed position, in seq order among those claimed
        # together (the relay holds `lock`, so positions grow by one, batch after batch).
        # A row published without a position (by a relay of the version before feeds, during
        # an upgrade) is claimed only to be given one.
        claim=(
            f"WITH c AS (SELECT seq, position, published_at FROM {name}"
            f" WHERE {UNSETTLED} ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED),"
            f" top AS (SELECT coalesce(max(position), 0) AS n FROM {name}),"
            " p AS (SELECT seq, published_at AS was, coalesce(position, top.n + count(*)"
            " FILTER (WHERE position IS NULL) OVER (ORDER BY seq)) AS position FROM c, top),"
            f" m AS (UPDATE {name} AS o SET published_at = coalesce(p.was, now()),"
            " position = p.position FROM p WHERE o.seq = p.seq RETURNING o.seq,"
            " o.id::text AS id, o.type, o.payload::text AS payload, p.was IS NULL AS publish)"
            " SELECT seq, id, type, payload FROM m WHERE publish ORDER BY seq"
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
    transaction and marked published now, those claimed for the first time given their
    feed positions; those that are not published after all go back with `unclaim` (and
    keep their positions).

    The schema's relays take turns (a transaction-scoped advisory lock, taken before the
    claim's snapshot): a row is claimed once it has committed, so positions follow commit
    order, and a batch's positions become visible only after every earlier batch's."""
    pg = await driver_in_transaction(conn)
    sql = _outbox_sql(table)
    await pg.execute(sql.lock)
    return [Claimed(*r) for r in await pg.fetch(sql.claim, limit)]


async def unclaim(conn: AsyncConnection, table: Table, failed: int, seqs: Sequence[int]) -> None:
    """Claimed rows `seqs` were not published: unpublished again, and `failed` (whose
    publish failed) with one more attempt."""
    pg = await driver_in_transaction(conn)
    await pg.execute(_outbox_sql(table).unclaim, failed, list(seqs))


async def delete_published(conn: AsyncConnection, table: Table, older_than: timedelta) -> int:
    """Delete the feed's oldest rows, those before the first one that was published less
    than `older_than` ago or is not published yet (the feed loses only its beginning; the
    newest row always stays, so positions go on from it); return how many went."""
    t = table
    keep = (
        select(func.min(t.c.position))
        .where(t.c.position.is_not(None))
        .where(or_(t.c.published_at.is_(None), t.c.published_at >= func.now() - older_than))
        .scalar_subquery()
    )
    newest = select(func.max(t.c.position)).scalar_subquery()
    first_kept = func.coalesce(keep, newest)
    result = await conn.execute(delete(t).where(t.c.position < first_kept))
    return int(result.rowcount or 0)


async def count_unpublished(conn: AsyncConnection, table: Table) -> int:
    """How many rows wait to be published."""
    n = await conn.scalar(
        select(func.count()).select_from(table).where(table.c.published_at.is_(None))
    )
    return int(n or 0)


# ---------------------------------------------------------------- the change feed


async def feed_first(conn: AsyncConnection, table: Table) -> int | None:
    """The feed's first position still kept (None while it is empty)."""
    first = await conn.scalar(select(func.min(table.c.position)))
    return None if first is None else int(first)


async def feed_last(conn: AsyncConnection, table: Table) -> int:
    """The feed's last position (0 while it is empty)."""
    return int(await conn.scalar(select(func.coalesce(func.max(table.c.position), 0))) or 0)


async def feed_page(
    conn: AsyncConnection,
    table: Table,
    records: FromClause,
    key: ColumnElement[Any],
    id_field: str,
    types: Sequence[str],
    visible: ColumnElement[bool],
    after: int,
    upto: int,
    limit: int,
) -> Sequence[RowMapping]:
    """Up to `limit` changes at positions in (`after`, `upto`], in order: outbox rows of
    `types` about a row of `records` (whose `key` is the event's `data.<id_field>`) that
    matches `visible`, as position, type, id, version and at (the event's time)."""
    o = table
    data = o.c.payload["data"]
    record_id = data[id_field].astext.cast(key.type)
    query = (
        select(
            o.c.position,
            o.c.type,
            record_id.label("id"),
            data["version"].astext.cast(Integer).label("version"),
            o.c.payload["time"].astext.label("at"),
        )
        .select_from(o.join(records, key == record_id))
        .where(o.c.position > after, o.c.position <= upto, o.c.type.in_(types), visible)
        .order_by(o.c.position)
        .limit(limit)
    )
    return (await conn.execute(query)).mappings().all()


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
