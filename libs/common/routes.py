"""The shapes most routes of a service have, so that a new service copies the shape, not the
code.

A route checks its scope (`principal.require`), parses the ids of its path
(`libs.common.http.parse_id`) and builds its `Context`, then hands the use case to one of:

- `write_record`: a POST that creates or changes one record (Idempotency-Key honoured),
- `patch_record`: a PATCH of one record (the route requires If-Match; no Idempotency-Key),
- `read_record`: a GET of one record,
- `list_page`: a GET of a list in (updated_at, id) order, oldest change first.

Each answers the record's public form (`out`, e.g. `referral_out`) with its ETag, and a new
record with 201 Created and its Location.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.auth import Principal
from libs.common.http import Page, json_response, page_answer, time_cursor, updated_key
from libs.common.runtime import ServiceRuntime

Record = TypeVar("Record", bound=Mapping[Any, Any])

# A record's public form, e.g. `referral_out`.
Out = Callable[[Record], dict[str, Any]]
# A use case on one record, in the request's transaction.
UseCase = Callable[[AsyncConnection], Awaitable[Record]]


def record_response(
    out: Out[Record], record: Record, *, created: Callable[[Any], str] | None = None
) -> JSONResponse:
    """A record's answer: its public form with its ETag. With `created` (the path of a record
    by its id) it is a new record: 201 Created, with its Location."""
    if created is None:
        return json_response(out(record), version=record["version"])
    return json_response(
        out(record), 201, version=record["version"], location=created(record["id"])
    )


async def write_record(
    rt: ServiceRuntime,
    request: Request,
    principal: Principal,
    use_case: UseCase[Record],
    out: Out[Record],
    *,
    created: Callable[[Any], str] | None = None,
) -> Response:
    """A POST on one record: `use_case` runs as the request's unit of work (honouring
    Idempotency-Key, `ServiceRuntime.write`) and the answer is the record it returns."""

    async def work(conn: AsyncConnection) -> Response:
        return record_response(out, await use_case(conn), created=created)

    return await rt.write(request, principal, work)


# The answers a PATCH adds to its record's: it must send the ETag it read as If-Match.
PATCH_RESPONSES: dict[int | str, dict[str, Any]] = {
    412: {"description": "Stale If-Match"},
    428: {"description": "If-Match missing"},
}


async def patch_record(rt: ServiceRuntime, use_case: UseCase[Record], out: Out[Record]) -> Response:
    """A PATCH of one record: `use_case` in one transaction, then the relay woken for the
    events it wrote; the answer is the record it returns."""
    async with rt.db.transaction() as conn:
        record = await use_case(conn)
    rt.relay.notify()
    return record_response(out, record)


async def read_record(rt: ServiceRuntime, use_case: UseCase[Record], out: Out[Record]) -> Response:
    """A GET of one record: `use_case` reads it (404 when the caller may not see it)."""
    async with rt.db.transaction() as conn:
        record = await use_case(conn)
    return record_response(out, record)


async def list_page(
    rt: ServiceRuntime,
    page: Page,
    rows: Callable[[AsyncConnection, Page], Awaitable[Sequence[Record]]],
    out: Out[Record],
) -> Response:
    """A GET of a list in (updated_at, id) order: `rows(conn, page)` is the list's store
    function (filters, then `store.keyset`); the answer is the page's items in their public
    form and the next page's cursor."""
    page = time_cursor(page)
    async with rt.db.transaction() as conn:
        found = await rows(conn, page)
    items, cursor = page_answer(found, page, updated_key)
    return JSONResponse({"items": [out(r) for r in items], "next_cursor": cursor})
