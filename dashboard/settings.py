"""The dashboard's settings, from the environment (prefix KOMAR_)."""

from __future__ import annotations

from pydantic import Field

from libs.common.settings import Settings


class DashboardSettings(Settings):
    """The shared settings (host, log format) and the dashboard's own."""

    dashboard_port: int = 8080
    # Where the gateway answers; the only place the dashboard sends a request.
    gateway_url: str = "http://127.0.0.1:8000"
    # Mark the session cookie Secure. Unset: Secure unless the dashboard listens on loopback
    # (a browser drops a Secure cookie sent over plain http://127.0.0.1).
    dashboard_secure_cookies: bool | None = None
    # Signed-in sessions kept at once (in memory); the oldest idle one goes first beyond it.
    dashboard_max_sessions: int = Field(default=10_000, ge=1)
    # A session unused this long ends, whatever its token says.
    dashboard_idle_s: float = Field(default=30 * 60.0, gt=0)
    # Seconds to wait for the gateway before answering "unavailable".
    dashboard_gateway_timeout_s: float = Field(default=20.0, gt=0)

    @property
    def secure_cookies(self) -> bool:
        if self.dashboard_secure_cookies is not None:
            return self.dashboard_secure_cookies
        return self.host not in {"127.0.0.1", "localhost", "::1"}
