"""`python -m services.indicators [serve|migrate|rebuild|seed --children N]`."""

from __future__ import annotations

import sys

from libs.common import cli
from libs.common.db import Database
from libs.common.errors import Conflict
from libs.common.events.bus import EventBus
from libs.common.events.catalog import STREAMS
from libs.common.settings import Settings
from services.indicators import SERVICE, models, replay, seed
from services.indicators.app import IndicatorsSettings, create_app


async def rebuild(settings: Settings) -> int:
    """Replay the three streams into a new generation and switch to it."""
    db = Database(settings.database_url, pool_size=2, max_overflow=2)
    bus = EventBus(settings.nats_url, "komar-indicators-rebuild", STREAMS)
    bus.start()
    try:
        await bus.wait_ready(30)
        result = await replay.rebuild(db, bus.js)
    except Conflict as exc:
        print(f"not rebuilt: {exc.detail}", file=sys.stderr)
        return 1
    finally:
        await bus.close()
        await db.close()
    print(
        f"rebuilt generation {result.generation} (was {result.previous}): "
        f"{result.events} events in {result.seconds} s"
    )
    return 0


async def seed_command(settings: Settings) -> int:
    """Publish a synthetic population's events onto the streams (for `make bench`)."""
    summary = await seed.main(settings, sys.argv[2:])
    print(summary)
    return 0


if __name__ == "__main__":
    settings = IndicatorsSettings()
    sys.exit(
        cli.run(
            SERVICE,
            settings,
            port=settings.indicators_port,
            app_factory=create_app,
            models=models,
            commands={"rebuild": rebuild, "seed": seed_command},
        )
    )
