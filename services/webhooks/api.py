"""Routes of the webhooks service: parse, authorise, call the use case, answer.

Every route needs `webhooks:manage`; an endpoint belongs to the caller's organisation, and
another organisation's answers 404 on every route that names it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.app import request_id
from libs.common.auth import Principal, PrincipalDep
from libs.common.context import Context
from libs.common.http import (
    PageDep,
    json_response,
    page_answer,
    parse_id,
    require_if_match,
    seq_cursor,
)
from libs.common.routes import PATCH_RESPONSES, list_page, patch_record, read_record
from libs.common.runtime import RuntimeDep
from services.webhooks import SERVICE, service
from services.webhooks.runtime import WebhooksRuntime
from services.webhooks.schemas import (
    DeliveryOut,
    DeliveryPage,
    DeliveryStatus,
    EndpointCreatedOut,
    EndpointIn,
    EndpointOut,
    EndpointPage,
    EndpointPatch,
)

SCOPE = "webhooks:manage"
router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

ENDPOINT_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such endpoint of your organisation"},
}
DELIVERY_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such endpoint of your organisation, or no such delivery of it"},
    409: {"description": "The endpoint is disabled, or the delivery is still pending"},
}


async def webhooks_runtime(request: Request) -> WebhooksRuntime:
    rt: WebhooksRuntime = request.app.state.runtime
    return rt


WebhooksRuntimeDep = Annotated[WebhooksRuntime, Depends(webhooks_runtime)]


def context(request: Request, principal: Principal) -> Context:
    principal.require(SCOPE)
    return Context(SERVICE, principal, request_id(request))


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def endpoint_out(e: Mapping[Any, Any]) -> dict[str, Any]:
    """The public form of an endpoint: never its secrets."""
    return {
        "id": str(e["id"]),
        "url": e["url"],
        "event_types": list(e["event_types"]),
        "description": e["description"],
        "enabled": e["enabled"],
        "disabled_reason": e["disabled_reason"],
        "previous_secret_expires_at": _iso(e["previous_until"]),
        "created_at": e["created_at"].isoformat(),
        "updated_at": e["updated_at"].isoformat(),
        "version": e["version"],
    }


def attempt_out(a: Mapping[Any, Any]) -> dict[str, Any]:
    return {
        "at": a["at"].isoformat(),
        "outcome": a["outcome"],
        "status_code": a["status_code"],
        "latency_ms": a["latency_ms"],
        "error": a["error"],
    }


def delivery_out(d: Mapping[Any, Any], tried: Sequence[Mapping[Any, Any]]) -> dict[str, Any]:
    """The public form of a delivery: ids, codes, status and attempts (never a body)."""
    return {
        "id": str(d["id"]),
        "event_id": str(d["event_id"]),
        "event_type": d["event_type"],
        "record_type": d["record_type"],
        "record_id": str(d["record_id"]) if d["record_id"] else None,
        "record_version": d["record_version"],
        "status": d["status"],
        "next_attempt_at": _iso(d["next_attempt_at"]) if d["status"] == "pending" else None,
        "delivered_at": _iso(d["delivered_at"]),
        "created_at": d["created_at"].isoformat(),
        "attempts": [attempt_out(a) for a in tried],
    }


def endpoint_path(endpoint_id: Any) -> str:
    return f"/v1/webhooks/{endpoint_id}"


def _with_secret(answer: Response, secret: str) -> Response:
    """The first answer with the secret (the answer stored for an Idempotency-Key holds
    `secret: null`, so a replay never shows it)."""
    if "idempotent-replayed" in answer.headers or answer.status_code >= 300:
        return answer
    doc = json.loads(bytes(answer.body))
    doc["secret"] = secret
    headers = {k: v for k, v in answer.headers.items() if k.lower() in ("etag", "location")}
    return JSONResponse(doc, status_code=answer.status_code, headers=headers)


# ---------------------------------------------------------------- endpoints


@router.post(
    "",
    status_code=201,
    response_model=EndpointCreatedOut,
    responses={403: {"description": "webhooks:manage, or the read scope of a chosen type"}},
)
async def create_endpoint(
    body: EndpointIn, request: Request, principal: PrincipalDep, rt: WebhooksRuntimeDep
) -> Response:
    """Register an endpoint of your organisation. The answer holds its signing secret,
    shown this once."""
    ctx = context(request, principal)
    await service.check_url(
        body.url, allow_loopback=rt.webhooks.webhooks_allow_loopback, resolver=rt.resolver
    )
    secrets: list[str] = []

    async def work(conn: AsyncConnection) -> Response:
        endpoint, secret = await service.create_endpoint(conn, body, ctx)
        secrets.append(secret)
        doc = endpoint_out(endpoint) | {"secret": None}
        return json_response(
            doc, 201, version=endpoint["version"], location=endpoint_path(endpoint["id"])
        )

    answer = await rt.write(request, principal, work)
    return _with_secret(answer, secrets[0]) if secrets else answer


@router.get("", response_model=EndpointPage)
async def list_endpoints(
    request: Request, principal: PrincipalDep, rt: RuntimeDep, page: PageDep
) -> Response:
    """Your organisation's endpoints, oldest change first."""
    ctx = context(request, principal)
    return await list_page(
        rt,
        page,
        lambda conn, page: service.list_endpoints(conn, ctx.principal, page),
        endpoint_out,
    )


@router.get("/{webhook_id}", response_model=EndpointOut, responses=ENDPOINT_RESPONSES)
async def read_endpoint(
    webhook_id: str, request: Request, principal: PrincipalDep, rt: RuntimeDep
) -> Response:
    """One endpoint of your organisation (never its secret)."""
    ctx = context(request, principal)
    eid = parse_id(webhook_id, "webhook endpoint")
    return await read_record(
        rt, lambda conn: service.read_endpoint(conn, eid, ctx.principal), endpoint_out
    )


@router.patch(
    "/{webhook_id}",
    response_model=EndpointOut,
    responses={
        **ENDPOINT_RESPONSES,
        403: {"description": "webhooks:manage, or the read scope of a chosen type"},
        **PATCH_RESPONSES,
    },
)
async def patch_endpoint(
    webhook_id: str,
    request: Request,
    principal: PrincipalDep,
    rt: WebhooksRuntimeDep,
    body: Annotated[EndpointPatch, Body(media_type="application/merge-patch+json")],
) -> Response:
    """Change an endpoint (JSON merge patch; send the ETag you read as If-Match).
    `enabled: true` re-enables a disabled one. What it receives is then decided by your
    access."""
    ctx = context(request, principal)
    eid = parse_id(webhook_id, "webhook endpoint")
    if_match = require_if_match(request)
    if body.url is not None:
        await service.check_url(
            body.url, allow_loopback=rt.webhooks.webhooks_allow_loopback, resolver=rt.resolver
        )
    return await patch_record(
        rt, lambda conn: service.patch_endpoint(conn, eid, body, if_match, ctx), endpoint_out
    )


@router.delete("/{webhook_id}", status_code=204, responses=ENDPOINT_RESPONSES)
async def delete_endpoint(
    webhook_id: str, request: Request, principal: PrincipalDep, rt: RuntimeDep
) -> Response:
    """Delete an endpoint and its deliveries."""
    ctx = context(request, principal)
    eid = parse_id(webhook_id, "webhook endpoint")
    async with rt.db.transaction() as conn:
        await service.delete_endpoint(conn, eid, ctx)
    return Response(status_code=204)


@router.post(
    "/{webhook_id}/rotate-secret", response_model=EndpointCreatedOut, responses=ENDPOINT_RESPONSES
)
async def rotate_secret(
    webhook_id: str, request: Request, principal: PrincipalDep, rt: RuntimeDep
) -> Response:
    """A new signing secret, shown this once; the previous one keeps signing beside it for
    24 hours (both signatures in webhook-signature)."""
    ctx = context(request, principal)
    eid = parse_id(webhook_id, "webhook endpoint")
    if_match = request.headers.get("if-match")
    secrets: list[str] = []

    async def work(conn: AsyncConnection) -> Response:
        endpoint, secret = await service.rotate_secret(conn, eid, if_match, ctx)
        secrets.append(secret)
        return json_response(endpoint_out(endpoint) | {"secret": None}, version=endpoint["version"])

    answer = await rt.write(request, principal, work)
    return _with_secret(answer, secrets[0]) if secrets else answer


# ---------------------------------------------------------------- deliveries


@router.post(
    "/{webhook_id}/test",
    status_code=202,
    response_model=DeliveryOut,
    responses=DELIVERY_RESPONSES,
)
async def send_test(
    webhook_id: str, request: Request, principal: PrincipalDep, rt: RuntimeDep
) -> Response:
    """Queue a `webhook.test` delivery to the endpoint."""
    ctx = context(request, principal)
    eid = parse_id(webhook_id, "webhook endpoint")
    if_match = request.headers.get("if-match")

    async def work(conn: AsyncConnection) -> Response:
        delivery = await service.send_test(conn, eid, if_match, ctx)
        return JSONResponse(delivery_out(delivery, []), status_code=202)

    return await rt.write(request, principal, work)


@router.get("/{webhook_id}/deliveries", response_model=DeliveryPage, responses=ENDPOINT_RESPONSES)
async def list_deliveries(
    webhook_id: str,
    request: Request,
    principal: PrincipalDep,
    rt: RuntimeDep,
    page: PageDep,
    status: DeliveryStatus | None = None,
) -> Response:
    """The endpoint's deliveries in the order they were made, each with its attempts
    (status code, latency, error class; never a response body)."""
    ctx = context(request, principal)
    eid = parse_id(webhook_id, "webhook endpoint")
    page = seq_cursor(page)
    async with rt.db.transaction() as conn:
        rows, tried = await service.list_deliveries(
            conn, eid, status.value if status else None, page, ctx.principal
        )
    items, cursor = page_answer(rows, page, lambda r: (r["seq"],))
    return JSONResponse(
        {"items": [delivery_out(d, tried.get(d["id"], [])) for d in items], "next_cursor": cursor}
    )


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/retry",
    status_code=202,
    response_model=DeliveryOut,
    responses=DELIVERY_RESPONSES,
)
async def retry_delivery(
    webhook_id: str, delivery_id: str, request: Request, principal: PrincipalDep, rt: RuntimeDep
) -> Response:
    """Send a delivery again now, with the same webhook-id (a failed, dropped or delivered
    one; access is checked again when it is sent)."""
    ctx = context(request, principal)
    eid = parse_id(webhook_id, "webhook endpoint")
    did: uuid.UUID = parse_id(delivery_id, "delivery")

    async def work(conn: AsyncConnection) -> Response:
        delivery, tried = await service.retry_delivery(conn, eid, did, ctx)
        return JSONResponse(delivery_out(delivery, tried), status_code=202)

    return await rt.write(request, principal, work)
