"""Change feeds: a service's changes in the order they committed, as the caller may see them.

A service's outbox is its feed. The relay gives each row a position as it first claims it:
rows are claimed only once committed, and the schema's relays take turns, so positions
follow commit order, and a position becomes visible only once every earlier one is
(libs.common.events.store.claim_for_publishing). A reader that follows `next_cursor` from
the start therefore sees every change exactly once, in commit order, whatever the number
of writers, which `updated_since` cannot promise (a transaction that commits late carries
an earlier time). Rows are kept `FEED_DAYS` and more after publishing
(`Settings.outbox_retention_s`); a cursor from before what is kept answers 410.

Each request looks at no more than `SCAN` positions, so that a caller who sees few of the
records still gets a bounded answer: the next cursor then moves past what was looked at.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from sqlalchemy import ColumnElement, FromClause, Table
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.auth import Principal, PrincipalDep
from libs.common.errors import Gone, Unprocessable, invalid
from libs.common.events import store
from libs.common.http import decode_cursor, encode_cursor
from libs.common.runtime import RuntimeDep

FEED_DAYS = 30  # a feed keeps at least this many days of changes
SCAN = 10_000  # the most positions one request looks at
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


class Change(BaseModel):
    """One committed change: the event type, the record's id and its version after it."""

    type: str
    id: str
    version: int
    at: datetime


class ChangesOut(BaseModel):
    items: list[Change]
    next_cursor: str


@dataclass(frozen=True)
class FeedAsk:
    """`after` (a cursor, or None for the start of what is kept) and `limit`."""

    after: str | None
    limit: int


async def feed_params(
    after: str | None = Query(
        None,
        max_length=100,
        description="next_cursor of the last answer; leave out to start at the oldest "
        f"change kept ({FEED_DAYS} days at least).",
    ),
    limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="Changes per answer."),
) -> FeedAsk:
    return FeedAsk(after, limit)


FeedAskDep = Annotated[FeedAsk, Depends(feed_params)]


@dataclass(frozen=True)
class Feed:
    """One service's feed: which outbox rows (`types`) are about which `records` (a table,
    or the join its visibility is written over), whose `key` the event carries in
    `data.<id_field>`."""

    name: str
    outbox: Table
    records: FromClause
    key: ColumnElement[Any]
    id_field: str
    types: tuple[str, ...]

    async def read(
        self, conn: AsyncConnection, visible: ColumnElement[bool], ask: FeedAsk
    ) -> dict[str, Any]:
        """The next changes after `ask.after` about records matching `visible`, and the
        cursor to follow them with (the answer of `GET …/changes`)."""
        last = await store.feed_last(conn, self.outbox)
        if ask.after is None:
            first = await store.feed_first(conn, self.outbox)
            after = 0 if first is None else first - 1
        else:
            after = self._position(ask.after)
            if after > last:
                raise invalid("after", "not a cursor of this feed")
        upto = min(after + SCAN, last)
        rows = await store.feed_page(
            conn,
            self.outbox,
            self.records,
            self.key,
            self.id_field,
            self.types,
            visible,
            after,
            upto,
            ask.limit,
        )
        # Read after the page: had the oldest changes been purged past the cursor before
        # the page was read, some of those it should have held would be missing.
        first = await store.feed_first(conn, self.outbox)
        if ask.after is not None and first is not None and after + 1 < first:
            raise Gone(
                f"this cursor is older than the {FEED_DAYS} days a feed keeps: resync with "
                "updated_since, then follow the feed again from its start (no `after`)"
            )
        end = rows[-1]["position"] if len(rows) == ask.limit else max(after, upto)
        return {
            "items": [
                {"type": r["type"], "id": str(r["id"]), "version": r["version"], "at": r["at"]}
                for r in rows
            ],
            "next_cursor": encode_cursor(self.name, end),
        }

    def _position(self, cursor: str) -> int:
        try:
            values = decode_cursor(cursor)
        except Unprocessable:
            values = ()
        match values:
            case (str(name), int(position)) if (
                name == self.name and not isinstance(position, bool) and 0 <= position < 2**62
            ):
                return position
        raise invalid("after", "not a cursor of this feed")


def add_changes_route(
    router: APIRouter,
    feed: Feed,
    *,
    scope: str,
    records: str,
    visible: Callable[[Principal], ColumnElement[bool]],
) -> None:
    """`GET <router's prefix>/changes`: `feed` as `visible` lets the caller see it."""

    async def changes(principal: PrincipalDep, rt: RuntimeDep, ask: FeedAskDep) -> Response:
        principal.require(scope)
        async with rt.db.transaction() as conn:
            return JSONResponse(await feed.read(conn, visible(principal), ask))

    router.add_api_route(
        "/changes",
        changes,
        methods=["GET"],
        response_model=ChangesOut,
        summary=f"Changes to {records}, in commit order",
        description=(
            f"Every change to the {records} you may see, each once, in the order they "
            "committed: follow `next_cursor` (always given; an empty page means you are up "
            f"to date). The feed keeps {FEED_DAYS} days; an older cursor answers 410. "
            "Needs `" + scope + "`."
        ),
        responses={410: {"description": f"The cursor is older than the {FEED_DAYS} days kept"}},
    )
