"""Reading children: one by id (locked, or audited as read), many by id in one statement,
a page of the visible ones, and a child's duplicate candidates."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.auth import Principal
from libs.common.http import Page
from libs.common.store import driver_connection, read_page
from services.registry import domain
from services.registry.models import children
from services.registry.store.visibility import (
    Child,
    candidates_sql,
    visibility_args,
    visible_sql,
    visible_to,
)

# The hot paths below talk to asyncpg directly (libs.common.store.driver_connection): one
# round trip each, prepared once per connection.
_READ_SQL = f"SELECT * FROM registry.children WHERE id = $1 AND {visible_sql('$2', '$3', '$4')}"
_READ_FOR_UPDATE_SQL = _READ_SQL + " FOR UPDATE"


async def read_child(
    conn: AsyncConnection,
    child_id: uuid.UUID,
    principal: Principal,
    *,
    lock: bool = False,
    audit: tuple[str, str] | None = None,
) -> Child | None:
    """A child visible to the principal; locked for update, or recorded as read (action,
    request id) in the same round trip."""
    if audit is not None:
        [audited] = await read_children(conn, [AuditedRead(child_id, principal, *audit)])
        return audited
    pg = await driver_connection(conn)
    child: Child | None = await pg.fetchrow(
        _READ_FOR_UPDATE_SQL if lock else _READ_SQL, child_id, *visibility_args(principal)
    )
    return child


@dataclass(frozen=True)
class AuditedRead:
    """A read of one child by id, recorded in the audit log as `action` of the request."""

    child_id: uuid.UUID
    principal: Principal
    action: str
    request_id: str


_READS_SQL = (
    "WITH x AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(n integer, child_id uuid,"
    " areas text[], partner_org text, username text, actor_sub text, actor_org text, action text,"
    " request_id text)),"
    # The id list lets the planner fetch the few children by primary key.
    " c AS (SELECT x.n, ch.* FROM x JOIN registry.children ch ON ch.id = x.child_id"
    f" WHERE ch.id = ANY($2::uuid[])"
    f" AND {visible_sql('x.areas', 'x.partner_org', 'x.username', 'ch.')}),"
    " a AS (INSERT INTO registry.audit_log (actor_sub, actor_org, action, child_id, request_id)"
    " SELECT x.actor_sub, x.actor_org, x.action, c.id, x.request_id FROM c JOIN x USING (n))"
    " SELECT * FROM c"
)


async def read_children(conn: AsyncConnection, reads: Sequence[AuditedRead]) -> list[Child | None]:
    """Children by id, each as its reader may see it (None: not visible), and every read
    that found its child in the audit log, in one statement; in the order of `reads`."""
    records = []
    for n, read in enumerate(reads):
        areas, partner_org, username = visibility_args(read.principal)
        records.append(
            {
                "n": n,
                "child_id": str(read.child_id),
                "areas": areas,
                "partner_org": partner_org,
                "username": username,
                "actor_sub": read.principal.sub,
                "actor_org": read.principal.org,
                "action": read.action,
                "request_id": read.request_id,
            }
        )
    pg = await driver_connection(conn)
    found: list[Child | None] = [None] * len(reads)
    ids = [read.child_id for read in reads]
    for record in await pg.fetch(_READS_SQL, json.dumps(records), ids):
        found[record["n"]] = record
    return found


# ---------------------------------------------------------------- pages and duplicate candidates


@dataclass(frozen=True)
class ChildFilter:
    commune_code: str | None = None
    status: str | None = None
    risk_level: str | None = None
    vulnerability: str | None = None
    q: str | None = None


async def list_children(
    conn: AsyncConnection, principal: Principal, flt: ChildFilter, page: Page
) -> list[RowMapping]:
    """Visible children in (updated_at, id) order, one more than the page to tell if more follow."""
    c = children.c
    query = select(children).where(visible_to(principal))
    if flt.commune_code:
        query = query.where(c.commune_code == flt.commune_code)
    if flt.status:
        query = query.where(c.status == flt.status)
    if flt.risk_level:
        query = query.where(c.risk_level == flt.risk_level)
    if flt.vulnerability:
        query = query.where(c.vulnerabilities.contains([flt.vulnerability]))
    if flt.q:
        query = query.where(c.name_search.like(domain.like_pattern(flt.q), escape="\\"))
    return await read_page(conn, query, page, key=(c.updated_at, c.id), changed_at=c.updated_at)


_DUPLICATES_SQL = candidates_sql(
    "$1", "$2", "$3", "$4", "$5::text[]", "$7", "$8", "$9", other_than="$6"
)


async def duplicate_candidates(
    conn: AsyncConnection, child: dict[str, Any] | Child, principal: Principal
) -> list[Child]:
    """Children of the same sex and commune born within a year that share a name key with
    the child (see candidates_sql), visible to the principal."""
    pg = await driver_connection(conn)
    born: date = child["birth_date"]
    year = timedelta(days=366)
    rows: list[Child] = await pg.fetch(
        _DUPLICATES_SQL,
        child["commune_code"],
        child["sex"],
        born - year,
        born + year,
        child["name_keys"],
        child.get("id"),
        *visibility_args(principal),
    )
    return rows
