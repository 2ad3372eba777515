"""The command line every service shares: serve (default), migrate, and its own extras."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import uvicorn
from sqlalchemy import MetaData

from libs.common import migrations
from libs.common.logging import configure_logging
from libs.common.settings import Settings

Command = Callable[[Settings], Coroutine[Any, Any, int]]


def run(
    *,
    service: str,
    settings: Settings,
    port: int,
    app_factory: Callable[[Any], Any],
    schema: str,
    metadata: MetaData,
    versions: Path,
    commands: dict[str, Command] | None = None,
    argv: list[str] | None = None,
) -> int:
    """`python -m <package> [serve|migrate|<command>]`."""
    args = sys.argv[1:] if argv is None else argv
    name = args[0] if args else "serve"
    configure_logging(service, json=settings.log_json, level=settings.log_level)
    if name == "serve":
        uvicorn.run(
            app_factory(settings),
            host=settings.host,
            port=port,
            access_log=False,
            log_config=None,
            lifespan="on",
            timeout_graceful_shutdown=10,
        )
        return 0
    if name == "migrate":
        migrations.upgrade(settings.database_url, schema, metadata, versions)
        return 0
    if name == "makemigration":
        message = args[1] if len(args) > 1 else "change"
        migrations.revision(settings.database_url, schema, metadata, versions, message)
        return 0
    extra = (commands or {}).get(name)
    if extra is None:
        known = ["serve", "migrate", "makemigration", *(commands or {})]
        print(f"unknown command {name!r}; one of: {', '.join(known)}", file=sys.stderr)
        return 2
    return asyncio.run(extra(settings))
