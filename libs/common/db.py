"""Async database access: one engine per process, one transaction per unit of work."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from libs.common import store


def async_url(url: str) -> str:
    """postgresql://… as SQLAlchemy's asyncpg URL."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError("DATABASE_URL must be a postgresql:// URL")


class Database:
    """The process's connection pool and its transactions."""

    def __init__(self, url: str, *, pool_size: int = 20, max_overflow: int = 20) -> None:
        self.engine: AsyncEngine = create_async_engine(
            async_url(url),
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_pre_ping=False,
            pool_recycle=1800,
            # A failing statement's error never quotes its parameters (names, phones…).
            hide_parameters=True,
        )

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """One transaction: committed when the block ends, rolled back on error; a block
        cancelled mid-statement discards its connection (`_discarded_if_cancelled`)."""
        async with self.engine.connect() as conn, conn.begin():
            async with _discarded_if_cancelled(conn):
                yield conn

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """A pooled connection without an explicit transaction: each statement commits alone.

        For a unit of work that is one statement (a group of reads and their audit rows,
        a group of registrations), saving the BEGIN and COMMIT round trips.
        """
        async with self.engine.connect() as conn, _discarded_if_cancelled(conn):
            yield conn

    async def ping(self) -> bool:
        """Whether the database answers."""
        try:
            async with self.engine.connect() as conn:
                await store.select_one(conn)
            return True
        except Exception:
            return False

    async def close(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()


@asynccontextmanager
async def _discarded_if_cancelled(conn: AsyncConnection) -> AsyncIterator[None]:
    """Close `conn` for good (the pool opens another) when the block is cancelled: a task
    stopped inside a statement, on the driver above all (`store.driver_connection`), leaves the
    connection in a state no rollback is sure to clear, and the next unit of work would
    inherit it. The server rolls back what the connection had begun."""
    try:
        yield
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await conn.invalidate()
        raise
