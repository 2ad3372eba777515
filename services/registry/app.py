"""The registry app: children and their cases (docs/api-guide.md#children)."""

from __future__ import annotations

from fastapi import FastAPI

from libs.common.app import service_app
from libs.common.auth import JwksFetcher
from libs.common.settings import Settings
from services.registry import store
from services.registry.api import LEAN_ENDPOINTS, router
from services.registry.handlers import ASSIGNMENT_HANDLERS, REFERRAL_HANDLERS, WORKER_HANDLERS
from services.registry.runtime import RegistryRuntime


def create_runtime(settings: Settings, jwks_fetcher: JwksFetcher | None = None) -> RegistryRuntime:
    """The registry's long-lived parts: its outbox relay, group commits and the audit sealer."""
    rt = RegistryRuntime(settings, jwks_fetcher)

    async def seal() -> None:
        while True:
            async with rt.db.transaction() as conn:
                if await store.seal_audit(conn) == 0:
                    return

    rt.consume("registry-referral-access", "REFERRALS", "referrals.referral.>", REFERRAL_HANDLERS)
    rt.consume("registry-worker-accounts", "CASEWORK", "casework.worker.>", WORKER_HANDLERS)
    rt.consume("registry-assignments", "CASEWORK", "casework.assignment.>", ASSIGNMENT_HANDLERS)
    rt.every("audit-sealer", 1.0, seal)
    return rt


def create_app(
    settings: Settings | None = None, *, jwks_fetcher: JwksFetcher | None = None
) -> FastAPI:
    """The registry ASGI app."""
    settings = settings or Settings()
    rt = create_runtime(settings, jwks_fetcher)
    return service_app(
        rt,
        title="Komar registry",
        description="Children and their cases.",
        router=router,
        lean_endpoints=LEAN_ENDPOINTS,
    )
