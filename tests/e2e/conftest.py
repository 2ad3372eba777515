"""A whole platform of its own — PostgreSQL, NATS, services and gateway as real processes —
for tests that kill and restart every part of it."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from deploy.local.__main__ import (
    COMPONENTS,
    MIGRATED,
    SINGLE,
    Replica,
    component_env,
    replica_env,
    replica_layout,
    replica_port,
)
from deploy.local.infra import EmbeddedNats, EmbeddedPostgres, free_port, port_in_use
from deploy.local.supervisor import Supervisor


@dataclass
class Platform:
    """Handles on every process of a running platform (`replicas` processes per service)."""

    root: Path
    postgres: EmbeddedPostgres
    nats: EmbeddedNats
    supervisor: Supervisor
    ports: dict[str, int]
    admin_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    env: dict[str, str] = field(default_factory=dict)
    replicas: int = 1
    settings: dict[str, str] = field(default_factory=dict)  # extra KOMAR_* for every process

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.ports['gateway']}"

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.ports['dashboard']}"

    @property
    def processes(self) -> list[Replica]:
        """Every serving process, as `make run` lays them out."""
        return replica_layout(self.ports, self.replicas)

    def replicas_of(self, component: str) -> list[Replica]:
        return [r for r in self.processes if r.component == component]

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
            replicas=self.replicas,
        )
        self.env["KOMAR_LOG_LEVEL"] = "warning"
        self.env.update(self.settings)
        for name, module, _, _ in COMPONENTS:
            if name in MIGRATED:
                self.supervisor.run(f"{name}-migrate", module, "migrate", env=self.env)
        for replica in self.processes:
            self.supervisor.start(
                replica.name, replica.module, env=replica_env(self.env, replica), port=replica.port
            )

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


def free_base_port(replicas: int, taken: set[int]) -> int:
    """A free port whose replica ports (`replica_port`) are free and not in `taken` too."""
    while True:
        port = free_port()
        wanted = {replica_port(port, i) for i in range(replicas)}
        if not wanted & taken and not any(port_in_use(p) for p in wanted - {port}):
            taken |= wanted
            return port


def new_platform(
    root: Path, *, replicas: int = 1, settings: dict[str, str] | None = None
) -> Platform:
    """A platform under `root`, on free ports, not started yet."""
    taken: set[int] = set()
    ports = {
        name: free_base_port(1 if name in SINGLE else replicas, taken)
        for name, _, _, _ in COMPONENTS
    }
    return Platform(
        root=root,
        postgres=EmbeddedPostgres(root / "postgres", port=free_base_port(1, taken)),
        nats=EmbeddedNats(root / "nats", port=free_base_port(1, taken)),
        supervisor=Supervisor(root / "log", ready_timeout=90),
        ports=ports,
        replicas=replicas,
        settings=dict(settings or {}),
    )


@contextmanager
def running_platform(
    root: Path, *, replicas: int = 1, settings: dict[str, str] | None = None
) -> Iterator[Platform]:
    """A platform under `root` (see new_platform), started, and stopped when done."""
    p = new_platform(root, replicas=replicas, settings=settings)
    try:
        p.start()
        yield p
    finally:
        p.stop()


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with running_platform(tmp_path_factory.mktemp("platform")) as p:
        yield p


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
