"""`python -m services.referrals [serve|migrate]`."""

from __future__ import annotations

import sys
from pathlib import Path

from libs.common import cli
from services.referrals.app import ReferralsSettings, create_app
from services.referrals.models import SCHEMA, metadata

if __name__ == "__main__":
    settings = ReferralsSettings()
    sys.exit(
        cli.run(
            service="referrals",
            settings=settings,
            port=settings.referrals_port,
            app_factory=create_app,
            schema=SCHEMA,
            metadata=metadata,
            versions=Path(__file__).parent / "migrations" / "versions",
        )
    )
