"""The funds app: commune emergency funds and grants (docs/api-guide.md#funds)."""

from __future__ import annotations

from fastapi import FastAPI

from libs.common.app import service_app
from libs.common.auth import JwksFetcher
from libs.common.events.catalog import STREAMS
from libs.common.runtime import ServiceRuntime
from libs.common.settings import Settings
from services.funds import SERVICE, models
from services.funds.api import LEAN_ENDPOINTS, router
from services.funds.handlers import (
    CHILD_HANDLERS,
    CHILDREN_CONSUMER,
    REFERRAL_HANDLERS,
    REFERRALS_CONSUMER,
)


def create_runtime(settings: Settings, jwks_fetcher: JwksFetcher | None = None) -> ServiceRuntime:
    """The funds service's long-lived parts: its relay, the children projection and the
    referral shares."""
    rt = ServiceRuntime(
        SERVICE,
        settings,
        models.common,
        streams={k: STREAMS[k] for k in ("FUNDS", "REGISTRY", "REFERRALS")},
        jwks_fetcher=jwks_fetcher,
    )
    rt.consume(CHILDREN_CONSUMER, "REGISTRY", "registry.child.>", CHILD_HANDLERS)
    rt.consume(REFERRALS_CONSUMER, "REFERRALS", "referrals.referral.>", REFERRAL_HANDLERS)

    return rt


def create_app(
    settings: Settings | None = None, *, jwks_fetcher: JwksFetcher | None = None
) -> FastAPI:
    """The funds ASGI app."""
    settings = settings or Settings()
    rt = create_runtime(settings, jwks_fetcher)
    return service_app(
        rt,
        title="Komar funds",
        description="Commune emergency funds, grants with maker-checker approval, the ledger.",
        router=router,
        lean_endpoints=LEAN_ENDPOINTS,
    )
