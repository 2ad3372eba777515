"""`python -m services.webhooks [serve|migrate]`."""

from __future__ import annotations

import sys

from libs.common import cli
from services.webhooks import SERVICE, models
from services.webhooks.app import create_app
from services.webhooks.runtime import WebhooksSettings

if __name__ == "__main__":
    settings = WebhooksSettings()
    sys.exit(
        cli.run(
            SERVICE,
            settings,
            port=settings.webhooks_port,
            app_factory=create_app,
            models=models,
        )
    )
