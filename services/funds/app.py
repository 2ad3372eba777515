"""The funds app: commune emergency funds and grants (SPEC §7)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from libs.common.app import install_common
from libs.common.auth import JwksFetcher
from libs.common.events.catalog import STREAMS
from libs.common.runtime import ServiceRuntime
from libs.common.settings import Settings
from services.funds.api import router
from services.funds.handlers import CHILD_HANDLERS, CHILDREN_CONSUMER
from services.funds.models import idempotency_keys, inbox, job_runs, outbox

SERVICE = "funds"


def create_runtime(settings: Settings, jwks_fetcher: JwksFetcher | None = None) -> ServiceRuntime:
    """The funds service's long-lived parts: its relay and the children projection."""
    rt = ServiceRuntime(
        SERVICE,
        settings,
        outbox=outbox,
        inbox=inbox,
        idempotency=idempotency_keys,
        jobs=job_runs,
        streams={"FUNDS": STREAMS["FUNDS"]},
        jwks_fetcher=jwks_fetcher,
    )
    rt.consume(CHILDREN_CONSUMER, "REGISTRY", "registry.child.>", CHILD_HANDLERS)

    async def purge_idempotency() -> None:
        async with rt.db.transaction() as conn:
            await rt.idempotency.purge_expired(conn)

    rt.every("idempotency-purge", settings.idempotency_purge_s, purge_idempotency)
    return rt


def create_app(
    settings: Settings | None = None, *, jwks_fetcher: JwksFetcher | None = None
) -> FastAPI:
    """The funds ASGI app."""
    settings = settings or Settings()
    rt = create_runtime(settings, jwks_fetcher)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await rt.start()
        try:
            yield
        finally:
            await rt.stop()

    app = FastAPI(
        title="Komar funds",
        version="1.0.0",
        description="Commune emergency funds, grants with maker-checker approval, the ledger.",
        lifespan=lifespan,
    )
    app.state.runtime = rt
    app.state.verifier = rt.verifier
    install_common(app, service=SERVICE, max_body_bytes=settings.max_body_bytes, ready=rt.ready)
    app.include_router(router)
    return app
