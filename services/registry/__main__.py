"""`python -m services.registry [serve|migrate|verify-audit]`."""

from __future__ import annotations

import sys

from libs.common import cli
from libs.common.db import Database
from libs.common.settings import Settings
from services.registry import SERVICE, models, store
from services.registry.app import create_app


async def verify_audit(settings: Settings) -> int:
    """Seal what is pending, then walk the whole chain; exit 1 and name the row if it breaks."""
    db = Database(settings.database_url, pool_size=1, max_overflow=0)
    try:
        async with db.transaction() as conn:
            await store.seal_audit(conn)
        async with db.transaction() as conn:
            verdict = await store.verify_audit(conn)
    finally:
        await db.close()
    if verdict.ok:
        print(f"audit chain intact: {verdict.checked} entries, {verdict.unsealed} awaiting a seal")
        return 0
    print(f"audit chain BROKEN: {verdict.problem} (seq {verdict.bad_seq})", file=sys.stderr)
    return 1


if __name__ == "__main__":
    settings = Settings()
    sys.exit(
        cli.run(
            SERVICE,
            settings,
            port=settings.registry_port,
            app_factory=create_app,
            models=models,
            commands={"verify-audit": verify_audit},
        )
    )
