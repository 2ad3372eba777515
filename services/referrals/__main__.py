"""`python -m services.referrals [serve|migrate]`."""

from __future__ import annotations

import sys

from libs.common import cli
from services.referrals import SERVICE, models
from services.referrals.app import ReferralsSettings, create_app

if __name__ == "__main__":
    settings = ReferralsSettings()
    sys.exit(
        cli.run(
            SERVICE,
            settings,
            port=settings.referrals_port,
            app_factory=create_app,
            models=models,
        )
    )
