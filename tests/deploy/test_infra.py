"""The one-machine infrastructure: embedded servers, the process supervisor, the runner."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import nats
import pytest

from deploy.local.__main__ import (
    Replica,
    component_env,
    load_or_create_kek,
    replica_env,
)
from deploy.local.infra import (
    EmbeddedNats,
    EmbeddedPostgres,
    InfraError,
    free_port,
    port_accepts,
    port_in_use,
)
from deploy.local.supervisor import ProcessFailed, Supervisor

REPO_ROOT = Path(__file__).resolve().parents[2]


def http_get(url: str) -> str:
    """GET `url` and return the body."""
    with urllib.request.urlopen(url, timeout=5) as response:
        body: bytes = response.read()
        return body.decode()


def wait_until(predicate: Callable[[], object], timeout: float = 30.0) -> None:
    """Poll `predicate()` until it is truthy or fail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"condition not met within {timeout}s")


# --- PostgreSQL -------------------------------------------------------------------------


async def test_postgres_data_survives_stop_and_crash(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg", port=free_port())
    url = await asyncio.to_thread(pg.start)
    try:
        assert url == f"postgresql://postgres@127.0.0.1:{pg.port}/komar"
        conn = await asyncpg.connect(url)
        await conn.execute("CREATE TABLE child (name text)")
        await conn.execute("INSERT INTO child VALUES ('Sophea')")
        await conn.close()

        await asyncio.to_thread(pg.stop)
        assert not port_in_use(pg.port)
        await asyncio.to_thread(pg.start)
        conn = await asyncpg.connect(url)
        await conn.execute("INSERT INTO child VALUES ('Dara')")
        await conn.close()

        # A crash leaves postmaster.pid behind; starting again must recover, not refuse.
        await asyncio.to_thread(pg.kill)
        assert (pg.data_dir / "postmaster.pid").exists()
        await asyncio.to_thread(pg.start)
        conn = await asyncpg.connect(url)
        names = [r["name"] for r in await conn.fetch("SELECT name FROM child ORDER BY name")]
        await conn.close()
        assert names == ["Dara", "Sophea"]
    finally:
        await asyncio.to_thread(pg.stop)


def test_postgres_refuses_a_taken_port_clearly(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        pg = EmbeddedPostgres(tmp_path / "pg", port=port)
        with pytest.raises(InfraError, match=f"port {port} .* already in use"):
            pg.start()
    assert not pg.running


async def test_session_database_is_usable(pg_url: str) -> None:
    conn = await asyncpg.connect(pg_url)
    try:
        assert await conn.fetchval("SELECT 1") == 1
        assert await conn.fetchval("SHOW max_connections") == "300"
    finally:
        await conn.close()


# --- NATS JetStream ---------------------------------------------------------------------


async def test_jetstream_stream_and_messages_survive_a_kill(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path / "nats", port=free_port())
    url = await asyncio.to_thread(server.start)
    try:
        nc = await nats.connect(url)
        js = nc.jetstream()
        await js.add_stream(name="CASES", subjects=["cases.>"])
        for i in range(3):
            await js.publish("cases.opened", f"case-{i}".encode(), headers={"Nats-Msg-Id": str(i)})
        await nc.close()

        await asyncio.to_thread(server.kill)
        assert not port_in_use(server.port)
        assert await asyncio.to_thread(server.start) == url

        nc = await nats.connect(url)
        js = nc.jetstream()
        info = await js.stream_info("CASES")
        assert info.state.messages == 3
        sub = await js.pull_subscribe("cases.>", durable="reader")
        msgs = await sub.fetch(3, timeout=5)
        assert [m.data for m in msgs] == [b"case-0", b"case-1", b"case-2"]
        # The de-duplication window survived too: a re-sent id is not stored twice.
        ack = await js.publish("cases.opened", b"case-2", headers={"Nats-Msg-Id": "2"})
        assert ack.duplicate
        await nc.close()
    finally:
        await asyncio.to_thread(server.stop)


async def test_session_nats_has_jetstream(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        info = await nc.jetstream().account_info()
        assert info.limits is not None
    finally:
        await nc.close()


# --- Supervisor -------------------------------------------------------------------------


def start_tiny(supervisor: Supervisor, port: int) -> None:
    """Start tests.deploy.tiny_app as `tiny` on `port` and wait until it is ready."""
    supervisor.start("tiny", "tests.deploy.tiny_app", env={"TINY_PORT": str(port)}, port=port)


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[Supervisor]:
    sup = Supervisor(tmp_path / "log", ready_timeout=30)
    yield sup
    sup.stop_all()


def test_supervisor_runs_kills_and_restarts_a_process(supervisor: Supervisor) -> None:
    port = free_port()
    start_tiny(supervisor, port)
    first_pid = int(http_get(f"http://127.0.0.1:{port}/pid"))
    assert first_pid == supervisor.get("tiny").pid

    supervisor.kill("tiny")
    assert not supervisor.is_running("tiny")
    assert supervisor.exited() == []  # killed on purpose: not a failure
    assert not port_accepts(port)

    supervisor.restart("tiny")
    second_pid = int(http_get(f"http://127.0.0.1:{port}/pid"))
    assert second_pid != first_pid

    # Graceful: uvicorn shuts down and re-raises SIGTERM, so no SIGKILL was needed.
    assert supervisor.stop("tiny") in (0, -signal.SIGTERM)
    assert not port_in_use(port)


def test_supervisor_reports_a_crash(supervisor: Supervisor) -> None:
    port = free_port()
    start_tiny(supervisor, port)
    with contextlib.suppress(OSError):  # the process dies mid-request
        http_get(f"http://127.0.0.1:{port}/crash")
    wait_until(lambda: supervisor.exited())
    [crashed] = supervisor.exited()
    assert (crashed.name, crashed.returncode) == ("tiny", 3)

    supervisor.restart("tiny")
    assert supervisor.exited() == []
    assert http_get(f"http://127.0.0.1:{port}/readyz") == "ready"


def test_supervisor_start_failure_shows_the_log(supervisor: Supervisor) -> None:
    with pytest.raises(ProcessFailed, match="boom: refusing to start"):
        supervisor.start("tiny", "tests.deploy.tiny_app", "boom", port=free_port())
    with pytest.raises(ProcessFailed, match="exit code 1"):
        supervisor.run("tiny-task", "tests.deploy.tiny_app", "boom")


def test_supervisor_refuses_a_taken_port(supervisor: Supervisor) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(ProcessFailed, match="already in use"):
            start_tiny(supervisor, port)


# --- The runner (python -m deploy.local) ------------------------------------------------


def test_component_env_routes_every_service() -> None:
    env = component_env(
        {"gateway": 8000, "registry": 8101, "funds": 8103},
        database_url="postgresql://postgres@127.0.0.1:55432/komar",
        nats_url="nats://127.0.0.1:54222",
        data_dir=Path("/srv/var"),
        admin_secret="s3cret",
        kek="k3k",
    )
    assert env == {
        "DATABASE_URL": "postgresql://postgres@127.0.0.1:55432/komar",
        "NATS_URL": "nats://127.0.0.1:54222",
        "KOMAR_DATA_DIR": "/srv/var",
        "KOMAR_ADMIN_SECRET": "s3cret",
        "KOMAR_KEK": "k3k",
        "KOMAR_JWKS_URL": "http://127.0.0.1:8000/.well-known/jwks.json",
        "KOMAR_GATEWAY_URL": "http://127.0.0.1:8000",
        "KOMAR_GATEWAY_PORT": "8000",
        "KOMAR_REGISTRY_PORT": "8101",
        "KOMAR_REGISTRY_URL": "http://127.0.0.1:8101",
        "KOMAR_FUNDS_PORT": "8103",
        "KOMAR_FUNDS_URL": "http://127.0.0.1:8103",
    }


def test_the_local_kek_is_generated_once_kept_private_and_given_to_the_gateway_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KOMAR_KEK", raising=False)
    data_dir = tmp_path / "var"
    ports = {"gateway": 8000, "registry": 8101}
    env = component_env(
        ports, database_url="db", nats_url="nats", data_dir=data_dir, admin_secret="s"
    )
    stored = data_dir / "kek"
    assert env["KOMAR_KEK"] == stored.read_text().strip()
    assert oct(stored.stat().st_mode & 0o777) == "0o600"
    assert len(base64.urlsafe_b64decode(env["KOMAR_KEK"] + "=")) == 32
    again = component_env(
        ports, database_url="db", nats_url="nats", data_dir=data_dir, admin_secret="s"
    )
    assert again["KOMAR_KEK"] == env["KOMAR_KEK"]
    monkeypatch.setenv("KOMAR_KEK", "from-the-environment")
    assert load_or_create_kek(data_dir) == ("from-the-environment", False)
    gateway = Replica("gateway", "gateway", "gateway", 8000)
    registry = Replica("registry", "registry", "services.registry", 8101)
    assert replica_env(env, gateway)["KOMAR_KEK"] == env["KOMAR_KEK"]
    assert "KOMAR_KEK" not in replica_env(env, registry)


class Runner:
    """`python -m deploy.local` with stand-in components, as a real process."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.deploy.fake_platform", "--quiet"],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, text: str, timeout: float = 90.0) -> None:
        """Read output until a line contains `text`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
            if text in line:
                return
        self.proc.kill()
        raise AssertionError(f"runner never printed {text!r}:\n" + "\n".join(self.lines))

    def stop(self, sig: int) -> int:
        """Send `sig`, wait for the exit code, and collect the rest of the output."""
        self.proc.send_signal(sig)
        code = self.proc.wait(90)
        while (line := self._queue.get(timeout=10)) is not None:
            self.lines.append(line)
        return code


async def test_runner_starts_keeps_up_and_stops_the_platform(tmp_path: Path) -> None:
    ports = {name: free_port() for name in ("GATEWAY", "REGISTRY", "POSTGRES", "NATS")}
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "NATS_URL")}
    env.pop("KOMAR_ADMIN_SECRET", None)
    env.pop("KOMAR_KEK", None)
    env["KOMAR_DATA_DIR"] = str(tmp_path / "var")
    env.update({f"KOMAR_{name}_PORT": str(port) for name, port in ports.items()})
    gateway = f"http://127.0.0.1:{ports['GATEWAY']}"
    registry = f"http://127.0.0.1:{ports['REGISTRY']}"

    runner = Runner(env)
    await asyncio.to_thread(runner.wait_for, "Press Ctrl-C to stop.")
    output = "\n".join(runner.lines)
    assert f"Gateway:         {gateway}" in output
    assert f"API docs:        {gateway}/docs" in output
    assert "Admin client id: admin" in output
    secret = (tmp_path / "var" / "admin-secret").read_text().strip()
    assert f"Admin secret:    {secret}" in output

    seen = json.loads(await asyncio.to_thread(http_get, f"{gateway}/env"))
    assert seen["KOMAR_REGISTRY_URL"] == registry
    assert seen["KOMAR_JWKS_URL"] == f"{gateway}/.well-known/jwks.json"
    assert seen["KOMAR_ADMIN_SECRET"] == secret
    assert seen["KOMAR_KEK"] == (tmp_path / "var" / "kek").read_text().strip()
    assert "KOMAR_KEK" not in json.loads(await asyncio.to_thread(http_get, f"{registry}/env"))
    assert seen["DATABASE_URL"] == f"postgresql://postgres@127.0.0.1:{ports['POSTGRES']}/komar"
    assert seen["NATS_URL"] == f"nats://127.0.0.1:{ports['NATS']}"

    # A service that dies is brought back.
    old_pid = int(await asyncio.to_thread(http_get, f"{registry}/pid"))
    os.kill(old_pid, signal.SIGKILL)
    await asyncio.to_thread(wait_until, lambda: int(http_get(f"{registry}/pid")) != old_pid, 30)

    assert await asyncio.to_thread(runner.stop, signal.SIGINT) == 0
    output = "\n".join(runner.lines)
    order = ["stopping gateway", "stopping registry", "stopping NATS", "stopping PostgreSQL"]
    assert [output.index(step) for step in order] == sorted(output.index(s) for s in order)
    assert not any(port_in_use(port) for port in ports.values())

    # A second run finds the same data (the stand-in migration adds one row per run).
    runner = Runner(env)
    await asyncio.to_thread(runner.wait_for, "Press Ctrl-C to stop.")
    assert f"stored in {tmp_path / 'var' / 'admin-secret'}" in "\n".join(runner.lines)
    conn = await asyncpg.connect(seen["DATABASE_URL"])
    runs = await conn.fetchval("SELECT count(*) FROM tiny_runs")
    await conn.close()
    assert runs == 2 * 2  # two components migrated, twice
    assert await asyncio.to_thread(runner.stop, signal.SIGTERM) == 0
    assert not any(port_in_use(port) for port in ports.values())
