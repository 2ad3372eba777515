"""The webhooks app: partners' endpoints and the signed deliveries of the events they chose
(docs/api-guide.md#webhooks)."""

from __future__ import annotations

from fastapi import FastAPI

from libs.common.app import service_app
from libs.common.auth import JwksFetcher
from libs.common.settings import Settings, settings_as
from services.webhooks import urls
from services.webhooks.api import router
from services.webhooks.runtime import WebhooksRuntime, WebhooksSettings


def create_runtime(
    settings: WebhooksSettings,
    jwks_fetcher: JwksFetcher | None = None,
    resolver: urls.Resolver = urls.system_resolver,
) -> WebhooksRuntime:
    """The long-lived parts: relay, the consumers of every stream, the delivery worker."""
    return WebhooksRuntime(settings, jwks_fetcher, resolver)


def create_app(
    settings: Settings | None = None,
    *,
    jwks_fetcher: JwksFetcher | None = None,
    resolver: urls.Resolver = urls.system_resolver,
) -> FastAPI:
    """The webhooks ASGI app."""
    rt = create_runtime(settings_as(WebhooksSettings, settings), jwks_fetcher, resolver)
    return service_app(
        rt,
        title="Komar webhooks",
        description="Partners' endpoints, and signed deliveries (Standard Webhooks) of the "
        "events about the records they may see.",
        router=router,
    )
