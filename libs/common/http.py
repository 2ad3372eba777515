"""HTTP conventions of every endpoint: pagination, ETag/If-Match, Idempotency-Key, timestamps."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import Column, DateTime, Integer, LargeBinary, MetaData, String, Table, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common import store
from libs.common.auth import Principal
from libs.common.db import Database
from libs.common.errors import (
    BadRequest,
    Conflict,
    NotFound,
    PreconditionFailed,
    PreconditionRequired,
    Problem,
    Unprocessable,
    invalid,
)
from libs.common.inputs import control_character_in

MAX_LIMIT = 500
DEFAULT_LIMIT = 50
IDEMPOTENCY_TTL = timedelta(hours=24)


# ---------------------------------------------------------------- pagination


@dataclass(frozen=True)
class Page:
    """limit, the decoded cursor and updated_since of a list request."""

    limit: int
    after: tuple[Any, ...] | None
    updated_since: datetime | None


def encode_cursor(*values: Any) -> str:
    """An opaque cursor from the sort key of the last item."""
    raw = json.dumps([v.isoformat() if isinstance(v, datetime) else v for v in values])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[Any, ...]:
    """The sort key a cursor stands for, else 422."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(values, list):
            raise ValueError
        return tuple(values)
    except (ValueError, TypeError) as exc:
        raise invalid("cursor", "not a cursor this API issued") from exc


# RFC 3339's date-time, as the schema's `format: date-time` means it (no bare numbers, which
# the parser would read as Unix times).
_RFC3339 = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)


async def page_params(
    request: Request,
    limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="Items per page (max 500)."),
    cursor: str | None = Query(None, max_length=512, description="next_cursor of the last page."),
    updated_since: datetime | None = Query(
        None, description="Only items updated at or after this RFC 3339 instant."
    ),
) -> Page:
    """FastAPI dependency for the list conventions (docs/api-guide.md, "Conventions")."""
    if updated_since is not None:
        if not _RFC3339.match(request.query_params.get("updated_since", "")):
            raise invalid("updated_since", "must be an RFC 3339 date-time with an offset")
        if updated_since.tzinfo is None:
            raise invalid("updated_since", "must be RFC 3339 with a time zone offset")
        try:
            updated_since = updated_since.astimezone(UTC)
        except OverflowError as exc:  # 0001-01-01T00:00+14:00 is before year 1 in UTC
            raise invalid("updated_since", "out of range") from exc
    return Page(
        limit=limit,
        after=decode_cursor(cursor) if cursor else None,
        updated_since=updated_since,
    )


PageDep = Annotated[Page, Depends(page_params)]


def time_cursor(page: Page, id_type: Callable[[str], Any] = uuid.UUID) -> Page:
    """Decode a list's cursor into its (updated_at, id) sort key, else 422."""
    if page.after is None:
        return page
    try:
        at, last = page.after
        if not isinstance(at, str) or not isinstance(last, str):
            raise ValueError
        if len(last) > 200 or control_character_in(last):
            raise ValueError
        moment = datetime.fromisoformat(at)
        if moment.tzinfo is None:
            raise ValueError
        return dataclasses.replace(page, after=(moment.astimezone(UTC), id_type(last)))
    except (ValueError, TypeError, OverflowError) as exc:
        raise invalid("cursor", "not a cursor this API issued") from exc


_Row = TypeVar("_Row")


def updated_key(row: Mapping[Any, Any]) -> tuple[Any, ...]:
    """The (updated_at, id) sort key of a row, as its cursor holds it."""
    return (row["updated_at"], str(row["id"]))


def page_answer(
    rows: Sequence[_Row], page: Page, key: Callable[[_Row], tuple[Any, ...]]
) -> tuple[Sequence[_Row], str | None]:
    """The page's items out of the rows `store.keyset` fetched (one more than the page when
    more follow), and the cursor of the next page: the `key` of its last item, else None."""
    items = rows[: page.limit]
    more = len(rows) > page.limit
    return items, encode_cursor(*key(items[-1])) if more else None


_BIGINT_MAX = 2**63 - 1


def seq_cursor(page: Page) -> Page:
    """Decode a list's cursor into its (sequence number,) sort key, else 422."""
    if page.after is None:
        return page
    match page.after:
        case (int(seq),) if not isinstance(seq, bool) and 0 <= seq <= _BIGINT_MAX:
            return dataclasses.replace(page, after=(seq,))
    raise invalid("cursor", "not a cursor this API issued")


# ---------------------------------------------------------------- ids in paths


def parse_id(value: str, what: str) -> uuid.UUID:
    """The UUID a path names; anything else names no `what`: 404 "no such {what}"."""
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise NotFound(f"no such {what}") from exc


# ---------------------------------------------------------------- ETag / If-Match


def etag(version: int) -> str:
    """The strong ETag of a resource version."""
    return f'"{version}"'


def require_if_match(request: Request) -> str:
    """PATCH: the If-Match header, else 428 (compare it with check_if_match)."""
    header = request.headers.get("if-match")
    if header is None:
        raise PreconditionRequired("send If-Match with the ETag you last read")
    return header


def check_if_match(header: str | None, version: int) -> None:
    """Action endpoints: If-Match is optional, but when sent it must match."""
    if header is None:
        return
    tags = [t.strip() for t in header.split(",")]
    if "*" in tags:
        return
    if etag(version) not in tags:
        raise PreconditionFailed("the resource changed since you read it; read it again")


# ---------------------------------------------------------------- JSON answers


def json_response(
    body: Any, status: int = 200, *, version: int | None = None, location: str | None = None
) -> JSONResponse:
    """A JSON answer with ETag and Location when given."""
    headers: dict[str, str] = {}
    if version is not None:
        headers["ETag"] = etag(version)
    if location is not None:
        headers["Location"] = location
    return JSONResponse(body, status_code=status, headers=headers)


# ---------------------------------------------------------------- Idempotency-Key


def idempotency_table(metadata: MetaData, schema: str) -> Table:
    """The stored first answers to Idempotency-Key requests, one table per schema."""
    return Table(
        "idempotency_keys",
        metadata,
        Column("client_id", String(200), primary_key=True),
        Column("key", String(255), primary_key=True),
        Column("request_hash", LargeBinary, nullable=False),
        Column("status", Integer, nullable=False),
        Column("headers", JSONB, nullable=False),
        Column("body", LargeBinary, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        schema=schema,
    )


_REPLAYED_HEADERS = ("etag", "location", "content-type")


class Idempotency:
    """Same key + same body replays; other body 422; concurrent duplicate 409
    (docs/api-guide.md, "Conventions of every endpoint").

    Use inside the request's transaction: `begin` before the work, `record` after it,
    so the stored answer commits together with the effect it describes.
    """

    def __init__(self, table: Table) -> None:
        self.table = table

    @staticmethod
    async def request_hash(request: Request) -> bytes:
        body = await request.body()
        return hashlib.sha256(
            request.method.encode() + b" " + request.url.path.encode() + b"\n" + body
        ).digest()

    async def begin(
        self, conn: AsyncConnection, client_id: str, key: str, request_hash: bytes
    ) -> Response | None:
        """Lock the key for this transaction; return the stored answer to replay, if any.

        The lock and the read are one statement, whose read may miss an answer committed
        by the lock's last holder just before the lock was taken: `record` then finds it, or,
        when the work fails, `answered_meanwhile`."""
        if not key or len(key) > 255 or not key.isprintable():
            raise BadRequest("Idempotency-Key must be 1 to 255 printable characters")
        locked, stored = await store.lock_key_and_read_answer(conn, self.table, client_id, key)
        if not locked:
            raise Conflict("a request with this Idempotency-Key is still in progress")
        if stored is None:
            return None
        if stored.created_at < datetime.now(UTC) - IDEMPOTENCY_TTL:
            await store.delete_answer(conn, self.table, client_id, key)
            return None
        return _replay(stored, request_hash)

    async def answered_meanwhile(
        self, db: Database, client_id: str, key: str, request_hash: bytes
    ) -> Response | None:
        """After this request's work failed: the replay of an answer stored to the key that
        `begin` missed, or None (none, or the key is in use again)."""
        async with db.transaction() as conn:
            locked, stored = await store.lock_key_and_read_answer(conn, self.table, client_id, key)
        if not locked or stored is None or stored.created_at < datetime.now(UTC) - IDEMPOTENCY_TTL:
            return None
        return _replay(stored, request_hash)

    async def record(
        self, conn: AsyncConnection, client_id: str, key: str, request_hash: bytes, answer: Response
    ) -> None:
        """Store the answer in the same transaction as the effect.

        When another request stored its answer to the key first (committed after `begin`
        read, see there), raise `AnsweredBefore` with its replay, or 422 when its body was
        different: either way this transaction's work must not commit."""
        headers = {k: v for k, v in answer.headers.items() if k.lower() in _REPLAYED_HEADERS}
        stored = await store.insert_answer(
            conn,
            self.table,
            client_id=client_id,
            key=key,
            request_hash=request_hash,
            status=answer.status_code,
            headers=headers,
            body=bytes(answer.body),
        )
        if stored is not None:
            raise AnsweredBefore(_replay(stored, request_hash))

    async def purge_expired(self, conn: AsyncConnection) -> int:
        """Delete answers older than 24 h."""
        return await store.delete_answers_before(
            conn, self.table, datetime.now(UTC) - IDEMPOTENCY_TTL
        )


class AnsweredBefore(Exception):
    """Another request with the same Idempotency-Key stored its answer first: `replay`."""

    def __init__(self, replay: Response) -> None:
        super().__init__("answered before")
        self.replay = replay


def _replay(stored: store.StoredAnswer, request_hash: bytes) -> Response:
    """The stored answer, replayed; 422 when it answered another request body."""
    if stored.request_hash != request_hash:
        raise Unprocessable("this Idempotency-Key was used with a different request body")
    headers = dict(stored.headers)
    headers["Idempotent-Replayed"] = "true"
    return Response(stored.body, status_code=stored.status, headers=headers)


Work = Callable[[AsyncConnection], Awaitable[Response]]


async def run_idempotent(
    db: Database, idempotency: Idempotency, request: Request, principal: Principal, work: Work
) -> Response:
    """Run a POST's work in one transaction, honouring Idempotency-Key when sent."""
    key = request.headers.get("idempotency-key")
    request_hash, working = b"", False
    try:
        async with db.transaction() as conn:
            if key is None:
                return await work(conn)
            request_hash = await idempotency.request_hash(request)
            replay = await idempotency.begin(conn, principal.sub, key, request_hash)
            if replay is not None:
                return replay
            working = True
            answer = await work(conn)
            working = False
            await idempotency.record(conn, principal.sub, key, request_hash, answer)
            return answer
    except AnsweredBefore as before:  # the work was rolled back
        return before.replay
    except Problem:
        # The work may have failed because it saw the effects of the key's earlier request,
        # whose answer `begin`'s read missed (see there): that answer, not this error.
        if not working or key is None:
            raise
        replay = await idempotency.answered_meanwhile(db, principal.sub, key, request_hash)
        if replay is None:
            raise
        return replay
