"""Every SQL statement on the tables libs/common gives each schema: stored Idempotency-Key
answers, job ticks and referral shares, and the database's health check; and the pieces
every service's store repeats: `keyset`, the page clause of every list, `read_page`, a
list's page read, `versioned_update`, the write of a row its caller holds locked, and
`upsert_newest`, a projection's batch of rows where the newest version wins, one statement.

The tables are defined beside the logic that uses them (`http.idempotency_table`,
`jobs.job_runs_table`, `access.referral_shares_table`); the event tables' statements are
in `events/store.py`.

The statements a request or a consumer's batch makes (an Idempotency-Key's lock, read and
answer, a projection's batch) run on the driver (`driver_in_transaction`), their text
built once per table.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple, Protocol, TypeVar

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    and_,
    delete,
    func,
    or_,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert as upsert
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import ReturningUpdate

# ---------------------------------------------------------------- the connection


async def select_one(conn: AsyncConnection) -> None:
    """`SELECT 1`: the cheapest statement, to see that the database answers or to make
    the driver begin its transaction."""
    await conn.execute(text("SELECT 1"))


async def driver_connection(conn: AsyncConnection) -> Any:
    """The asyncpg connection under `conn`, inside the same transaction.

    For the few hottest statements of a service, where SQLAlchemy's per-statement work
    costs more than the statement: asyncpg prepares and caches them itself. JSON/JSONB
    parameters are passed as JSON text; results decode as Python objects.
    """
    raw = await conn.get_raw_connection()
    adapter: Any = raw.dbapi_connection
    # SQLAlchemy's asyncpg adapter sends BEGIN lazily, at its own first statement; make
    # sure the transaction has begun before statements bypass the adapter.
    if getattr(adapter, "_transaction", None) is None and conn.in_transaction():
        start = getattr(adapter, "_start_transaction", None)
        if start is None:  # a future SQLAlchemy: let it begin the usual way
            await select_one(conn)
        else:
            async with adapter._execute_mutex:
                await start()
    return raw.driver_connection


async def driver_in_transaction(conn: AsyncConnection) -> Any:
    """`driver_connection` of `conn` inside a transaction: `conn`'s own, begun here when it
    has none yet (as its next SQLAlchemy statement would begin one), so what the driver
    writes commits or rolls back with the rest of the unit of work."""
    if not conn.in_transaction():
        await conn.begin()
    return await driver_connection(conn)


def _qualified(table: Table) -> str:
    """The table's name as SQL text, schema-qualified when it has a schema."""
    return f'"{table.schema}"."{table.name}"' if table.schema else f'"{table.name}"'


# ---------------------------------------------------------------- keyset pages

_R = TypeVar("_R", bound=tuple[Any, ...])


class KeysetPage(Protocol):
    """What `keyset` reads of a list request (`http.Page`)."""

    @property
    def limit(self) -> int: ...

    @property
    def after(self) -> tuple[Any, ...] | None: ...


def keyset(query: Select[_R], page: KeysetPage, *key: ColumnElement[Any]) -> Select[_R]:
    """One page of `query` in `key` order: the rows after the page's cursor (the key of the
    last row of the page before), and one more than the page to tell if more follow.

    `page.after` holds the decoded cursor (see `http.time_cursor`, `http.seq_cursor`);
    `http.page_answer` builds the next cursor from the same key."""
    if page.after is not None:
        if len(key) == 1:
            query = query.where(key[0] > page.after[0])
        else:
            query = query.where(tuple_(*key) > tuple_(*page.after))
    return query.order_by(*key).limit(page.limit + 1)


class ListPage(KeysetPage, Protocol):
    """What `read_page` reads of a list request (`http.Page`)."""

    @property
    def updated_since(self) -> datetime | None: ...


def where_given(query: Select[Any], *filters: tuple[ColumnElement[Any], Any]) -> Select[Any]:
    """A list's equality filters: `query` kept to the rows whose column equals each
    (column, value) the request gives (None or empty: not given)."""
    for column, value in filters:
        if value is None or value == "":
            continue
        query = query.where(column.is_(value) if isinstance(value, bool) else column == value)
    return query


async def read_page(
    conn: AsyncConnection,
    query: Select[Any],
    page: ListPage,
    *,
    key: tuple[ColumnElement[Any], ...],
    changed_at: ColumnElement[datetime],
) -> list[RowMapping]:
    """One page of a list: `query` (the visible rows and the list's filters) kept to the
    rows whose `changed_at` is at or after `page.updated_since` when the request gives it,
    then `keyset` in `key` order (one row more than the page)."""
    if page.updated_since is not None:
        query = query.where(changed_at >= page.updated_since)
    return list((await conn.execute(keyset(query, page, *key))).mappings().all())


# ---------------------------------------------------------------- versioned rows


def versioned_update(
    table: Table, row_id: Any, version: int, values: dict[str, Any]
) -> ReturningUpdate[*tuple[Any, ...]]:
    """The UPDATE of a row its caller read at `version` and holds locked: the new values,
    `version` + 1 and `updated_at` now, where the row still has that id and version;
    returning the row as stored (`.mappings().one()` of its result)."""
    c = table.c
    return (
        update(table)
        .where(c.id == row_id, c.version == version)
        .values(**values, version=version + 1, updated_at=func.now())
        .returning(*c)
    )


# ---------------------------------------------------------------- Idempotency-Key answers


class StoredAnswer(NamedTuple):
    """The first answer stored for (client, key), and when it was stored."""

    request_hash: bytes
    status: int
    headers: dict[str, str]
    body: bytes
    created_at: datetime


class _AnswerSQL(NamedTuple):
    lock_and_read: str
    insert: str


@functools.cache
def _answer_sql(table: Table) -> _AnswerSQL:
    """The statements on one schema's Idempotency-Key answers, built once."""
    name = _qualified(table)
    answer = "a.request_hash, a.status, a.headers, a.body, a.created_at"
    return _AnswerSQL(
        lock_and_read=(
            f"SELECT l.locked, {answer}"
            " FROM (SELECT pg_try_advisory_xact_lock(hashtextextended($1, 7)) AS locked) AS l"
            f" LEFT JOIN {name} AS a ON l.locked AND a.client_id = $2 AND a.key = $3"
        ),
        insert=(
            f"WITH i AS (INSERT INTO {name}"
            " (client_id, key, request_hash, status, headers, body)"
            " VALUES ($1, $2, $3, $4, $5::jsonb, $6)"
            " ON CONFLICT (client_id, key) DO NOTHING RETURNING 1)"
            f" SELECT {answer} FROM {name} AS a"
            " WHERE a.client_id = $1 AND a.key = $2 AND NOT EXISTS (SELECT FROM i)"
        ),
    )


async def lock_key_and_read_answer(
    conn: AsyncConnection, table: Table, client_id: str, key: str
) -> tuple[bool, StoredAnswer | None]:
    """In one statement: take the transaction-scoped advisory lock of (schema, client,
    key) without waiting, and read the answer stored for (client, key). (False, None)
    when another transaction holds the lock.

    The answer is read as of the statement's start: one that the lock's last holder
    committed between that start and the lock is not seen (`insert_answer` finds it)."""
    pg = await driver_in_transaction(conn)
    row = await pg.fetchrow(
        _answer_sql(table).lock_and_read, f"{table.schema}|{client_id}|{key}", client_id, key
    )
    if not row["locked"]:
        return False, None
    return True, _stored(row)


def _stored(row: Any) -> StoredAnswer | None:
    if row["status"] is None:
        return None
    return StoredAnswer(
        row["request_hash"], row["status"], row["headers"], row["body"], row["created_at"]
    )


async def delete_answer(conn: AsyncConnection, table: Table, client_id: str, key: str) -> None:
    """Forget the answer stored for (client, key)."""
    await conn.execute(
        delete(table).where(and_(table.c.client_id == client_id, table.c.key == key))
    )


async def insert_answer(
    conn: AsyncConnection,
    table: Table,
    *,
    client_id: str,
    key: str,
    request_hash: bytes,
    status: int,
    headers: dict[str, str],
    body: bytes,
) -> StoredAnswer | None:
    """Store the first answer to (client, key), in one statement: None when stored; else
    the answer another transaction committed for (client, key) first (this one is not
    stored)."""
    pg = await driver_in_transaction(conn)
    row = await pg.fetchrow(
        _answer_sql(table).insert,
        client_id,
        key,
        request_hash,
        status,
        json.dumps(headers),
        body,
    )
    return None if row is None else _stored(row)


async def delete_answers_before(conn: AsyncConnection, table: Table, moment: datetime) -> int:
    """Delete the answers stored before `moment`; return how many went."""
    result = await conn.execute(delete(table).where(table.c.created_at < moment))
    return int(result.rowcount or 0)


# ---------------------------------------------------------------- job ticks


async def claim_job_tick(
    conn: AsyncConnection, table: Table, job: str, tick: int, interval_s: float
) -> bool:
    """Insert the job's row at `tick`, or move it there when its tick is older or its last
    run more than an interval ago; True only when this statement wrote it."""
    row = upsert(table).values(job=job, last_tick=tick, last_run_at=func.now())
    claim = row.on_conflict_do_update(
        index_elements=[table.c.job],
        set_={"last_tick": row.excluded.last_tick, "last_run_at": row.excluded.last_run_at},
        where=or_(
            table.c.last_tick < row.excluded.last_tick,
            table.c.last_run_at < row.excluded.last_run_at - timedelta(seconds=interval_s),
        ),
    ).returning(table.c.job)
    return (await conn.scalar(claim)) is not None


# ---------------------------------------------------------------- newest-version projections


def newest_rows(rows: Iterable[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """Of rows given in stream order, the one with the highest `version` per `key` (the
    first of equal versions, as applying them one by one would keep), in `key` order."""
    kept: dict[Any, dict[str, Any]] = {}
    for row in rows:
        held = kept.get(row[key])
        if held is None or held["version"] < row["version"]:
            kept[row[key]] = row
    return [kept[k] for k in sorted(kept, key=str)]


@functools.cache
def _upsert_newest(
    table: Table, columns: tuple[str, ...], key: str, updated: tuple[str, ...], stamped: str | None
) -> str:
    """`upsert_newest`'s statement for one shape, built once: one array parameter per
    column, in `columns` order."""
    dialect = PGDialect()  # type: ignore[no-untyped-call]
    arrays = ", ".join(
        f"CAST(${i} AS {table.c[c].type.compile(dialect=dialect)}[])"
        for i, c in enumerate(columns, start=1)
    )
    sets = [f"{c} = excluded.{c}" for c in updated] + ([f"{stamped} = now()"] if stamped else [])
    return (
        f"INSERT INTO {_qualified(table)} AS t ({', '.join(columns)})"
        f" SELECT * FROM unnest({arrays}) AS d({', '.join(columns)}) ORDER BY {key}"
        f" ON CONFLICT ({key}) DO UPDATE SET {', '.join(sets)}"
        f" WHERE t.version < excluded.version RETURNING {key}"
    )


async def upsert_newest(
    conn: AsyncConnection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    key: str = "id",
    updated: Sequence[str] | None = None,
    stamped: str | None = None,
) -> set[Any]:
    """Write a projection's rows (all of the same columns, in stream order) in ONE
    statement: each `key`'s newest version is inserted, or updates the stored row (its
    `updated` columns, all but the key when None, and `stamped` set to now) only when the
    stored `version` is older. Rows go in `key` order, so two writers never deadlock.
    Returns the keys written (a key whose stored version was as new is not)."""
    newest = newest_rows(rows, key)
    if not newest:
        return set()
    columns = tuple(newest[0])
    changed = tuple(updated if updated is not None else [c for c in columns if c != key])
    sql = _upsert_newest(table, columns, key, changed, stamped)
    pg = await driver_in_transaction(conn)
    written = await pg.fetch(sql, *([r[c] for r in newest] for c in columns))
    return {r[0] for r in written}


# ---------------------------------------------------------------- referral shares


async def upsert_referral_shares(
    conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]]
) -> None:
    """Write referral shares (referral_id, child_id, org, status, completed_at, version; in
    stream order) in one statement: a referral's newest version is inserted, or updates the
    stored state when its `version` is newer (`upsert_newest`)."""
    await upsert_newest(
        conn, table, rows, key="referral_id", updated=("status", "completed_at", "version")
    )
