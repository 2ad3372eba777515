"""The referrals app: the social services map and referral routing (docs/api-guide.md#referrals)."""

from __future__ import annotations

from fastapi import FastAPI

from libs.common.app import service_app
from libs.common.auth import JwksFetcher
from libs.common.events.catalog import STREAMS
from libs.common.runtime import ServiceRuntime
from libs.common.settings import Settings, settings_as
from services.referrals import SERVICE, handlers, models, service
from services.referrals.api import LEAN_ENDPOINTS, router


class ReferralsSettings(Settings):
    """The shared settings plus the overdue sweeper's pace (KOMAR_REFERRALS_OVERDUE_SWEEP_S)."""

    referrals_overdue_sweep_s: float = 5.0


def create_runtime(
    settings: ReferralsSettings, jwks_fetcher: JwksFetcher | None = None
) -> ServiceRuntime:
    """The long-lived parts: outbox relay, the children consumer, the overdue sweeper."""
    rt = ServiceRuntime(
        SERVICE,
        settings,
        models.common,
        streams={"REFERRALS": STREAMS["REFERRALS"], "REGISTRY": STREAMS["REGISTRY"]},
        jwks_fetcher=jwks_fetcher,
    )
    rt.consume(
        handlers.CHILDREN_DURABLE,
        handlers.CHILDREN_STREAM,
        handlers.CHILDREN_SUBJECT,
        handlers.CHILD_HANDLERS,
    )

    async def sweep_overdue() -> None:
        while True:
            async with rt.db.transaction() as conn:
                flagged = await service.flag_overdue(conn)
            if flagged:
                rt.relay.notify()
            if len(flagged) < 500:
                return

    rt.every("overdue-sweeper", settings.referrals_overdue_sweep_s, sweep_overdue)
    return rt


def create_app(
    settings: Settings | None = None, *, jwks_fetcher: JwksFetcher | None = None
) -> FastAPI:
    """The referrals ASGI app."""
    rt = create_runtime(settings_as(ReferralsSettings, settings), jwks_fetcher)
    return service_app(
        rt,
        title="Komar referrals",
        description="The social services map, and referrals followed to their outcome.",
        router=router,
        lean_endpoints=LEAN_ENDPOINTS,
    )
