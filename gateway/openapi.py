"""One OpenAPI document for the whole platform: the gateway's own paths plus every service's;
and `/docs`, the Swagger UI page that browses it.

The page runs on the gateway's own files (`gateway/static/`: Swagger UI vendored, with its
licence and version in `static/swagger-ui/README.md`, and the page's start-up script), so it
works without internet access, and under a Content-Security-Policy that lets it load
nothing from elsewhere and run no inline script.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

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
        "description": "API clients use client credentials; users sign in with a password "
        "and get a refresh token with each access token. `grant_type=refresh_token` at the "
        "token URL answers a new access token and the next refresh token (each refresh token "
        "is used once; presenting a used one again revokes the sign-in); "
        "`POST /oauth/revoke` ends the sign-in.",
        "flows": {
            "clientCredentials": {
                "tokenUrl": TOKEN_URL,
                "scopes": {scope: scope for scope in sorted(SCOPES)},
            },
            "password": {
                "tokenUrl": TOKEN_URL,
                "refreshUrl": TOKEN_URL,
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


# ---------------------------------------------------------------- the docs page

DOCS_PATH = "/docs"
OAUTH2_REDIRECT_PATH = "/docs/oauth2-redirect"
ASSETS_PATH = "/docs/assets"
STATIC_DIR = Path(__file__).parent / "static"
SWAGGER_UI = f"{ASSETS_PATH}/swagger-ui"

# Swagger UI sets styles inline and draws icons from data: URLs; everything else it needs,
# the document and the token requests included, comes from the gateway.
DOCS_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; connect-src 'self'; frame-ancestors 'none'"
)
DOCS_HEADERS = {"Content-Security-Policy": DOCS_CSP, "X-Content-Type-Options": "nosniff"}
# The assets change only with a release of the gateway: a day in caches, then revalidated
# against their ETag.
ASSETS_MAX_AGE_S = 86_400

# Swagger UI's settings, read by static/init.js (validatorUrl null: no document is sent to
# a validator elsewhere).
SWAGGER_UI_CONFIG: dict[str, Any] = {
    "url": "/openapi.json",
    "dom_id": "#swagger-ui",
    "layout": "BaseLayout",
    "deepLinking": True,
    "showExtensions": True,
    "showCommonExtensions": True,
    "persistAuthorization": True,
    "validatorUrl": None,
    "oauth2RedirectPath": OAUTH2_REDIRECT_PATH,
}

_MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".md": "text/markdown; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    "": "text/plain; charset=utf-8",  # LICENSE, NOTICE
}


def _script_json(value: Any) -> str:
    """JSON that cannot end the <script> data block it sits in."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


DOCS_HTML = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Komar API</title>
<link rel="stylesheet" href="{SWAGGER_UI}/swagger-ui.css">
<link rel="icon" type="image/png" sizes="32x32" href="{SWAGGER_UI}/favicon-32x32.png">
<link rel="icon" type="image/png" sizes="16x16" href="{SWAGGER_UI}/favicon-16x16.png">
</head>
<body>
<div id="swagger-ui"></div>
<script id="swagger-ui-config" type="application/json">{_script_json(SWAGGER_UI_CONFIG)}</script>
<script src="{SWAGGER_UI}/swagger-ui-bundle.js"></script>
<script src="{ASSETS_PATH}/init.js"></script>
</body>
</html>
"""

OAUTH2_REDIRECT_HTML = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Komar API: signing in</title>
<link rel="icon" type="image/png" sizes="32x32" href="{SWAGGER_UI}/favicon-32x32.png">
</head>
<body>
<script src="{SWAGGER_UI}/oauth2-redirect.js"></script>
</body>
</html>
"""


class DocsAssets(StaticFiles):
    """The docs page's files, each with its media type (not left to the machine's MIME
    table), `nosniff`, and a day's caching."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        media_type = _MEDIA_TYPES.get(Path(full_path).suffix)
        if media_type is not None and response.status_code == 200:
            response.headers["Content-Type"] = media_type
        response.headers["Cache-Control"] = f"public, max-age={ASSETS_MAX_AGE_S}"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def docs_assets() -> DocsAssets:
    """The ASGI app serving `gateway/static/` at ASSETS_PATH."""
    return DocsAssets(directory=STATIC_DIR)


@router.get(DOCS_PATH, include_in_schema=False)
async def docs() -> HTMLResponse:
    return HTMLResponse(DOCS_HTML, headers=DOCS_HEADERS)


@router.get(OAUTH2_REDIRECT_PATH, include_in_schema=False)
async def docs_oauth2_redirect() -> HTMLResponse:
    return HTMLResponse(OAUTH2_REDIRECT_HTML, headers=DOCS_HEADERS)
