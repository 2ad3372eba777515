"""`python -m gateway [serve|migrate|kek|makemigration <message>]`.

`kek` prints a new key-encryption key for KOMAR_KEK (docs/operations.md#key-encryption-key).
"""

from __future__ import annotations

import sys

from gateway import models
from gateway.app import create_app
from gateway.kek import MISSING, KekError, Keks, new_kek
from gateway.settings import GatewaySettings
from libs.common import cli, migrations
from libs.common.logging import configure_logging

VERSIONS = cli.versions_of(models)


def migrate(database_url: str) -> None:
    """Bring the `gateway` schema to the newest version."""
    migrations.upgrade(database_url, models.SCHEMA, models.metadata, VERSIONS)


def kek_problem(settings: GatewaySettings) -> str | None:
    """Why the configured KEKs cannot be used (missing or malformed), or None."""
    if settings.kek is None:
        return MISSING
    previous = settings.kek_previous
    try:
        Keks(
            settings.kek.get_secret_value(),
            previous.get_secret_value() if previous is not None else None,
        )
    except KekError as exc:
        return str(exc)
    return None


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    command = args[0] if args else "serve"
    if command == "kek":
        print(new_kek())
        return 0
    settings = GatewaySettings()
    configure_logging("gateway", json=settings.log_json, level=settings.log_level)
    if command == "serve":
        problem = kek_problem(settings)
        if problem is not None:
            print(f"gateway: cannot start: {problem}", file=sys.stderr)
            return 2
        # The gateway decides itself whom to believe about X-Forwarded-For.
        cli.serve(create_app(settings), settings, settings.gateway_port, proxy_headers=False)
        return 0
    if command == "migrate":
        migrate(settings.database_url)
        return 0
    if command == "makemigration":
        message = args[1] if len(args) > 1 else "change"
        migrations.revision(
            settings.database_url, models.SCHEMA, models.metadata, VERSIONS, message
        )
        return 0
    print(
        f"unknown command {command!r}; one of: serve, migrate, kek, makemigration",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
