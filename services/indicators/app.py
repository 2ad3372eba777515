"""The indicators app: live, privacy-safe aggregates for the ministry warehouse
(docs/api-guide.md#indicators)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from libs.common.app import service_app
from libs.common.auth import JwksFetcher
from libs.common.errors import Conflict
from libs.common.events.catalog import STREAMS
from libs.common.logging import get_logger
from libs.common.runtime import ServiceRuntime
from libs.common.settings import Settings, settings_as
from services.indicators import SERVICE, models, replay, service
from services.indicators.api import router
from services.indicators.handlers import STREAM_HANDLERS

log = get_logger(__name__)


class IndicatorsSettings(Settings):
    """The shared settings plus how often the month roll-forward looks (KOMAR_INDICATORS_…)."""

    indicators_roll_forward_s: float = 60.0


class Rebuilds:
    """The one rebuild this process may be running in the background."""

    def __init__(self, rt: ServiceRuntime) -> None:
        self.rt = rt
        self.task: asyncio.Task[replay.RebuildResult] | None = None
        self.last_error: str | None = None

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    def start(self) -> None:
        """Start a rebuild unless one runs here (another process's is refused by its lock)."""
        if self.running:
            raise Conflict("a rebuild is already running")
        self.last_error = None
        self.task = asyncio.create_task(self._run(), name="indicators-rebuild")

    async def _run(self) -> replay.RebuildResult:
        await self.rt.bus.wait_ready(30)
        try:
            return await replay.rebuild(self.rt.db, self.rt.bus.js)
        except Exception as exc:
            self.last_error = type(exc).__name__
            log.error("indicators.rebuild_failed", error=type(exc).__name__, detail=str(exc)[:200])
            raise

    async def stop(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task


def create_runtime(
    settings: IndicatorsSettings, jwks_fetcher: JwksFetcher | None = None
) -> ServiceRuntime:
    """The long-lived parts: one durable consumer per stream, the month roll-forward."""
    rt = ServiceRuntime(
        SERVICE,
        settings,
        models.common,
        streams=STREAMS,
        jwks_fetcher=jwks_fetcher,
    )
    for stream, (durable, subject, handlers) in STREAM_HANDLERS.items():
        rt.consume(durable, stream, subject, handlers)

    async def roll_forward() -> None:
        await service.roll_forward(rt.db)

    rt.every("stock-roll-forward", settings.indicators_roll_forward_s, roll_forward)
    return rt


def create_app(
    settings: Settings | None = None, *, jwks_fetcher: JwksFetcher | None = None
) -> FastAPI:
    """The indicators ASGI app."""
    rt = create_runtime(settings_as(IndicatorsSettings, settings), jwks_fetcher)
    rebuilds = Rebuilds(rt)
    app = service_app(
        rt,
        title="Komar indicators",
        description="Child-protection indicators by place, period, sex and age; DHIS2-ready.",
        router=router,
        on_stop=rebuilds.stop,
    )
    app.state.rebuilds = rebuilds
    started = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app_: FastAPI) -> AsyncIterator[None]:
        async with started(app_):
            try:  # made at the first start, read at every start; else at the first read
                await service.rounding_key(rt.db)
            except Exception as exc:
                log.warning("indicators.rounding_key_deferred", error=type(exc).__name__)
            yield

    app.router.lifespan_context = lifespan
    return app
