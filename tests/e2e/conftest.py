"""A whole platform of its own — PostgreSQL, NATS, services and gateway as real processes —
for tests that kill and restart every part of it."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from deploy.local.__main__ import COMPONENTS, component_env, start_order
from deploy.local.infra import EmbeddedNats, EmbeddedPostgres, free_port
from deploy.local.supervisor import Supervisor


@dataclass
class Platform:
    """Handles on every process of a running platform."""

    root: Path
    postgres: EmbeddedPostgres
    nats: EmbeddedNats
    supervisor: Supervisor
    ports: dict[str, int]
    admin_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    env: dict[str, str] = field(default_factory=dict)

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.ports['gateway']}"

    def start(self) -> None:
        """Start (or restart) everything: servers, migrations, services, gateway."""
        database_url = self.postgres.start()
        nats_url = self.nats.start()
        self.env = component_env(
            self.ports,
            database_url=database_url,
            nats_url=nats_url,
            data_dir=self.root / "data",
            admin_secret=self.admin_secret,
        )
        self.env["KOMAR_LOG_LEVEL"] = "warning"
        for name, module, _, _ in COMPONENTS:
            self.supervisor.run(f"{name}-migrate", module, "migrate", env=self.env)
        for name, module in start_order():
            self.supervisor.start(name, module, env=self.env, port=self.ports[name])

    def kill_everything(self) -> None:
        """SIGKILL every Komar process, then the broker and the database."""
        for name in self.supervisor.names():
            if self.supervisor.is_running(name):
                self.supervisor.kill(name)
        self.nats.kill()
        self.postgres.kill()

    def stop(self) -> None:
        self.supervisor.stop_all()
        self.nats.stop()
        self.postgres.stop()


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    root = tmp_path_factory.mktemp("platform")
    ports = {name: free_port() for name, _, _, _ in COMPONENTS}
    p = Platform(
        root=root,
        postgres=EmbeddedPostgres(root / "postgres", port=free_port()),
        nats=EmbeddedNats(root / "nats", port=free_port()),
        supervisor=Supervisor(root / "log", ready_timeout=90),
        ports=ports,
    )
    p.start()
    try:
        yield p
    finally:
        p.stop()


async def token(client: httpx.AsyncClient, client_id: str, secret: str) -> str:
    r = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    )
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


@pytest.fixture
async def gateway(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=platform.gateway, timeout=30) as client:
        yield client


async def partner_client(
    gateway: httpx.AsyncClient, platform: Platform, areas: list[str]
) -> tuple[str, str]:
    """Create a partner API client through the admin API; return its id and secret."""
    admin = await token(gateway, "admin", platform.admin_secret)
    r = await gateway.post(
        "/v1/admin/clients",
        json={
            "name": "e2e partner",
            "org": f"ngo-{secrets.token_hex(3)}",
            "org_type": "partner",
            "scopes": ["registry:read", "registry:write"],
            "areas": areas,
            "rate_limit_per_second": 1000,
        },
        headers={"Authorization": f"Bearer {admin}"},
    )
    assert r.status_code == 201, r.text
    return r.json()["client_id"], r.json()["client_secret"]
