"""What the registry process holds while it runs: the common runtime, and the group
commits of its two hot paths."""

from __future__ import annotations

from libs.common.auth import JwksFetcher
from libs.common.events.catalog import STREAMS
from libs.common.runtime import ServiceRuntime
from libs.common.settings import Settings
from services.registry import SERVICE, models, service


class RegistryRuntime(ServiceRuntime):
    """The registry's runtime on its own schema's tables, with the group commits that
    registrations without external ids (`registrations`) and reads by id (`reads`) go
    through."""

    def __init__(self, settings: Settings, jwks_fetcher: JwksFetcher | None = None) -> None:
        super().__init__(
            SERVICE,
            settings,
            models.common,
            streams=STREAMS,
            jwks_fetcher=jwks_fetcher,
        )
        self.registrations: service.Registrations = service.registrations(self.db)
        self.reads: service.Reads = service.reads(self.db)
