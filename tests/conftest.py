"""Fixtures for the whole suite."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.local.infra import (
    EmbeddedNats,
    EmbeddedPostgres,
    create_database,
    drop_database,
    free_port,
)
from tests.support import SigningKeys

# ===========================================================================
# Infrastructure: a real PostgreSQL and a real NATS JetStream for the session.
# Embedded servers from the PyPI wheels, unless DATABASE_URL / NATS_URL point
# at existing ones. Owned by deploy/local; app-level fixtures go further below.
# ===========================================================================


def pytest_configure(config: pytest.Config) -> None:
    """A temporary folder of this session's own (`--basetemp`), unless one is given.

    pytest keeps only its three newest numbered folders under one shared root, so a
    second session started meanwhile (another checkout's `make test`) could delete the
    data directory of this session's PostgreSQL while it runs.
    """
    if config.option.basetemp is None:
        config.option.basetemp = tempfile.mkdtemp(prefix="komar-tests-")
        config.stash[_OWN_BASETEMP] = config.option.basetemp


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove the session's own folder when every test passed (kept to read otherwise)."""
    own = session.config.stash.get(_OWN_BASETEMP, None)
    if own is not None and exitstatus == 0:
        shutil.rmtree(own, ignore_errors=True)


_OWN_BASETEMP = pytest.StashKey[str]()


class ExternalNats:
    """A NATS server this session did not start: fault tests that need one are skipped."""

    def __init__(self, url: str) -> None:
        self.url = url

    def start(self) -> str:
        """Cannot start a server we do not own."""
        pytest.skip("NATS_URL is set: the broker is not ours to start")

    def stop(self) -> None:
        """Cannot stop a server we do not own."""
        pytest.skip("NATS_URL is set: the broker is not ours to stop")

    def kill(self) -> None:
        """Cannot kill a server we do not own."""
        pytest.skip("NATS_URL is set: the broker is not ours to kill")


@pytest.fixture(scope="session")
def pg_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL (`postgresql://…`) of a database of its own for this test session."""
    server_url = os.environ.get("DATABASE_URL")
    if server_url:
        name = f"komar_test_{secrets.token_hex(4)}"
        yield create_database(server_url, name)
        drop_database(server_url, name)
        return
    # fsync off: a test database need not survive a power cut, and commits get cheap.
    postgres = EmbeddedPostgres(
        tmp_path_factory.mktemp("postgres"), port=free_port(), settings={"fsync": "off"}
    )
    try:
        yield postgres.start()
    finally:
        postgres.stop()


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats | ExternalNats]:
    """The session's NATS server: `.url`, and `stop()`/`start()`/`kill()` for fault tests.

    The fault methods block; from an async test call them via `asyncio.to_thread`.
    A test that stops or kills the server must `start()` it again before it ends.
    """
    external = os.environ.get("NATS_URL")
    if external:
        yield ExternalNats(external)
        return
    server = EmbeddedNats(tmp_path_factory.mktemp("nats"), port=free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def nats_url(nats_server: EmbeddedNats | ExternalNats) -> str:
    """Client URL (`nats://…`) of the session's NATS server."""
    return nats_server.url


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root (where `python -m <package>` finds the code)."""
    return Path(__file__).resolve().parents[1]


# ===========================================================================
# Application fixtures (integrator) below.
# ===========================================================================


@pytest.fixture(scope="session")
def keys() -> SigningKeys:
    """The signing key standing in for the gateway's: services started by `running_service`
    trust it, and tests sign their principals' tokens with it."""
    return SigningKeys()
