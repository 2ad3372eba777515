"""The registry's use cases: each runs in the caller's transaction and returns what to answer."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, TypeVar

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common import access, clock, places
from libs.common.auth import Principal
from libs.common.batching import GroupCommit
from libs.common.context import Context
from libs.common.db import Database
from libs.common.errors import Problem, Unprocessable, found, validation_errors
from libs.common.events import CloudEvent
from libs.common.http import check_if_match
from services.registry import domain, names, store
from services.registry.schemas import ChildIn, ChildPatch


def _child_event(
    ctx: Context, verb: str, child: Any, changed: list[str] | None = None
) -> CloudEvent:
    """The `registry.child.<verb>` event of a child, in this request."""
    data = domain.event_data(child, changed)
    return ctx.event(f"registry.child.{verb}.v1", str(child["id"]), data)


@dataclass
class Registered:
    child: Any
    created: bool
    duplicates: list[dict[str, Any]]


def _new_row(item: ChildIn, ctx: Context) -> dict[str, Any]:
    """The columns of a new child, all but its case number (the insert numbers it)."""
    commune = item.commune
    return {
        "id": uuid.uuid4(),
        "given_name": item.given_name,
        "family_name": item.family_name,
        "name_search": domain.name_search(item.given_name, item.family_name),
        "name_keys": names.name_keys(item.given_name, item.family_name, commune, item.sex.value),
        "sex": item.sex.value,
        "birth_date": item.birth_date,
        "birth_date_estimated": item.birth_date_estimated,
        "commune_code": commune,
        "village_code": item.village_code,
        "place_code": item.village_code or commune,
        "caregiver": item.caregiver.model_dump(mode="json") if item.caregiver else None,
        "household_id_poor": item.household_id_poor,
        "id_poor_level": item.id_poor_level,
        "vulnerabilities": sorted({v.value for v in item.vulnerabilities}),
        "risk_level": item.risk_level.value,
        "care_setting": item.care_setting.value,
        "consent": item.consent.model_dump(mode="json"),
        "status": "open",
        "owner_org": ctx.principal.org,
        "created_by": ctx.principal.sub,
        "external_ids": [e.model_dump() for e in item.external_ids],
        "registered_on": _registered_on(item, ctx),
        "version": 1,
    }


def _registered_on(item: ChildIn, ctx: Context) -> date:
    return domain.registration_date(item.registered_on, clock.today(ctx.received_at))


def _check_new(item: ChildIn, ctx: Context) -> None:
    domain.check_registrable(item.birth_date, _registered_on(item, ctx))
    ctx.principal.require_covers_place(item.commune, item.village_code)


async def likely_duplicates(
    conn: AsyncConnection, child: Any, principal: Principal
) -> list[dict[str, Any]]:
    """Visible children that may be the same child, best first (at most
    domain.MAX_DUPLICATES)."""
    return ranked_duplicates(child, await store.duplicate_candidates(conn, child, principal))


def ranked_duplicates(child: Any, candidates: Sequence[Any]) -> list[dict[str, Any]]:
    """The candidates that score as likely duplicates of the child, best first (equal
    scores by case number), at most domain.MAX_DUPLICATES."""
    found = []
    for other in candidates:
        score, reasons = domain.duplicate_score(child, other)
        if score >= domain.DUPLICATE_THRESHOLD:
            found.append(
                {
                    "id": str(other["id"]),
                    "case_number": other["case_number"],
                    "score": score,
                    "reasons": reasons,
                }
            )
    found.sort(key=lambda d: (-d["score"], d["case_number"]))
    return found[: domain.MAX_DUPLICATES]


def _registration(item: ChildIn, ctx: Context) -> store.Registration:
    """A new child ready to write, with its event (whose case number the write fills in)."""
    _check_new(item, ctx)
    row = _new_row(item, ctx)
    event = _child_event(ctx, "registered", {**row, "case_number": ""})
    return store.Registration(row, ctx.principal, ctx.request_id, event)


def _registered(registration: store.Registration, stored: store.Stored) -> Registered:
    registration.event.data["case_number"] = stored.child["case_number"]
    return Registered(stored.child, True, ranked_duplicates(registration.row, stored.candidates))


Registrations = GroupCommit[store.Registration, store.Stored]
Reads = GroupCommit[store.AuditedRead, Any]  # a child record, or None: not visible

T = TypeVar("T")
R = TypeVar("R")


def _grouped(
    db: Database, name: str, statement: Callable[[AsyncConnection, Sequence[T]], Awaitable[list[R]]]
) -> GroupCommit[T, R]:
    """A GroupCommit whose groups are one statement each, on a pooled connection without
    a transaction of its own."""

    async def write(group: Sequence[T]) -> list[R]:
        async with db.connection() as conn:
            return await statement(conn, group)

    return GroupCommit(name, write)


def registrations(db: Database) -> Registrations:
    """Registrations without external ids, written together as they arrive."""
    return _grouped(db, "registrations", store.insert_registrations)


def reads(db: Database) -> Reads:
    """Reads of a child by id, read and audited together as they arrive."""
    return _grouped(db, "reads", store.read_children)


async def register_grouped(group: Registrations, item: ChildIn, ctx: Context) -> Registered:
    """Register a child that carries no external id, with concurrent registrations."""
    registration = _registration(item, ctx)
    return _registered(registration, await group.submit(registration))


async def register(conn: AsyncConnection, item: ChildIn, ctx: Context) -> Registered:
    """Register a child in the caller's transaction, or find the one an external id
    already names."""
    registration = _registration(item, ctx)
    row = registration.row
    if row["external_ids"]:
        existing_id = await store.claim_external_ids(
            conn, ctx.principal.org, row["id"], row["external_ids"]
        )
        if existing_id is not None:
            existing = await store.read_child(
                conn, existing_id, ctx.principal, audit=("read", ctx.request_id)
            )
            if existing is None:  # the organisation's own child moved out of the areas
                raise Unprocessable(
                    "an external id of this child names a record outside your areas"
                )
            return Registered(existing, False, [])
    [stored] = await store.insert_registrations(conn, [registration])
    return _registered(registration, stored)


def _prepared(raw: dict[str, Any], ctx: Context) -> store.Registration | dict[str, Any]:
    """An item of a batch ready to write, or its error result."""
    try:
        return _registration(ChildIn.model_validate(raw), ctx)
    except ValidationError as exc:
        errors = validation_errors(exc.errors())
        problem = Unprocessable(
            "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5]), errors=errors
        )
        return {"status": "error", "problem": problem.body()}
    except Problem as exc:
        return {"status": "error", "problem": exc.body()}


def _external_keys(registration: store.Registration) -> list[tuple[str, str]]:
    return [(e["system"], e["value"]) for e in registration.row["external_ids"]]


async def register_batch(
    conn: AsyncConnection, items: Sequence[dict[str, Any]], ctx: Context
) -> list[dict[str, Any]]:
    """Register up to 1,000 children; one result per item, in order.

    An item whose external id an earlier item of the batch or an existing child already
    holds answers "existing" with that child. The external ids are looked up in one
    statement and claimed in another; should a concurrent transaction claim one in between,
    the batch claims them item by item instead. No possible_duplicates are answered (nor
    looked for): `GET /children/{id}/duplicates` lists them, items of the same batch
    included. The new children are written in one statement."""
    prepared = [_prepared(raw, ctx) for raw in items]
    org = ctx.principal.org
    keys = [k for p in prepared if isinstance(p, store.Registration) for k in _external_keys(p)]
    owners = await store.external_id_owners(conn, org, list(dict.fromkeys(keys)))

    async def owner(p: store.Registration) -> str | None:
        return next((str(owners[k]) for k in _external_keys(p) if k in owners), None)

    results, registrations = await _sorted_batch(prepared, owner)
    claims = list(
        dict.fromkeys((*k, r.row["id"]) for r in registrations for k in _external_keys(r))
    )
    if not await store.claim_all_external_ids(conn, org, claims):
        return await _register_batch_claiming_each(conn, prepared, ctx)
    if registrations:
        await store.insert_registrations(conn, registrations, candidates=False)
    return results


async def _register_batch_claiming_each(
    conn: AsyncConnection, prepared: Sequence[store.Registration | dict[str, Any]], ctx: Context
) -> list[dict[str, Any]]:
    """register_batch when a concurrent transaction claimed one of its external ids: each
    item's ids claimed in turn (waiting for any transaction that holds one)."""

    async def claimant(p: store.Registration) -> str | None:
        row = p.row
        existing = await store.claim_external_ids(
            conn, ctx.principal.org, row["id"], row["external_ids"]
        )
        return None if existing is None else str(existing)

    results, registrations = await _sorted_batch(prepared, claimant)
    if registrations:
        await store.insert_registrations(conn, registrations, candidates=False)
    return results


async def _sorted_batch(
    prepared: Sequence[store.Registration | dict[str, Any]],
    holder: Callable[[store.Registration], Awaitable[str | None]],
) -> tuple[list[dict[str, Any]], list[store.Registration]]:
    """A batch's results in order and the registrations to write: an item whose external id
    an earlier item of the batch holds, or `holder` names a child for, answers "existing"
    with that child; an error stays as it is; any other is created."""
    results: list[dict[str, Any]] = []
    registrations: list[store.Registration] = []
    seen_ids: dict[tuple[str, str], str] = {}
    for p in prepared:
        if not isinstance(p, store.Registration):
            results.append(p)
            continue
        item_keys = _external_keys(p)
        earlier = next((seen_ids[k] for k in item_keys if k in seen_ids), None)
        if earlier is None:
            earlier = await holder(p)
        if earlier is not None:
            results.append({"status": "existing", "id": earlier})
            continue
        seen_ids.update(dict.fromkeys(item_keys, str(p.row["id"])))
        registrations.append(p)
        results.append({"status": "created", "id": str(p.row["id"])})
    return results, registrations


async def read(
    conn: AsyncConnection, child_id: uuid.UUID, ctx: Context, *, lock: bool = False
) -> Any:
    """A visible child (locked for a change when asked); 404 otherwise."""
    return found(await store.read_child(conn, child_id, ctx.principal, lock=lock), "child")


async def read_for_change(conn: AsyncConnection, child_id: uuid.UUID, ctx: Context) -> Any:
    """A child the principal may change, locked: 404 when it may not read it, 403 when it
    may only read it (through a referral, libs.common.access)."""
    child = await read(conn, child_id, ctx, lock=True)
    access.require_change(ctx.principal, child["owner_org"])
    return child


async def read_grouped(group: Reads, child_id: uuid.UUID, ctx: Context) -> Any:
    """A visible child, recorded in the audit log as read (with concurrent reads); 404
    otherwise."""
    child = await group.submit(store.AuditedRead(child_id, ctx.principal, "read", ctx.request_id))
    return found(child, "child")


async def read_audited(
    conn: AsyncConnection, child_id: uuid.UUID, ctx: Context, action: str = "read"
) -> Any:
    """A visible child, recorded in the audit log as read; 404 otherwise."""
    child = await store.read_child(conn, child_id, ctx.principal, audit=(action, ctx.request_id))
    return found(child, "child")


# Columns computed from others (the name's search form and keys): never a change of their own.
_DERIVED = ("name_search", "name_keys")
# What a child's name columns are computed from.
_NAMED_BY = ("given_name", "family_name", "commune_code", "sex")


async def _write(
    conn: AsyncConnection, child: Any, values: dict[str, Any], action: str, ctx: Context
) -> Any:
    diff = {k: v for k, v in domain.changes(child, values).items() if k not in _DERIVED}
    updated = await store.update_child(conn, child["id"], child["version"], values)
    event = _child_event(ctx, action, updated, sorted(diff) if action == "updated" else None)
    also = []
    if domain.reintegrated(child["care_setting"], updated["care_setting"]):
        on = clock.today(ctx.received_at)
        data = domain.reintegration_data(updated, child["care_setting"], on)
        also.append(ctx.event("registry.child.reintegrated.v1", str(child["id"]), data))
    await store.record_change(
        conn,
        updated,
        history_action=action,
        changes=diff,
        audit_action=action,
        principal=ctx.principal,
        request_id=ctx.request_id,
        event=event,
        also=also,
    )
    return updated


async def patch(
    conn: AsyncConnection, child_id: uuid.UUID, change: ChildPatch, if_match: str, ctx: Context
) -> Any:
    """Apply a merge patch to the version the client read."""
    child = await read_for_change(conn, child_id, ctx)
    check_if_match(if_match, child["version"])
    values = change.model_dump(mode="python", exclude_unset=True)
    for key in ("caregiver", "consent"):
        if key in values and values[key] is not None:
            values[key] = getattr(change, key).model_dump(mode="json")
    if "vulnerabilities" in values:
        values["vulnerabilities"] = sorted(
            {v.value if hasattr(v, "value") else v for v in values["vulnerabilities"]}
        )
    for key in ("sex", "risk_level", "care_setting"):
        if key in values:
            values[key] = values[key].value
    if "village_code" in values or "commune_code" in values:
        village = values.get(
            "village_code", child["village_code"] if "commune_code" not in values else None
        )
        commune = values.get("commune_code") or (
            places.commune_of(village) if village else child["commune_code"]
        )
        if village is not None and not places.listed_in(village, commune):
            raise Unprocessable(
                "village_code is not in commune_code",
                errors=[{"field": "village_code", "message": "not in commune_code"}],
            )
        ctx.principal.require_covers_place(commune, village)
        values.update(village_code=village, commune_code=commune, place_code=village or commune)
    if "birth_date" in values:
        domain.check_registrable(values["birth_date"], child["registered_on"])
    if any(k in values for k in _NAMED_BY):
        given, family, commune, sex = (values.get(k, child[k]) for k in _NAMED_BY)
        values["name_search"] = domain.name_search(given, family)
        values["name_keys"] = names.name_keys(given, family, commune, sex)
    return await _write(conn, child, values, "updated", ctx)


async def close(
    conn: AsyncConnection, child_id: uuid.UUID, reason: str, if_match: str | None, ctx: Context
) -> Any:
    child = await read_for_change(conn, child_id, ctx)
    check_if_match(if_match, child["version"])
    status = domain.close(child["status"])
    return await _write(conn, child, {"status": status, "close_reason": reason}, "closed", ctx)


async def reopen(
    conn: AsyncConnection, child_id: uuid.UUID, if_match: str | None, ctx: Context
) -> Any:
    child = await read_for_change(conn, child_id, ctx)
    check_if_match(if_match, child["version"])
    status = domain.reopen(child["status"])
    return await _write(conn, child, {"status": status, "close_reason": None}, "reopened", ctx)
