"""What both benches stand on: an embedded PostgreSQL and NATS on fresh ports, the Komar
processes under a supervisor, and a clean stop however the run ends."""

from __future__ import annotations

import json
import os
import platform
import secrets
import shutil
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from deploy.local.infra import EmbeddedNats, EmbeddedPostgres, free_port, stop_orphan
from deploy.local.supervisor import Supervisor


def machine() -> dict[str, Any]:
    """The facts of this machine a result file records."""
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


class BenchInfra:
    """The embedded servers and the supervised processes of one bench run.

    `processes` lists (log name, module) of whatever the run may start, so that `wipe` stops
    what a crashed earlier run left behind.
    """

    def __init__(
        self,
        root: Path,
        processes: list[tuple[str, str]],
        *,
        ready_timeout: float,
        stop_timeout: float,
    ) -> None:
        self.root = root
        self.processes = processes
        self.stop_timeout = stop_timeout
        self.supervisor = Supervisor(root / "log", ready_timeout=ready_timeout)
        self.postgres = EmbeddedPostgres(root / "postgres", free_port())
        self.nats = EmbeddedNats(root / "nats", free_port())
        self.admin_secret = secrets.token_urlsafe(24)
        self.env: dict[str, str] = {}

    def wipe(self) -> None:
        """Stop whatever a crashed earlier run left behind, then start from an empty folder."""
        for name, module in self.processes:
            stop_orphan(self.root / "log" / f"{name}.pid", "-m", module, timeout=15.0)
        pg_dir, nats_dir = self.root / "postgres", self.root / "nats"
        stop_orphan(pg_dir / "postmaster.pid", "postgres", str(pg_dir), sig=signal.SIGINT)
        stop_orphan(nats_dir / "nats-server.pid", "nats-server", str(nats_dir))
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True)

    def start_infra(self, services: dict[str, str]) -> str:
        """Start PostgreSQL and NATS and fix the processes' environment: the gateway's port
        (chosen here) and `services`' own settings. Returns a line saying where they run."""
        database_url = self.postgres.start()
        nats_url = self.nats.start()
        gateway_port = free_port()
        self.env = {
            "DATABASE_URL": database_url,
            "NATS_URL": nats_url,
            "KOMAR_DATA_DIR": str(self.root / "data"),
            "KOMAR_ADMIN_SECRET": self.admin_secret,
            "KOMAR_KEK": secrets.token_urlsafe(32),  # the gateway's key-encryption key
            "KOMAR_GATEWAY_PORT": str(gateway_port),
            **services,
            "KOMAR_JWKS_URL": f"http://127.0.0.1:{gateway_port}/.well-known/jwks.json",
            "KOMAR_LOG_LEVEL": "warning",
        }
        return f"PostgreSQL {database_url}, NATS {nats_url}"

    @property
    def gateway(self) -> str:
        """The gateway's base URL."""
        return f"http://127.0.0.1:{self.env['KOMAR_GATEWAY_PORT']}"

    def stop_all(self) -> None:
        """Stop every supervised process, NATS and PostgreSQL."""
        self.supervisor.stop_all(timeout=self.stop_timeout)
        self.nats.stop()
        self.postgres.stop()

    def pid(self, name: str) -> int:
        """The pid of a supervised process."""
        pid = self.supervisor.get(name).pid
        assert pid is not None
        return pid

    def infra_pids(self) -> dict[str, list[int]]:
        """The postmaster (its backends are its children) and the NATS server."""
        postmaster = (self.postgres.data_dir / "postmaster.pid").read_text().split()[0]
        nats = self.nats.pid_path.read_text().split()[0]
        return {"postgres": [int(postmaster)], "nats": [int(nats)]}


def write_results(root: Path, results: dict[str, Any], table: str) -> None:
    """Write `results` to root/results.json, then print the table and where they went."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / "results.json"
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print()
    print(table)
    print(f"\nwritten to {path} in {results['elapsed_s']:.0f} s")


def service_env(name: str) -> dict[str, str]:
    """A service's port and URL settings, on a fresh port."""
    port = free_port()
    upper = name.upper()
    return {f"KOMAR_{upper}_PORT": str(port), f"KOMAR_{upper}_URL": f"http://127.0.0.1:{port}"}


@contextmanager
def terminate_as_exit() -> Iterator[None]:
    """Turn SIGTERM into SystemExit so cleanup runs whichever way the bench is stopped."""

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous: Callable[[int, FrameType | None], Any] | int | None = signal.signal(
        signal.SIGTERM, stop
    )
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
