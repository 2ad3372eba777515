"""Writing children: registrations in one statement, a change's history, audit and outbox
rows in one round trip, updates, and the claim of external ids."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, NamedTuple

from sqlalchemy import select, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.auth import Principal
from libs.common.events import CloudEvent
from libs.common.store import driver_connection, versioned_update
from services.registry.models import children, external_ids
from services.registry.store.visibility import Child, candidates_sql, visibility_args

# The hot paths below talk to asyncpg directly (libs.common.store.driver_connection): one
# round trip each, prepared once per connection.
_RECORD_SQL = (
    "WITH h AS (INSERT INTO registry.child_history"
    " (child_id, version, action, actor_sub, actor_org, request_id, changes)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)),"
    " a AS (INSERT INTO registry.audit_log (actor_sub, actor_org, action, child_id, request_id)"
    " VALUES ($4, $5, $8, $1, $6))"
    " INSERT INTO registry.outbox (id, type, payload) VALUES ($9::uuid, $10, $11::jsonb)"
)
_OUTBOX_SQL = "INSERT INTO registry.outbox (id, type, payload) VALUES ($1::uuid, $2, $3::jsonb)"


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
    "name_keys": "text[]",
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
    "care_setting": "text",
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
    "username": "text",
}
_CHILD_COLUMNS = ", ".join(_CHILD_TYPES)
# The registrations' statement: without their duplicate candidates (children:batch answers
# none: see service.register_batch), or with them.
_REGISTER_HEAD = (
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
    " SELECT j.id, j.case_number, j.created_at, j.updated_at"
)
_REGISTER_SQL = _REGISTER_HEAD + " FROM j"
_REGISTER_FINDING_SQL = (
    _REGISTER_HEAD
    + ", (SELECT json_agg(row_to_json(d)) FROM ("
    + candidates_sql(
        "j.commune_code",
        "j.sex",
        "j.born_from",
        "j.born_to",
        "j.name_keys",
        "j.areas",
        "j.partner_org",
        "j.username",
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
    conn: AsyncConnection, registrations: Sequence[Registration], *, candidates: bool = True
) -> list[Stored]:
    """Insert new children, each numbered `<commune>-<seq>` and with its history, audit and
    outbox rows, in one statement (atomic without a transaction of its own). Per
    registration, in order: the child as stored, and its duplicate candidates (see
    duplicate_candidates) as of before the statement; none, and none looked for, when
    `candidates` is false.

    Each event is built before its case number exists; the statement writes it in."""
    records = []
    for r in registrations:
        if r.row.keys() != _CHILD_TYPES.keys():
            raise ValueError(f"a new child has the columns {sorted(_CHILD_TYPES)}")
        born: date = r.row["birth_date"]
        areas, partner_org, username = visibility_args(r.principal)
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
                "username": username,
            }
        )
    pg = await driver_connection(conn)
    stored = {
        record["id"]: record
        for record in await pg.fetch(
            _REGISTER_FINDING_SQL if candidates else _REGISTER_SQL,
            json.dumps(records, default=_json_value),
        )
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
        found = [
            {**other, "birth_date": date.fromisoformat(other["birth_date"])}
            for other in (record["found"] if candidates else None) or ()
        ]
        results.append(Stored(child, found))
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
    also: Sequence[CloudEvent] = (),
) -> None:
    """History, audit and outbox rows of one change to one child, in one round trip (and
    one more for the events `also` published by the change, after `event`)."""
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
    if also:
        await pg.executemany(_OUTBOX_SQL, [(e.id, e.type, e.model_dump_json()) for e in also])


async def update_child(
    conn: AsyncConnection, child_id: uuid.UUID, version: int, values: dict[str, Any]
) -> Child:
    """Write new values and bump the version (the row is already locked by the caller)."""
    result = await conn.execute(versioned_update(children, child_id, version, values))
    return result.mappings().one()


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


_OWNERS_SQL = (
    "SELECT e.system, e.value, e.child_id FROM registry.external_ids e"
    " JOIN unnest($2::text[], $3::text[]) AS k(system, value)"
    " ON e.system = k.system AND e.value = k.value WHERE e.org = $1"
)
_CLAIM_ALL_SQL = (
    "INSERT INTO registry.external_ids (org, system, value, child_id)"
    " SELECT $1, system, value, child_id FROM unnest($2::text[], $3::text[], $4::uuid[])"
    " AS k(system, value, child_id) ON CONFLICT DO NOTHING RETURNING child_id"
)
_UNCLAIM_SQL = "DELETE FROM registry.external_ids WHERE org = $1 AND child_id = ANY($2::uuid[])"


async def external_id_owners(
    conn: AsyncConnection, org: str, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], uuid.UUID]:
    """The children that an organisation's external ids (system, value) already name, in
    one statement; a key no child holds is absent."""
    if not keys:
        return {}
    pg = await driver_connection(conn)
    rows = await pg.fetch(_OWNERS_SQL, org, [k[0] for k in keys], [k[1] for k in keys])
    return {(r["system"], r["value"]): r["child_id"] for r in rows}


async def claim_all_external_ids(
    conn: AsyncConnection, org: str, claims: Sequence[tuple[str, str, uuid.UUID]]
) -> bool:
    """Claim (system, value) for each new child, all in one statement (the keys distinct).
    True when every one was claimed; otherwise another transaction took one since it was
    looked up, and none of these claims is kept (False)."""
    if not claims:
        return True
    pg = await driver_connection(conn)
    columns = [list(column) for column in zip(*claims, strict=True)]
    claimed = await pg.fetch(_CLAIM_ALL_SQL, org, *columns)
    if len(claimed) == len(claims):
        return True
    await pg.execute(_UNCLAIM_SQL, org, sorted({c[2] for c in claims}))
    return False
