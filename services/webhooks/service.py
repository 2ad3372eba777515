"""The webhooks use cases: each runs in the caller's transaction and returns what to answer.

Endpoints belong to an organisation: another organisation's answers 404 on every route.
Deliveries are made by the consumers (`fan_out`, in the transaction that records the event
in the inbox, so each event makes its deliveries exactly once) and sent by the worker
(`delivery.py`), which asks `visible_now` before each attempt.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.auth import Principal
from libs.common.context import Context
from libs.common.errors import Conflict, Forbidden, found, invalid
from libs.common.events import CloudEvent
from libs.common.http import Page, check_if_match
from services.webhooks import domain, store, urls
from services.webhooks.domain import ChildFacts, Facts, GrantFacts, ReferralFacts
from services.webhooks.schemas import EndpointIn, EndpointPatch

Row = store.Row


# ---------------------------------------------------------------- endpoints


async def check_url(url: str, *, allow_loopback: bool, resolver: urls.Resolver) -> None:
    """422 naming why, when deliveries may not go to the URL (before any transaction:
    resolving a name takes a moment)."""
    try:
        await urls.check(url, allow_loopback=allow_loopback, resolver=resolver)
    except urls.UrlRefused as refused:
        raise invalid("url", str(refused)) from refused


def _require_read_scopes(principal: Principal, event_types: Iterable[str]) -> None:
    missing = domain.missing_scopes(principal.scopes, event_types)
    if missing:
        raise Forbidden(
            f"missing scope: {' '.join(missing)} (an endpoint receives only records its "
            "owner may read)"
        )


def _owner(principal: Principal) -> dict[str, Any]:
    """The columns of the principal whose access decides what an endpoint receives."""
    return {
        "owner_sub": principal.sub,
        "owner_org_type": principal.org_type,
        "owner_scopes": sorted(principal.scopes),
        "owner_areas": list(principal.areas),
    }


async def create_endpoint(conn: AsyncConnection, body: EndpointIn, ctx: Context) -> tuple[Row, str]:
    """A new endpoint of the caller's organisation, and its secret (answered once)."""
    types = list(dict.fromkeys(body.event_types))
    _require_read_scopes(ctx.principal, types)
    secret = domain.new_secret()
    row = await store.insert_endpoint(
        conn,
        {
            "id": uuid.uuid4(),
            "org": ctx.principal.org,
            "url": body.url,
            "description": body.description,
            "event_types": types,
            "enabled": True,
            "secret": secret,
            **_owner(ctx.principal),
        },
    )
    return row, secret


async def read_endpoint(
    conn: AsyncConnection, endpoint_id: uuid.UUID, principal: Principal, *, lock: bool = False
) -> Row:
    """The organisation's endpoint; 404 for any other."""
    row = await store.get_endpoint(conn, endpoint_id, principal.org, lock=lock)
    return found(row, "webhook endpoint")


async def list_endpoints(conn: AsyncConnection, principal: Principal, page: Page) -> list[Row]:
    return await store.list_endpoints(conn, principal.org, page)


async def patch_endpoint(
    conn: AsyncConnection,
    endpoint_id: uuid.UUID,
    change: EndpointPatch,
    if_match: str,
    ctx: Context,
) -> Row:
    """Apply a merge patch to the version the client read; the caller becomes the principal
    whose access decides what the endpoint receives. `enabled: true` re-enables it (its
    waiting deliveries go again), `false` stops deliveries until then."""
    endpoint = await read_endpoint(conn, endpoint_id, ctx.principal, lock=True)
    check_if_match(if_match, endpoint["version"])
    values = change.model_dump(exclude_unset=True)
    if "event_types" in values:
        values["event_types"] = list(dict.fromkeys(values["event_types"]))
    _require_read_scopes(ctx.principal, values.get("event_types", endpoint["event_types"]))
    values.update(_owner(ctx.principal))
    enable = values.get("enabled")
    if enable is True and not endpoint["enabled"]:
        values.update(disabled_reason=None, failing_since=None)
    elif enable is False and endpoint["enabled"]:
        values["disabled_reason"] = "manual"
    updated = await store.update_endpoint(conn, endpoint_id, endpoint["version"], values)
    if enable is True and not endpoint["enabled"]:
        await store.resume_deliveries(conn, endpoint_id)
    return updated


async def delete_endpoint(conn: AsyncConnection, endpoint_id: uuid.UUID, ctx: Context) -> None:
    """Delete an endpoint and its deliveries (nothing more is sent to it)."""
    await read_endpoint(conn, endpoint_id, ctx.principal, lock=True)
    await store.delete_endpoint(conn, endpoint_id)


async def rotate_secret(
    conn: AsyncConnection, endpoint_id: uuid.UUID, if_match: str | None, ctx: Context
) -> tuple[Row, str]:
    """A new secret (answered once); the one it replaces keeps signing for 24 h, beside it."""
    endpoint = await read_endpoint(conn, endpoint_id, ctx.principal, lock=True)
    check_if_match(if_match, endpoint["version"])
    secret = domain.new_secret()
    updated = await store.update_endpoint(
        conn,
        endpoint_id,
        endpoint["version"],
        {
            "secret": secret,
            "previous_secret": endpoint["secret"],
            "previous_until": datetime.now(UTC) + domain.PREVIOUS_SECRET_SIGNS_FOR,
        },
    )
    return updated, secret


async def send_test(
    conn: AsyncConnection, endpoint_id: uuid.UUID, if_match: str | None, ctx: Context
) -> Row:
    """Queue a `webhook.test` delivery to the endpoint (409 while it is disabled)."""
    endpoint = await read_endpoint(conn, endpoint_id, ctx.principal)
    check_if_match(if_match, endpoint["version"])
    if not endpoint["enabled"]:
        raise Conflict("the endpoint is disabled: enable it (PATCH enabled: true) first")
    delivery_id = uuid.uuid4()
    body = domain.delivery_body(
        domain.TEST_TYPE, datetime.now(UTC), {"endpoint_id": str(endpoint_id)}
    )
    await store.insert_deliveries(
        conn,
        [
            {
                "id": delivery_id,
                "endpoint_id": endpoint_id,
                "event_id": uuid.uuid4(),
                "event_type": domain.TEST_TYPE,
                "body": body,
                "status": "pending",
            }
        ],
    )
    return found(await store.get_delivery(conn, endpoint_id, delivery_id), "delivery")


async def list_deliveries(
    conn: AsyncConnection,
    endpoint_id: uuid.UUID,
    status: str | None,
    page: Page,
    principal: Principal,
) -> tuple[list[Row], dict[uuid.UUID, list[Row]]]:
    """A page of the endpoint's deliveries (one more than the page), with their attempts."""
    await read_endpoint(conn, endpoint_id, principal)
    rows = await store.list_deliveries(conn, endpoint_id, status, page)
    tried = await store.attempts_of(conn, [r["id"] for r in rows[: page.limit]])
    return rows, tried


async def retry_delivery(
    conn: AsyncConnection, endpoint_id: uuid.UUID, delivery_id: uuid.UUID, ctx: Context
) -> tuple[Row, list[Row]]:
    """Send a delivery again, with the same webhook-id (409 while it is still pending)."""
    await read_endpoint(conn, endpoint_id, ctx.principal)
    delivery = await store.get_delivery(conn, endpoint_id, delivery_id, lock=True)
    delivery = found(delivery, "delivery")
    if delivery["status"] == "pending":
        raise Conflict("the delivery is still pending: it will be tried again by itself")
    again = await store.retry_delivery(conn, delivery_id)
    tried = await store.attempts_of(conn, [delivery_id])
    return again, tried.get(delivery_id, [])


# ---------------------------------------------------------------- events into deliveries


def _uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def child_facts(row: Mapping[Any, Any]) -> ChildFacts:
    """A child's facts from its projection row."""
    return ChildFacts(row["commune_code"], row["village_code"], row["owner_org"])


def event_facts(
    record_type: str, data: Mapping[Any, Any], known: Mapping[uuid.UUID, Row]
) -> Facts | None:
    """What access is decided on, from an event's data (a grant's child, and the child of a
    casework event, from the children projection, when it is known here; a casework event
    about a child not known here is seen by no one)."""
    if record_type == "child":
        return ChildFacts(data["commune_code"], data["village_code"], data["owner_org"])
    if record_type == "referral":
        return ReferralFacts(
            data["commune_code"], data["village_code"], data["provider_org"], data["referrer_org"]
        )
    child = known.get(_uuid(data["child_id"]))
    if record_type == "casework":  # the child's, as the projection knows it (else no one)
        return child_facts(child) if child is not None else None
    return GrantFacts(
        data["commune_code"],
        data.get("requested_org"),
        child_facts(child) if child is not None else None,
    )


def delivery_id_of(endpoint_id: uuid.UUID, event_id: str) -> uuid.UUID:
    """The delivery of an event to an endpoint: the same id however often it is made."""
    return uuid.uuid5(endpoint_id, event_id)


RECORD_ID_FIELD = {
    "child": "child_id",
    "referral": "referral_id",
    "grant": "grant_id",
    "casework": "child_id",
}


def record_version(kind: str, data: Mapping[Any, Any]) -> int:
    """What orders an endpoint's deliveries about one record: its version; a child's
    casework events have none (a plan's version is its own), so they go in arrival order."""
    return 0 if kind == "casework" else int(data["version"])


async def fan_out(conn: AsyncConnection, events: Sequence[tuple[CloudEvent, Any]]) -> int:
    """One delivery per enabled endpoint subscribed to each event's type whose owner may
    see its record now, in the caller's transaction (the consumer's, with the inbox row):
    returns how many were made."""
    endpoints = await store.subscribed_endpoints(conn, sorted({e.type for e, _ in events}))
    if not endpoints:
        return 0
    owners = [(e, domain.owner_of(e), set(e["event_types"])) for e in endpoints]
    datas = [(event, data.model_dump(mode="json")) for event, data in events]
    child_ids = {_uuid(d["child_id"]) for _, d in datas}
    placed_by_child = {
        _uuid(d["child_id"]) for e, d in datas if domain.RECORD_OF[e.type] in ("grant", "casework")
    }
    known = await store.children_by_id(conn, placed_by_child)
    shares = await store.shares_of(conn, child_ids)
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    for event, data in datas:
        kind = domain.RECORD_OF[event.type]
        facts = event_facts(kind, data, known)
        around = shares.get(_uuid(data["child_id"]), [])
        body: str | None = None
        for endpoint, owner, types in owners:
            if event.type not in types or not domain.may_see(owner, kind, facts, around, now):
                continue
            if body is None:
                body = domain.delivery_body(
                    event.type, event.time, domain.delivery_data(event.type, data)
                )
            rows.append(
                {
                    "id": delivery_id_of(endpoint["id"], event.id),
                    "endpoint_id": endpoint["id"],
                    "event_id": _uuid(event.id),
                    "event_type": event.type,
                    "record_type": kind,
                    "record_id": _uuid(data[RECORD_ID_FIELD[kind]]),
                    "record_version": record_version(kind, data),
                    "body": body,
                    "status": "pending",
                }
            )
    return await store.insert_deliveries(conn, rows)


# ---------------------------------------------------------------- access when sent


async def visible_now(conn: AsyncConnection, claimed: Sequence[Row]) -> set[uuid.UUID]:
    """Of claimed deliveries (with their endpoints' owners), those whose owner may see the
    record now, by the same rule as the API, on the projections as they stand."""
    wanted: dict[str, set[uuid.UUID]] = {k: set() for k in domain.RECORD_TYPES}
    for row in claimed:
        if row["record_type"] is not None:
            wanted[row["record_type"]].add(row["record_id"])
    referral_rows = await store.referrals_by_id(conn, wanted["referral"])
    grant_rows = await store.grants_by_id(conn, wanted["grant"])
    child_ids = wanted["child"] | wanted["casework"] | {g["child_id"] for g in grant_rows.values()}
    child_rows = await store.children_by_id(conn, child_ids)
    shares = await store.shares_of(conn, child_ids)
    now = datetime.now(UTC)
    visible: set[uuid.UUID] = set()
    for row in claimed:
        kind = row["record_type"]
        facts: Facts | None = None
        around: list[Any] = []
        if kind in ("child", "casework") and row["record_id"] in child_rows:
            facts = child_facts(child_rows[row["record_id"]])
            around = shares.get(row["record_id"], [])
        elif kind == "referral" and row["record_id"] in referral_rows:
            r = referral_rows[row["record_id"]]
            facts = ReferralFacts(
                r["commune_code"], r["village_code"], r["provider_org"], r["referrer_org"]
            )
        elif kind == "grant" and row["record_id"] in grant_rows:
            g = grant_rows[row["record_id"]]
            child = child_rows.get(g["child_id"])
            facts = GrantFacts(
                g["commune_code"], g["requested_org"], child_facts(child) if child else None
            )
            around = shares.get(g["child_id"], [])
        if domain.may_see(domain.owner_of(row), kind, facts, around, now):
            visible.add(row["id"])
    return visible
