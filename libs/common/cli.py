"""The command line every service and the gateway share: serve (default), migrate,
makemigration, and a component's own extras."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Protocol, TypeVar

import uvicorn
from sqlalchemy import MetaData

from libs.common import migrations
from libs.common.logging import configure_logging
from libs.common.settings import Settings

S = TypeVar("S", bound=Settings)
Command = Callable[[S], Coroutine[Any, Any, int]]


class Models(Protocol):
    """A component's `models` module: its schema's name and tables, with its Alembic
    versions beside it in `migrations/versions/`."""

    SCHEMA: str
    metadata: MetaData
    __file__: str | None  # a module's, always set for one loaded from a file


def versions_of(models: Models) -> Path:
    """The folder of the Alembic versions of `models`'s schema."""
    assert models.__file__ is not None, f"{models} is not a file"
    return Path(models.__file__).parent / "migrations" / "versions"


def serve(app: Any, settings: Settings, port: int, *, proxy_headers: bool = True) -> None:
    """Serve `app` with uvicorn until SIGINT or SIGTERM (the log lines are our own)."""
    uvicorn.run(
        app,
        host=settings.host,
        port=port,
        access_log=False,
        log_config=None,
        lifespan="on",
        proxy_headers=proxy_headers,
        timeout_graceful_shutdown=10,
    )


def run(
    service: str,
    settings: S,
    *,
    port: int,
    app_factory: Callable[[S], Any],
    models: Models,
    commands: dict[str, Command[S]] | None = None,
    argv: list[str] | None = None,
) -> int:
    """`python -m services.<service> [serve|migrate|makemigration <message>|<command>]`:
    the exit status."""
    args = sys.argv[1:] if argv is None else argv
    name = args[0] if args else "serve"
    configure_logging(service, json=settings.log_json, level=settings.log_level)
    if name == "serve":
        serve(app_factory(settings), settings, port)
        return 0
    if name == "migrate":
        migrations.upgrade(
            settings.database_url, models.SCHEMA, models.metadata, versions_of(models)
        )
        return 0
    if name == "makemigration":
        message = args[1] if len(args) > 1 else "change"
        migrations.revision(
            settings.database_url, models.SCHEMA, models.metadata, versions_of(models), message
        )
        return 0
    extra = (commands or {}).get(name)
    if extra is None:
        known = ["serve", "migrate", "makemigration", *(commands or {})]
        print(f"unknown command {name!r}; one of: {', '.join(known)}", file=sys.stderr)
        return 2
    return asyncio.run(extra(settings))
