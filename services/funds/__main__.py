"""`python -m services.funds [serve|migrate|verify-ledger]`."""

from __future__ import annotations

import sys

from libs.common import cli
from libs.common.db import Database
from libs.common.settings import Settings
from services.funds import SERVICE, models, store
from services.funds.app import create_app


async def verify_ledger(settings: Settings) -> int:
    """Recompute every fund from its ledger and its grants; exit 1 naming each that disagrees."""
    db = Database(settings.database_url, pool_size=1, max_overflow=0)
    try:
        async with db.transaction() as conn:
            await store.read_snapshot(conn)
            verdicts = await store.verify_ledger(conn)
    finally:
        await db.close()
    broken = [v for v in verdicts if not v.balanced]
    for v in broken:
        for problem in v.problems:
            print(f"fund {v.fund_id} DOES NOT BALANCE: {problem}", file=sys.stderr)
    if broken:
        print(f"{len(broken)} of {len(verdicts)} funds do not balance", file=sys.stderr)
        return 1
    print(f"ledger balanced: {len(verdicts)} funds agree with their ledgers and grants")
    return 0


if __name__ == "__main__":
    settings = Settings()
    sys.exit(
        cli.run(
            SERVICE,
            settings,
            port=settings.funds_port,
            app_factory=create_app,
            models=models,
            commands={"verify-ledger": verify_ledger},
        )
    )
