"""The gateway app: tokens, keys, admin API, the caller's profile, routing to the services,
merged OpenAPI and its docs page."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway import admin, me, oauth, openapi
from gateway.proxy import Proxy
from gateway.runtime import GatewayRuntime
from gateway.settings import GatewaySettings
from libs.common.app import (
    NO_TELEMETRY,
    RequestContextMiddleware,
    install_common,
    runtime_lifespan,
)

SERVICE = "gateway"


class GatewayApp(FastAPI):
    """FastAPI for the gateway's own routes, with the proxied prefixes routed around it.

    A request under /v1/registry/, /v1/referrals/, /v1/funds/, /v1/indicators/,
    /v1/webhooks or /v1/casework/ (gateway.settings.UPSTREAMS) goes
    from the shared RequestContextMiddleware (request id, body limit, metrics, log line)
    straight to the raw ASGI proxy: no FastAPI routing, no Request objects, no
    dependency injection on the hot path (docs/architecture.md#performance-habits).
    """

    def __init__(self, *, proxy: Proxy, max_body_bytes: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.proxy = proxy
        self.edge: ASGIApp = RequestContextMiddleware(
            proxy, service=SERVICE, max_body_bytes=max_body_bytes
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.proxy.route(scope["path"]) is not None:
            await self.edge(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    """The gateway ASGI app; the lifespan opens the pool, the keys and the upstream client."""
    settings = settings or GatewaySettings()
    rt = GatewayRuntime(settings)
    app = GatewayApp(
        proxy=Proxy(rt),
        max_body_bytes=settings.max_body_bytes,
        title="Komar gateway",
        version="1.0.0",
        description="Tokens, keys, administration of API clients and users, your profile.",
        lifespan=runtime_lifespan(rt),
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        telemetry=NO_TELEMETRY,
    )
    app.state.runtime = rt
    app.state.verifier = rt.verifier
    app.state.openapi = openapi.MergedOpenAPI(
        app.openapi, settings.upstreams(), lambda: rt.pools, settings.openapi_cache_s
    )
    install_common(app, service=SERVICE, max_body_bytes=settings.max_body_bytes, ready=rt.ready)
    app.include_router(oauth.router)
    app.include_router(admin.router)
    app.include_router(me.router)
    app.include_router(openapi.router)
    app.mount(openapi.ASSETS_PATH, openapi.docs_assets())
    return app


def app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory gateway.app:app_from_env`."""
    return create_app(GatewaySettings())
