"""One OpenAPI document for the whole platform: the gateway's own paths plus every service's."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, Response

from gateway.upstream import Pool, UpstreamError
from libs.common.auth import SCOPES
from libs.common.logging import get_logger
from libs.common.openapi import add_problem_answers, refine

log = get_logger(__name__)

router = APIRouter()

TOKEN_URL = "/oauth/token"
_FETCH_TIMEOUT_S = 3.0
# An incomplete document (a service was down) is refetched sooner.
_INCOMPLETE_TTL_S = 2.0

SECURITY_SCHEMES: dict[str, Any] = {
    "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
    "oauth2": {
        "type": "oauth2",
        "flows": {
            "clientCredentials": {
                "tokenUrl": TOKEN_URL,
                "scopes": {scope: scope for scope in sorted(SCOPES)},
            },
            "password": {
                "tokenUrl": TOKEN_URL,
                "scopes": {scope: scope for scope in sorted(SCOPES)},
            },
        },
    },
}


def _rename_conflicts(
    service: str, doc: dict[str, Any], merged: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """Rename the service's components that clash with different ones already merged."""
    renames: dict[str, str] = {}
    for section, entries in (doc.get("components") or {}).items():
        have = merged.get(section, {})
        for name, value in entries.items():
            if name in have and have[name] != value:
                renames[f'"#/components/{section}/{name}"'] = (
                    f'"#/components/{section}/{service}.{name}"'
                )
    if not renames:
        return doc
    text = json.dumps(doc)
    for old, new in renames.items():
        text = text.replace(old, new)
    renamed: dict[str, Any] = json.loads(text)
    for section, entries in list((renamed.get("components") or {}).items()):
        have = merged.get(section, {})
        renamed["components"][section] = {
            (f"{service}.{k}" if k in have and have[k] != v else k): v for k, v in entries.items()
        }
    return renamed


def merge(own: dict[str, Any], services: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The gateway's document with each service's public paths and components merged in;
    every operation lists its problem answers, 429 (the gateway's rate limit) included."""
    doc = refine(copy.deepcopy(own))
    doc["info"] = {
        "title": "Komar API",
        "version": own.get("info", {}).get("version", "1.0.0"),
        "description": "Child protection in Cambodia: registry, referrals, funds, indicators, "
        "webhooks and casework behind one gateway. Get a token at /oauth/token, send it as a "
        "Bearer token.",
    }
    paths: dict[str, Any] = doc.setdefault("paths", {})
    components: dict[str, dict[str, Any]] = doc.setdefault("components", {})
    tags: list[dict[str, Any]] = doc.setdefault("tags", [])
    for service, upstream in services.items():
        upstream = _rename_conflicts(service, upstream, components)
        prefix = f"/v1/{service}"
        for path, item in (upstream.get("paths") or {}).items():
            if path == prefix or path.startswith(prefix + "/"):
                paths[path] = item
        for section, entries in (upstream.get("components") or {}).items():
            target = components.setdefault(section, {})
            for name, value in entries.items():
                target.setdefault(name, value)
        known = {t.get("name") for t in tags}
        tags.extend(t for t in upstream.get("tags") or [] if t.get("name") not in known)
    for path, item in paths.items():
        for method, operation in item.items():
            if isinstance(operation, dict) and "responses" in operation:
                # The gateway refuses malformed paths (dot segments) with 400 and rate-limits
                # with 429; the token endpoint answers RFC 6749's 400 and 401 too.
                extra = {400, 401, 429} if path == TOKEN_URL else {400, 429}
                add_problem_answers(path, method, operation, extra)
    components.setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
    doc["security"] = [{"bearer": []}, {"oauth2": []}]
    if not tags:
        doc.pop("tags")
    return doc


class MergedOpenAPI:
    """Fetches each service's /openapi.json lazily and caches the merged document briefly."""

    def __init__(
        self,
        own: Callable[[], dict[str, Any]],
        upstreams: dict[str, tuple[str, ...]],
        pools: Callable[[], dict[str, Pool]],
        ttl_s: float,
    ) -> None:
        self._own = own
        self._upstreams = upstreams
        self._pools = pools
        self._ttl_s = ttl_s
        self._body: bytes | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()

    async def document(self) -> bytes:
        """The merged document as JSON bytes."""
        if self._body is not None and time.monotonic() < self._expires:
            return self._body
        async with self._lock:
            if self._body is not None and time.monotonic() < self._expires:
                return self._body
            names = list(self._upstreams)
            fetched = await asyncio.gather(*(self._fetch(n) for n in names))
            found = {n: d for n, d in zip(names, fetched, strict=True) if d is not None}
            self._body = json.dumps(merge(self._own(), found)).encode()
            ttl = self._ttl_s if len(found) == len(names) else min(self._ttl_s, _INCOMPLETE_TTL_S)
            self._expires = time.monotonic() + ttl
            return self._body

    async def _fetch(self, name: str) -> dict[str, Any] | None:
        """The service's document from the first of its replicas that gives it."""
        for base in self._upstreams[name]:
            try:
                async with asyncio.timeout(_FETCH_TIMEOUT_S):
                    answer = await self._pools()[base].request("GET", "/openapi.json", [], b"")
                    body = await answer.read()
                if answer.status != 200:
                    continue
                doc = json.loads(body)
                if isinstance(doc, dict):
                    return doc
            except (UpstreamError, TimeoutError, ValueError) as exc:
                log.info(
                    "openapi.upstream_missing",
                    upstream=name,
                    replica=base,
                    error=type(exc).__name__,
                )
        return None


@router.get("/openapi.json", include_in_schema=False)
async def openapi_document(request: Request) -> Response:
    merged: MergedOpenAPI = request.app.state.openapi
    return Response(await merged.document(), media_type="application/json")


@router.get("/docs", include_in_schema=False)
async def docs() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="Komar API",
        oauth2_redirect_url="/docs/oauth2-redirect",
        swagger_ui_parameters={"persistAuthorization": True},
    )


@router.get("/docs/oauth2-redirect", include_in_schema=False)
async def docs_oauth2_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()
