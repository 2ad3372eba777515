"""`python -m dashboard [serve]`: the staff web application (it has no database to migrate)."""

from __future__ import annotations

import sys

from dashboard import SERVICE
from dashboard.app import create_app
from dashboard.settings import DashboardSettings
from libs.common.cli import serve
from libs.common.logging import configure_logging


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    command = args[0] if args else "serve"
    settings = DashboardSettings()
    configure_logging(SERVICE, json=settings.log_json, level=settings.log_level)
    if command == "serve":
        serve(create_app(settings), settings, settings.dashboard_port)
        return 0
    if command == "migrate":
        return 0  # nothing to migrate: the dashboard keeps no data of its own
    print(f"unknown command {command!r}; one of: serve, migrate", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
