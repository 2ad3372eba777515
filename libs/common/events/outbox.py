"""Transactional outbox: the event row commits with the state change that caused it.

The outbox is also the service's change feed (libs.common.feeds): the relay gives each row
a `position` as it claims it, in the order rows become visible (commit order), and keeps
the rows for the feed's retention after publishing them."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.events import store
from libs.common.events.envelope import CloudEvent


def outbox_table(metadata: MetaData, schema: str) -> Table:
    """The outbox of one service's schema."""
    return Table(
        "outbox",
        metadata,
        Column("seq", BigInteger, Identity(), primary_key=True),
        Column("id", UUID(as_uuid=False), nullable=False, unique=True),
        Column("type", String(200), nullable=False),
        Column("payload", JSONB, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("published_at", DateTime(timezone=True)),
        Column("attempts", Integer, nullable=False, server_default=text("0")),
        # Its place in the change feed: given when first claimed, never changed.
        Column("position", BigInteger),
        Index(
            f"ix_{schema}_outbox_unpublished",
            "seq",
            postgresql_where=text(store.UNSETTLED),
        ),
        Index(
            f"ix_{schema}_outbox_position",
            "position",
            unique=True,
            postgresql_where=text("position IS NOT NULL"),
        ),
        schema=schema,
    )


async def write_events(conn: AsyncConnection, table: Table, events: Sequence[CloudEvent]) -> None:
    """Add events to the outbox inside the caller's transaction, in one statement, in the
    order given."""
    if not events:
        return
    await store.insert_outbox_rows(
        conn, table, [(e.id, e.type, e.model_dump_json()) for e in events]
    )
