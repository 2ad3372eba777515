"""Settings of the gateway process (environment prefix KOMAR_)."""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator

from libs.common.settings import Settings

# The services behind the gateway: /v1/<name>/… goes to <name>.
UPSTREAMS = ("registry", "referrals", "funds", "indicators", "webhooks", "casework")


class GatewaySettings(Settings):
    """The shared settings plus what only the gateway needs."""

    # Upstreams: a base URL, or the comma-separated base URLs of the service's replicas;
    # empty means http://127.0.0.1:<the service's port>.
    registry_url: str = ""
    referrals_url: str = ""
    funds_url: str = ""
    indicators_url: str = ""
    webhooks_url: str = ""
    casework_url: str = ""
    upstream_connect_timeout_s: float = Field(default=5.0, gt=0)
    # A replica that refused a connection gets no new requests for this long.
    upstream_cooldown_s: float = Field(default=5.0, ge=0)
    upstream_timeout_s: float = Field(default=30.0, gt=0)
    upstream_max_connections: int = Field(default=512, ge=64)
    openapi_cache_s: float = Field(default=10.0, ge=0)

    # Bootstrap admin: KOMAR_ADMIN_SECRET, else the stored/generated one under data_dir.
    admin_secret: SecretStr | None = None

    # Key-encryption key of the signing keys at rest (KOMAR_KEK, required to serve), and during
    # a rotation the one before it (KOMAR_KEK_PREVIOUS), which only opens what it sealed.
    kek: SecretStr | None = None
    kek_previous: SecretStr | None = None

    # Tokens: docs/api-guide.md#tokens caps access tokens at 15 minutes.
    token_ttl_s: int = Field(default=900, ge=30, le=900)
    # Refresh tokens of users signed in with a password: one not used within
    # `refresh_idle_s` expires, and every token of a sign-in (its family) ends
    # `refresh_absolute_s` after the sign-in, however often it was refreshed (a working day).
    refresh_idle_s: int = Field(default=1800, ge=60, le=2_592_000)
    refresh_absolute_s: int = Field(default=43_200, ge=60, le=2_592_000)
    # Expired refresh tokens are deleted this often (by each replica; deleting twice is harmless).
    refresh_purge_interval_s: float = Field(default=3600.0, gt=0)

    # Default rate limit of every client (a client may carry its own rate).
    rate_limit_per_second: float = Field(default=100.0, gt=0)
    rate_limit_burst: int = Field(default=200, ge=1)

    # Failed logins: a user is locked out after `login_max_failures` within
    # `login_failure_window_s` (in the database, shared by replicas; each attempt is reserved
    # there before its password is checked). A client id whose secret failed
    # `client_failure_burst` times, refilled at `client_failures_per_minute`, gets 429 for
    # secrets not already verified on this replica. A per-address throttle on failures sits
    # far above honest use, so one address behind a shared NAT does not shut out the others.
    login_max_failures: int = Field(default=5, ge=1)
    login_failure_window_s: int = Field(default=900, ge=1)
    login_lockout_s: int = Field(default=900, ge=1)
    client_failures_per_minute: float = Field(default=10.0, gt=0)
    client_failure_burst: int = Field(default=10, ge=1)
    login_failures_per_minute: float = Field(default=600.0, gt=0)
    login_failure_burst: int = Field(default=600, ge=1)
    min_password_length: int = Field(default=12, ge=8)

    # Signing keys: reload from the database this often; publish a retired key for the
    # token lifetime plus this margin; rotate automatically after N days (0 = never).
    key_refresh_interval_s: float = Field(default=30.0, gt=0)
    key_retire_margin_s: int = Field(default=300, ge=0)
    key_rotation_days: float = Field(default=0.0, ge=0)

    # Disabled principals and per-client rates are reloaded from the database this often.
    principal_refresh_interval_s: float = Field(default=2.0, gt=0)

    # Peers whose X-Forwarded-For is trusted (addresses or CIDRs of load balancers).
    trusted_proxies: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _default_upstreams(self) -> GatewaySettings:
        for name in UPSTREAMS:
            if not getattr(self, f"{name}_url"):
                port = getattr(self, f"{name}_port")
                setattr(self, f"{name}_url", f"http://127.0.0.1:{port}")
        self.upstreams()  # a malformed URL list fails at start, not at the first request
        if self.key_retire_margin_s < self.key_refresh_interval_s:
            # A replica may sign with a retired key until its next reload.
            self.key_retire_margin_s = int(self.key_refresh_interval_s) + 1
        return self

    def upstreams(self) -> dict[str, tuple[str, ...]]:
        """Service name -> the base URLs of its replicas (no trailing slash)."""
        found: dict[str, tuple[str, ...]] = {}
        for name in UPSTREAMS:
            value = str(getattr(self, f"{name}_url"))
            bases = tuple(u.strip().rstrip("/") for u in value.split(",") if u.strip())
            for base in bases:
                if not base.startswith(("http://", "https://")):
                    raise ValueError(f"KOMAR_{name.upper()}_URL: {base!r} is not an http(s) URL")
            found[name] = bases
        return found
