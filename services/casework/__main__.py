"""`python -m services.casework [serve|migrate]`."""

from __future__ import annotations

import sys

from libs.common import cli
from services.casework import SERVICE, models
from services.casework.app import CaseworkSettings, create_app

if __name__ == "__main__":
    settings = CaseworkSettings()
    sys.exit(
        cli.run(
            SERVICE,
            settings,
            port=settings.casework_port,
            app_factory=create_app,
            models=models,
        )
    )
