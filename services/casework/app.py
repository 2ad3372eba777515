"""The casework app: workers, assignments, case plans, visits and reintegration
follow-ups (docs/api-guide.md#casework)."""

from __future__ import annotations

from fastapi import FastAPI

from libs.common import clock
from libs.common.app import service_app
from libs.common.auth import JwksFetcher
from libs.common.events.catalog import STREAMS
from libs.common.runtime import ServiceRuntime
from libs.common.settings import Settings, settings_as
from services.casework import SERVICE, handlers, models, service
from services.casework.api import LEAN_ENDPOINTS, router


class CaseworkSettings(Settings):
    """The shared settings plus the overdue job's pace (KOMAR_CASEWORK_OVERDUE_SWEEP_S)."""

    casework_overdue_sweep_s: float = 60.0


def create_runtime(
    settings: CaseworkSettings, jwks_fetcher: JwksFetcher | None = None
) -> ServiceRuntime:
    """The long-lived parts: outbox relay, the children and referrals consumers, the
    overdue job (once per tick across replicas)."""
    rt = ServiceRuntime(
        SERVICE,
        settings,
        models.common,
        streams={
            "CASEWORK": STREAMS["CASEWORK"],
            "REGISTRY": STREAMS["REGISTRY"],
            "REFERRALS": STREAMS["REFERRALS"],
        },
        jwks_fetcher=jwks_fetcher,
    )
    rt.consume(
        handlers.CHILDREN_DURABLE,
        handlers.CHILDREN_STREAM,
        handlers.CHILDREN_SUBJECT,
        handlers.CHILD_HANDLERS,
    )
    rt.consume(
        handlers.REFERRALS_DURABLE,
        handlers.REFERRALS_STREAM,
        handlers.REFERRALS_SUBJECT,
        handlers.REFERRAL_HANDLERS,
    )

    async def flag_overdue() -> None:
        while True:
            async with rt.db.transaction() as conn:
                flagged = await service.flag_overdue(conn, clock.today())
            if flagged:
                rt.relay.notify()
            if len(flagged) < 500:
                return

    rt.every("overdue-visits", settings.casework_overdue_sweep_s, flag_overdue)
    return rt


def create_app(
    settings: Settings | None = None, *, jwks_fetcher: JwksFetcher | None = None
) -> FastAPI:
    """The casework ASGI app."""
    rt = create_runtime(settings_as(CaseworkSettings, settings), jwks_fetcher)
    return service_app(
        rt,
        title="Komar casework",
        description="Community support workers, their assignments, case plans, visits and "
        "the follow-up of reintegrated children.",
        router=router,
        lean_endpoints=LEAN_ENDPOINTS,
    )
