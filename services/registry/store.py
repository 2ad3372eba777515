"""Every SQL statement of the registry."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, func, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common import access
from libs.common.auth import Principal
from libs.common.db import driver_connection
from libs.common.events import CloudEvent
from libs.common.http import Page
from libs.common.store import keyset
from services.registry import domain
from services.registry.models import (
    audit_head,
    audit_log,
    child_history,
    children,
    external_ids,
    referral_access,
)

Child = Mapping[Any, Any]  # a row: SQLAlchemy's RowMapping, or an asyncpg Record


# ---------------------------------------------------------------- access


def visible_to(principal: Principal) -> ColumnElement[bool]:
    """Which children the principal may read (libs.common.access), over this schema."""
    c = children.c
    return access.child_visible_sql(
        principal,
        commune=c.commune_code,
        village=c.village_code,
        owner=c.owner_org,
        child_id=c.id,
        shares=access.shares_of(referral_access),
    )


def _visible_sql(areas: str, org: str, child: str = "") -> str:
    """SQL text form of visible_to for hand-written statements: `areas` and `org` are SQL
    expressions of visibility_args' two values, `child` the children table's alias and dot."""
    return access.child_visible_text(
        areas,
        org,
        shares="registry.referral_access",
        commune=f"{child}commune_code",
        village=f"{child}village_code",
        owner=f"{child}owner_org",
        child_id=f"{child}id",
    )


def visibility_args(principal: Principal) -> tuple[list[str] | None, str | None]:
    """Parameters of _visible_sql: area patterns, and the partner's org."""
    return access.visibility_args(principal)


def _candidates_sql(
    commune: str,
    sex: str,
    born_from: str,
    born_to: str,
    areas: str,
    org: str,
    *,
    other_than: str = "NULL",
    child: str = "",
) -> str:
    """The duplicate candidates of a child (columns domain.duplicate_score compares):
    children of its commune and sex born in the window, visible to the principal (areas,
    org as in _visible_sql), not the child itself; the arguments are SQL expressions."""
    return (
        "SELECT id, case_number, name_search, sex, commune_code, village_code, birth_date"
        f" FROM registry.children {child.rstrip('.')} WHERE {child}commune_code = {commune}"
        f" AND {child}sex = {sex} AND {child}birth_date BETWEEN {born_from} AND {born_to}"
        f" AND ({other_than}::uuid IS NULL OR {child}id <> {other_than})"
        f" AND {_visible_sql(areas, org, child)} LIMIT 200"
    )


# The hot paths below talk to asyncpg directly (libs.common.db.driver_connection): one
# round trip each, prepared once per connection.
_READ_SQL = f"SELECT * FROM registry.children WHERE id = $1 AND {_visible_sql('$2', '$3')}"
_READ_FOR_UPDATE_SQL = _READ_SQL + " FOR UPDATE"
_RECORD_SQL = (
    "WITH h AS (INSERT INTO registry.child_history"
    " (child_id, version, action, actor_sub, actor_org, request_id, changes)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)),"
    " a AS (INSERT INTO registry.audit_log (actor_sub, actor_org, action, child_id, request_id)"
    " VALUES ($4, $5, $8, $1, $6))"
    " INSERT INTO registry.outbox (id, type, payload) VALUES ($9::uuid, $10, $11::jsonb)"
)


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
    " areas text[], partner_org text, actor_sub text, actor_org text, action text,"
    " request_id text)),"
    # The id list lets the planner fetch the few children by primary key.
    " c AS (SELECT x.n, ch.* FROM x JOIN registry.children ch ON ch.id = x.child_id"
    f" WHERE ch.id = ANY($2::uuid[]) AND {_visible_sql('x.areas', 'x.partner_org', 'ch.')}),"
    " a AS (INSERT INTO registry.audit_log (actor_sub, actor_org, action, child_id, request_id)"
    " SELECT x.actor_sub, x.actor_org, x.action, c.id, x.request_id FROM c JOIN x USING (n))"
    " SELECT * FROM c"
)


async def read_children(conn: AsyncConnection, reads: Sequence[AuditedRead]) -> list[Child | None]:
    """Children by id, each as its reader may see it (None: not visible), and every read
    that found its child in the audit log, in one statement; in the order of `reads`."""
    records = []
    for n, read in enumerate(reads):
        areas, partner_org = visibility_args(read.principal)
        records.append(
            {
                "n": n,
                "child_id": str(read.child_id),
                "areas": areas,
                "partner_org": partner_org,
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


@dataclass(frozen=True)
class Registration:
    """A new child to write: its columns (all but the case number), who registers it, in
    which request, and its `registry.child.registered` event."""

    row: dict[str, Any]
    principal: Principal
    request_id: str
    event: CloudEvent


# The columns of a new child (services.registry.service builds them) as jsonb_to_recordset
# reads them, then what each registration brings besides.
_CHILD_TYPES = {
    "id": "uuid",
    "given_name": "text",
    "family_name": "text",
    "name_search": "text",
    "sex": "text",
    "birth_date": "date",
    "birth_date_estimated": "boolean",
    "commune_code": "text",
    "village_code": "text",
    "place_code": "text",
    "caregiver": "jsonb",
    "household_id_poor": "text",
    "id_poor_level": "integer",
    "vulnerabilities": "text[]",
    "risk_level": "text",
    "consent": "jsonb",
    "status": "text",
    "owner_org": "text",
    "created_by": "text",
    "external_ids": "jsonb",
    "registered_on": "date",
    "version": "integer",
}
_REGISTRATION_TYPES = {
    **_CHILD_TYPES,
    "actor_sub": "text",
    "actor_org": "text",
    "request_id": "text",
    "event_id": "uuid",
    "event_type": "text",
    "payload": "jsonb",
    "born_from": "date",
    "born_to": "date",
    "areas": "text[]",
    "partner_org": "text",
}
_CHILD_COLUMNS = ", ".join(_CHILD_TYPES)
_REGISTER_SQL = (
    "WITH x AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS x("
    + ", ".join(f"{name} {type_}" for name, type_ in _REGISTRATION_TYPES.items())
    + ")),"
    f" c AS (INSERT INTO registry.children (case_number, {_CHILD_COLUMNS})"
    " SELECT commune_code || '-' || lpad(nextval('registry.case_seq')::text, 7, '0'),"
    f" {_CHILD_COLUMNS} FROM x"
    " RETURNING id, case_number, created_at, updated_at),"
    " j AS (SELECT x.*, c.case_number, c.created_at, c.updated_at FROM x JOIN c USING (id)),"
    " h AS (INSERT INTO registry.child_history"
    " (child_id, version, action, actor_sub, actor_org, request_id, changes)"
    " SELECT id, version, 'registered', actor_sub, actor_org, request_id, '{}'::jsonb FROM j),"
    " a AS (INSERT INTO registry.audit_log (actor_sub, actor_org, action, child_id, request_id)"
    " SELECT actor_sub, actor_org, 'create', id, request_id FROM j),"
    " o AS (INSERT INTO registry.outbox (id, type, payload)"
    " SELECT event_id, event_type, jsonb_set(payload, '{data,case_number}', to_jsonb(case_number))"
    " FROM j)"
    " SELECT j.id, j.case_number, j.created_at, j.updated_at,"
    " (SELECT json_agg(row_to_json(d)) FROM ("
    + _candidates_sql(
        "j.commune_code",
        "j.sex",
        "j.born_from",
        "j.born_to",
        "j.areas",
        "j.partner_org",
        child="d.",
    )
    + ") d) AS found FROM j"
)


def _json_value(value: Any) -> Any:
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


class Stored(NamedTuple):
    """A registration as written: the child as stored, and its duplicate candidates."""

    child: dict[str, Any]
    candidates: list[dict[str, Any]]


async def insert_registrations(
    conn: AsyncConnection, registrations: Sequence[Registration]
) -> list[Stored]:
    """Insert new children, each numbered `<commune>-<seq>` and with its history, audit and
    outbox rows, in one statement (atomic without a transaction of its own). Per
    registration, in order: the child as stored, and its duplicate candidates (see
    duplicate_candidates) as of before the statement.

    Each event is built before its case number exists; the statement writes it in."""
    records = []
    for r in registrations:
        if r.row.keys() != _CHILD_TYPES.keys():
            raise ValueError(f"a new child has the columns {sorted(_CHILD_TYPES)}")
        born: date = r.row["birth_date"]
        areas, partner_org = visibility_args(r.principal)
        records.append(
            {
                **r.row,
                "actor_sub": r.principal.sub,
                "actor_org": r.principal.org,
                "request_id": r.request_id,
                "event_id": r.event.id,
                "event_type": r.event.type,
                "payload": r.event.model_dump(mode="json"),
                "born_from": born - timedelta(days=366),
                "born_to": born + timedelta(days=366),
                "areas": areas,
                "partner_org": partner_org,
            }
        )
    pg = await driver_connection(conn)
    stored = {
        record["id"]: record
        for record in await pg.fetch(_REGISTER_SQL, json.dumps(records, default=_json_value))
    }
    results: list[Stored] = []
    for r in registrations:
        record = stored[r.row["id"]]
        child = {  # what was written, and what the database set
            **r.row,
            "case_number": record["case_number"],
            "close_reason": None,
            "created_at": record["created_at"],
            "updated_at": record["updated_at"],
        }
        candidates = [
            {**found, "birth_date": date.fromisoformat(found["birth_date"])}
            for found in record["found"] or ()
        ]
        results.append(Stored(child, candidates))
    return results


async def record_change(
    conn: AsyncConnection,
    child: Child,
    *,
    history_action: str,
    changes: dict[str, Any],
    audit_action: str,
    principal: Principal,
    request_id: str,
    event: CloudEvent,
) -> None:
    """History, audit and outbox rows of one change to one child, in one round trip."""
    pg = await driver_connection(conn)
    await pg.execute(
        _RECORD_SQL,
        child["id"],
        child["version"],
        history_action,
        principal.sub,
        principal.org,
        request_id,
        json.dumps(changes),
        audit_action,
        event.id,
        event.type,
        event.model_dump_json(),
    )


# ---------------------------------------------------------------- external ids


async def claim_external_ids(
    conn: AsyncConnection, org: str, child_id: uuid.UUID, ids: Sequence[dict[str, str]]
) -> uuid.UUID | None:
    """Claim an organisation's external ids for a new child; the existing child if taken."""
    if not ids:
        return None
    claimed = await conn.execute(
        insert(external_ids)
        .values(
            [
                {"org": org, "system": i["system"], "value": i["value"], "child_id": child_id}
                for i in ids
            ]
        )
        .on_conflict_do_nothing()
        .returning(external_ids.c.system)
    )
    if len(claimed.all()) == len(ids):
        return None
    keys = [(i["system"], i["value"]) for i in ids]
    existing = await conn.scalar(
        select(external_ids.c.child_id).where(
            external_ids.c.org == org,
            tuple_(external_ids.c.system, external_ids.c.value).in_(keys),
            external_ids.c.child_id != child_id,
        )
    )
    return existing


# ---------------------------------------------------------------- children


@dataclass(frozen=True)
class ChildFilter:
    commune_code: str | None = None
    status: str | None = None
    risk_level: str | None = None
    vulnerability: str | None = None
    q: str | None = None


async def list_children(
    conn: AsyncConnection, principal: Principal, flt: ChildFilter, page: Page
) -> list[Child]:
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
    if page.updated_since is not None:
        query = query.where(c.updated_at >= page.updated_since)
    query = keyset(query, page, c.updated_at, c.id)
    return list((await conn.execute(query)).mappings().all())


async def update_child(
    conn: AsyncConnection, child_id: uuid.UUID, version: int, values: dict[str, Any]
) -> Child:
    """Write new values and bump the version (the row is already locked by the caller)."""
    result = await conn.execute(
        update(children)
        .where(children.c.id == child_id, children.c.version == version)
        .values(**values, version=version + 1, updated_at=func.now())
        .returning(*children.c)
    )
    return result.mappings().one()


_DUPLICATES_SQL = _candidates_sql("$1", "$2", "$3", "$4", "$6", "$7", other_than="$5")


async def duplicate_candidates(
    conn: AsyncConnection, child: dict[str, Any] | Child, principal: Principal
) -> list[Child]:
    """Children of the same sex and commune born within a year, visible to the principal."""
    pg = await driver_connection(conn)
    born: date = child["birth_date"]
    year = timedelta(days=366)
    rows: list[Child] = await pg.fetch(
        _DUPLICATES_SQL,
        child["commune_code"],
        child["sex"],
        born - year,
        born + year,
        child.get("id"),
        *visibility_args(principal),
    )
    return rows


# ---------------------------------------------------------------- history


async def list_history(conn: AsyncConnection, child_id: uuid.UUID, page: Page) -> list[RowMapping]:
    h = child_history.c
    query = select(child_history).where(h.child_id == child_id)
    if page.updated_since is not None:
        query = query.where(h.at >= page.updated_since)
    query = keyset(query, page, h.id)
    return list((await conn.execute(query)).mappings().all())


# ---------------------------------------------------------------- audit


async def add_audit(
    conn: AsyncConnection,
    principal: Principal,
    action: str,
    child_ids: Sequence[uuid.UUID],
    request_id: str,
) -> None:
    """Record reads or writes of children, in the caller's transaction."""
    if not child_ids:
        return
    await conn.execute(
        insert(audit_log),
        [
            {
                "actor_sub": principal.sub,
                "actor_org": principal.org,
                "action": action,
                "child_id": cid,
                "request_id": request_id,
            }
            for cid in child_ids
        ],
    )


async def list_audit(conn: AsyncConnection, child_id: uuid.UUID, page: Page) -> list[RowMapping]:
    a = audit_log.c
    query = select(audit_log).where(a.child_id == child_id)
    if page.updated_since is not None:
        query = query.where(a.at >= page.updated_since)
    query = keyset(query, page, a.seq)
    return list((await conn.execute(query)).mappings().all())


async def seal_audit(conn: AsyncConnection, batch: int = 5000) -> int:
    """Chain unsealed entries onto the head, in insertion order; return how many were sealed.

    The head row lock makes one sealer run at a time across replicas.
    """
    head = (await conn.execute(select(audit_head).with_for_update())).mappings().first()
    if head is None:
        await conn.execute(
            insert(audit_head)
            .values(id=1, chain_seq=0, hash=domain.GENESIS)
            .on_conflict_do_nothing()
        )
        head = (await conn.execute(select(audit_head).with_for_update())).mappings().one()
    pg = await driver_connection(conn)
    rows = await pg.fetch(
        "SELECT seq, at, actor_sub, actor_org, action, child_id, request_id"
        " FROM registry.audit_log WHERE chain_seq IS NULL ORDER BY seq LIMIT $1",
        batch,
    )
    if not rows:
        return 0
    prev, chain_seq = bytes(head["hash"]), int(head["chain_seq"])
    seqs, positions, prevs, hashes = [], [], [], []
    for row in rows:
        chain_seq += 1
        digest = domain.audit_link(prev, chain_seq, row)
        seqs.append(row["seq"])
        positions.append(chain_seq)
        prevs.append(prev)
        hashes.append(digest)
        prev = digest
    await pg.execute(
        "UPDATE registry.audit_log a SET chain_seq = u.c, prev_hash = u.p, hash = u.h"
        " FROM unnest($1::bigint[], $2::bigint[], $3::bytea[], $4::bytea[]) AS u(s, c, p, h)"
        " WHERE a.seq = u.s",
        seqs,
        positions,
        prevs,
        hashes,
    )
    await conn.execute(
        update(audit_head).where(audit_head.c.id == 1).values(chain_seq=chain_seq, hash=prev)
    )
    return len(seqs)


@dataclass(frozen=True)
class AuditVerdict:
    ok: bool
    checked: int
    unsealed: int
    head_chain_seq: int
    problem: str | None = None
    bad_seq: int | None = None


async def verify_audit(conn: AsyncConnection) -> AuditVerdict:
    """Walk the chain and recompute every link; name the first entry that does not hold."""
    head = (await conn.execute(select(audit_head))).mappings().first()
    head_seq = int(head["chain_seq"]) if head else 0
    head_hash = bytes(head["hash"]) if head else domain.GENESIS
    unsealed = int(
        await conn.scalar(
            select(func.count()).select_from(audit_log).where(audit_log.c.chain_seq.is_(None))
        )
        or 0
    )
    prev, expected, checked = domain.GENESIS, 1, 0

    def broken(problem: str, bad_seq: int | None) -> AuditVerdict:
        return AuditVerdict(False, checked, unsealed, head_seq, problem, bad_seq)

    stream = await conn.stream(
        select(audit_log).where(audit_log.c.chain_seq.is_not(None)).order_by(audit_log.c.chain_seq)
    )
    async for row in stream.mappings():
        checked += 1
        if row["chain_seq"] != expected:
            return broken(
                f"entry missing before chain position {row['chain_seq']} (expected {expected})",
                row["seq"],
            )
        if bytes(row["prev_hash"]) != prev:
            return broken(
                f"entry {row['seq']} does not follow its predecessor (reordered or changed)",
                row["seq"],
            )
        digest = domain.audit_link(prev, expected, row)
        if bytes(row["hash"]) != digest:
            return broken(f"entry {row['seq']} was altered", row["seq"])
        prev, expected = digest, expected + 1
    if expected - 1 != head_seq or prev != head_hash:
        return broken(
            f"chain ends at {expected - 1} but the head says {head_seq}: entries removed", None
        )
    return AuditVerdict(True, checked, unsealed, head_seq)
