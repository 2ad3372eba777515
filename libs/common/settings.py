"""Settings shared by every process, read from the environment (prefix KOMAR_)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import TypeVar

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ADMIN_SECRET_FILE = "admin-secret"


class Settings(BaseSettings):
    """One base for all processes; a service subclasses it for its own fields."""

    model_config = SettingsConfigDict(env_prefix="KOMAR_", extra="ignore", populate_by_name=True)

    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:55432/komar",
        validation_alias=AliasChoices("DATABASE_URL", "KOMAR_DATABASE_URL"),
    )
    nats_url: str = Field(
        default="nats://127.0.0.1:54222",
        validation_alias=AliasChoices("NATS_URL", "KOMAR_NATS_URL"),
    )
    data_dir: Path = Path("var")
    log_json: bool = True
    log_level: str = "info"

    # Tokens: the gateway issues, everyone verifies.
    issuer: str = "komar-gateway"
    audience: str = "komar-api"
    jwks_url: str = "http://127.0.0.1:8000/.well-known/jwks.json"

    host: str = "127.0.0.1"
    gateway_port: int = 8000
    registry_port: int = 8101
    referrals_port: int = 8102
    funds_port: int = 8103
    indicators_port: int = 8104
    webhooks_port: int = 8105
    casework_port: int = 8106

    # A fixed pool: connections opened past pool_size are closed again when handed back,
    # and under steady load that churn (a backend forked, types introspected) costs more
    # than waiting for a pooled connection.
    db_pool_size: int = 20
    db_max_overflow: int = 0
    max_body_bytes: int = 1024 * 1024
    relay_interval_s: float = 0.5
    consumer_max_deliveries: int = 5
    # How often stored Idempotency-Key answers past their 24 h are purged (one replica a tick).
    idempotency_purge_s: float = Field(default=3600.0, gt=0)
    # Published outbox rows are the change feeds (libs.common.feeds): kept this long, at
    # least the 30 days a feed promises and a day's margin, then purged hourly.
    outbox_retention_s: float = Field(default=31 * 86400.0, ge=31 * 86400.0)
    outbox_purge_s: float = Field(default=3600.0, gt=0)


S = TypeVar("S", bound="Settings")


def settings_as(cls: type[S], settings: Settings | None) -> S:
    """`settings` as the service's own Settings subclass `cls` (its fields kept, the
    subclass's own from the environment or their defaults)."""
    if isinstance(settings, cls):
        return settings
    return cls(**(settings.model_dump() if settings else {}))


def load_or_create_admin_secret(data_dir: Path) -> tuple[str, bool]:
    """The bootstrap admin secret: KOMAR_ADMIN_SECRET, else the stored one, else a new one.

    Returns the secret and whether it was created now (so the caller prints it once).
    """
    from_env = os.environ.get("KOMAR_ADMIN_SECRET")
    if from_env:
        return from_env, False
    path = data_dir / ADMIN_SECRET_FILE
    if path.exists():
        return path.read_text().strip(), False
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret + "\n")
    return secret, True
