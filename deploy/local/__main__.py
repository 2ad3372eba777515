"""`python -m deploy.local` (`make run`): the whole platform on one machine.

Starts embedded PostgreSQL and NATS (unless DATABASE_URL / NATS_URL point elsewhere),
migrates every schema, starts the services and then the gateway, restarts whatever dies,
and on Ctrl-C / SIGTERM stops it all in order: gateway, services, NATS, PostgreSQL.

The bootstrap admin secret and the gateway's key-encryption key (KOMAR_KEK) are taken from
the environment, else from `var/admin-secret` and `var/kek`, generated there when missing.

KOMAR_REPLICAS=N (`make run REPLICAS=N`) runs N processes of every service behind the one
gateway: replica i listens on the service's port + 10·(i-1) (`replica_port`), is named
`<service>-<i>` in the supervisor and its log, and the gateway gets every replica's URL.

The processes' log lines are JSON in their files under var/log; on a terminal they are
echoed readable (deploy/local/console.py), through a pipe as they are; KOMAR_LOG_FORMAT=
console|json chooses, `--quiet` echoes nothing.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from deploy.local.console import LineFormat, json_line, terminal_format
from deploy.local.infra import EmbeddedNats, EmbeddedPostgres, InfraError
from deploy.local.supervisor import ProcessFailed, Supervisor

# (name, module, port env var, default port). The gateway is started last whatever its place.
COMPONENTS: list[tuple[str, str, str, int]] = [
    ("gateway", "gateway", "KOMAR_GATEWAY_PORT", 8000),
    ("registry", "services.registry", "KOMAR_REGISTRY_PORT", 8101),
    ("referrals", "services.referrals", "KOMAR_REFERRALS_PORT", 8102),
    ("funds", "services.funds", "KOMAR_FUNDS_PORT", 8103),
    ("indicators", "services.indicators", "KOMAR_INDICATORS_PORT", 8104),
    ("webhooks", "services.webhooks", "KOMAR_WEBHOOKS_PORT", 8105),
    ("casework", "services.casework", "KOMAR_CASEWORK_PORT", 8106),
    ("dashboard", "dashboard", "KOMAR_DASHBOARD_PORT", 8080),
]
GATEWAY = "gateway"
DASHBOARD = "dashboard"
# One process each whatever REPLICAS says: the gateway (the one entry point) and the
# dashboard (its sign-in sessions live in its memory). Neither has a schema to migrate but
# the gateway.
SINGLE = (GATEWAY, DASHBOARD)
MIGRATED = tuple(name for name, _, _, _ in COMPONENTS if name != DASHBOARD)
REPLICA_PORT_STEP = 10
MAX_REPLICAS = 9
POSTGRES_PORT = 55432
NATS_PORT = 54222
MAX_BACKOFF = 30.0
HEALTHY_AFTER = 60.0


class Shutdown(Exception):
    """SIGINT or SIGTERM arrived: stop everything in order."""


def component_ports(environ: Mapping[str, str]) -> dict[str, int]:
    """Port of every component: its KOMAR_<NAME>_PORT, else the default."""
    return {name: int(environ.get(var, default)) for name, _, var, default in COMPONENTS}


def replica_count(environ: Mapping[str, str]) -> int:
    """How many processes of each service to run: KOMAR_REPLICAS, 1 by default."""
    raw = environ.get("KOMAR_REPLICAS", "").strip() or "1"
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_REPLICAS:
        raise ValueError(f"KOMAR_REPLICAS must be a whole number from 1 to {MAX_REPLICAS}")
    return int(raw)


def replica_port(port: int, index: int) -> int:
    """The port of replica `index` (0-based) of a service whose first replica uses `port`."""
    return port + REPLICA_PORT_STEP * index


@dataclass(frozen=True)
class Replica:
    """One serving process: a replica of a service, or the gateway."""

    name: str  # in the supervisor and its log file: `registry`, or `registry-1`, `registry-2`
    component: str
    module: str
    port: int
    index: int = 0


def replica_layout(ports: Mapping[str, int], count: int = 1) -> list[Replica]:
    """Every serving process in start order: `count` of each service, then one gateway and
    one dashboard."""
    found: list[Replica] = []
    for name, module in start_order():
        n = 1 if name in SINGLE else count
        for i in range(n):
            label = name if n == 1 else f"{name}-{i + 1}"
            found.append(Replica(label, name, module, replica_port(ports[name], i), i))
    taken: dict[int, str] = {}
    for r in found:
        if r.port in taken:
            raise ValueError(f"{r.name} and {taken[r.port]} would both listen on port {r.port}")
        taken[r.port] = r.name
    return found


KEK_FILE = "kek"


def load_or_create_kek(data_dir: Path) -> tuple[str, bool]:
    """The gateway's key-encryption key: KOMAR_KEK, else the one kept in `<data_dir>/kek`,
    else a new one (32 random bytes, base64url) written there with mode 0600.

    Returns the KEK and whether it was created now. Only the local runner does this: the
    gateway itself refuses to start without KOMAR_KEK.
    """
    from_env = os.environ.get("KOMAR_KEK")
    if from_env:
        return from_env, False
    path = data_dir / KEK_FILE
    if path.exists():
        return path.read_text().strip(), False
    data_dir.mkdir(parents=True, exist_ok=True)
    kek = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(kek + "\n")
    return kek, True


def component_env(
    ports: Mapping[str, int],
    *,
    database_url: str,
    nats_url: str,
    data_dir: Path,
    admin_secret: str,
    replicas: int = 1,
    kek: str | None = None,
) -> dict[str, str]:
    """The environment every component is started with.

    KOMAR_<SERVICE>_URL lists the base URLs of all of the service's replicas, comma-separated.
    KOMAR_KEK is `kek`, else KOMAR_KEK of this environment, else the one kept in
    `<data_dir>/kek` (generated there, mode 0600, when missing).
    """
    if kek is None:
        kek, _ = load_or_create_kek(data_dir)
    env = {
        "DATABASE_URL": database_url,
        "NATS_URL": nats_url,
        "KOMAR_DATA_DIR": str(data_dir),
        "KOMAR_ADMIN_SECRET": admin_secret,
        "KOMAR_KEK": kek,
        "KOMAR_JWKS_URL": f"http://127.0.0.1:{ports[GATEWAY]}/.well-known/jwks.json",
        "KOMAR_GATEWAY_URL": f"http://127.0.0.1:{ports[GATEWAY]}",
    }
    for name, port in ports.items():
        env[f"KOMAR_{name.upper()}_PORT"] = str(port)
        if name not in SINGLE:
            env[f"KOMAR_{name.upper()}_URL"] = ",".join(
                f"http://127.0.0.1:{replica_port(port, i)}" for i in range(replicas)
            )
    return env


GATEWAY_ONLY = ("KOMAR_KEK", "KOMAR_KEK_PREVIOUS")
# What a component gets on one machine unless the environment says otherwise: webhooks may
# be delivered to receivers on this machine (http://127.0.0.1:<port>/…, http://localhost).
LOCAL_DEFAULTS: dict[str, dict[str, str]] = {
    "webhooks": {"KOMAR_WEBHOOKS_ALLOW_LOOPBACK": "1"},
}


def replica_env(env: Mapping[str, str], replica: Replica) -> dict[str, str]:
    """The environment of one process: the shared one, with its own port (and the KEK for
    the gateway only: no service needs it), over the component's LOCAL_DEFAULTS."""
    own = {k: v for k, v in env.items() if replica.component == GATEWAY or k not in GATEWAY_ONLY}
    return {
        **LOCAL_DEFAULTS.get(replica.component, {}),
        **own,
        f"KOMAR_{replica.component.upper()}_PORT": str(replica.port),
    }


def start_order() -> list[tuple[str, str]]:
    """(name, module) of every component: services in list order, then the gateway, then
    the dashboard (which calls the gateway)."""
    order = {GATEWAY: 1, DASHBOARD: 2}
    found = [(name, module) for name, module, _, _ in COMPONENTS]
    return sorted(found, key=lambda c: order.get(c[0], 0))


def say(message: str) -> None:
    """Print a line of the runner's own output."""
    print(f"komar | {message}", flush=True)


@dataclass
class Watched:
    """Something the runner keeps alive, with its restart backoff."""

    name: str
    alive: Callable[[], bool]
    restart: Callable[[], object]
    started_at: float
    backoff: float = 1.0
    next_try: float = 0.0


class Platform:
    """The running platform: embedded servers, supervised processes, orderly shutdown."""

    def __init__(
        self,
        data_dir: Path,
        environ: Mapping[str, str],
        echo: bool,
        show: LineFormat = json_line,
    ) -> None:
        self.data_dir = data_dir
        self.environ = environ
        self.supervisor = Supervisor(data_dir / "log", echo=echo, show=show)
        self.postgres: EmbeddedPostgres | None = None
        self.nats: EmbeddedNats | None = None
        self.watched: list[Watched] = []

    def start(self) -> None:
        """Bring everything up and print where to find it."""
        ports = component_ports(self.environ)
        count = replica_count(self.environ)
        processes = replica_layout(ports, count)  # a bad layout fails before anything starts
        database_url = self.environ.get("DATABASE_URL") or self._start_postgres()
        nats_url = self.environ.get("NATS_URL") or self._start_nats()
        from libs.common.settings import load_or_create_admin_secret

        admin_secret, created = load_or_create_admin_secret(self.data_dir)
        kek, kek_created = load_or_create_kek(self.data_dir)
        if kek_created:
            say(f"generated a key-encryption key (KOMAR_KEK) in {self.data_dir / 'kek'}")
        env = component_env(
            ports,
            database_url=database_url,
            nats_url=nats_url,
            data_dir=self.data_dir,
            admin_secret=admin_secret,
            replicas=count,
            kek=kek,
        )
        for name, module, _, _ in COMPONENTS:
            if name not in MIGRATED:
                continue
            say(f"migrating {name}")
            self.supervisor.run(f"{name}-migrate", module, "migrate", env=env)
        for replica in processes:
            say(f"starting {replica.name} on 127.0.0.1:{replica.port}")
            self.supervisor.start(
                replica.name, replica.module, env=replica_env(env, replica), port=replica.port
            )
            self._watch_process(replica.name)
        self._announce(ports[GATEWAY], ports.get(DASHBOARD), admin_secret, created, count)

    def keep_alive(self) -> None:
        """Restart anything that dies, with a growing backoff, until a signal arrives."""
        while True:
            now = time.monotonic()
            for unit in self.watched:
                if unit.next_try == 0.0 and not unit.alive():
                    if now - unit.started_at > HEALTHY_AFTER:
                        unit.backoff = 1.0
                    unit.next_try = now + unit.backoff
                    say(f"{unit.name} died unexpectedly; restarting in {unit.backoff:.0f}s")
                elif unit.next_try and now >= unit.next_try:
                    self._restart(unit)
            time.sleep(0.5)

    def stop(self) -> None:
        """Stop the gateway, the services, NATS, then PostgreSQL (reverse start order)."""
        for name in reversed(self.supervisor.names()):
            if self.supervisor.is_running(name):
                say(f"stopping {name}")
                self.supervisor.stop(name)
        if self.nats is not None and self.nats.running:
            say("stopping NATS")
            self.nats.stop()
        if self.postgres is not None and self.postgres.running:
            say("stopping PostgreSQL")
            self.postgres.stop()

    def _start_postgres(self) -> str:
        """Start the embedded PostgreSQL (data in <data dir>/postgres)."""
        port = int(self.environ.get("KOMAR_POSTGRES_PORT", POSTGRES_PORT))
        self.postgres = EmbeddedPostgres(self.data_dir / "postgres", port=port)
        say(f"starting PostgreSQL on 127.0.0.1:{port}")
        url = self.postgres.start()
        pg = self.postgres
        self.watched.append(Watched("PostgreSQL", lambda: pg.running, pg.start, time.monotonic()))
        return url

    def _start_nats(self) -> str:
        """Start the embedded NATS server with JetStream (data in <data dir>/nats)."""
        port = int(self.environ.get("KOMAR_NATS_PORT", NATS_PORT))
        self.nats = EmbeddedNats(self.data_dir / "nats", port=port)
        say(f"starting NATS on 127.0.0.1:{port}")
        url = self.nats.start()
        nats = self.nats
        self.watched.append(Watched("NATS", lambda: nats.running, nats.start, time.monotonic()))
        return url

    def _watch_process(self, name: str) -> None:
        """Keep the supervised process `name` alive."""
        sup = self.supervisor
        self.watched.append(
            Watched(name, lambda: sup.is_running(name), lambda: sup.restart(name), time.monotonic())
        )

    def _restart(self, unit: Watched) -> None:
        """Try to bring `unit` back; back off longer each time it fails or dies again."""
        unit.backoff = min(unit.backoff * 2, MAX_BACKOFF)
        try:
            unit.restart()
        except (ProcessFailed, InfraError) as exc:
            unit.next_try = time.monotonic() + unit.backoff
            say(f"{unit.name} failed to restart: {exc}; next try in {unit.backoff:.0f}s")
            return
        say(f"{unit.name} restarted")
        unit.started_at = time.monotonic()
        unit.next_try = 0.0

    def _announce(
        self,
        gateway_port: int,
        dashboard_port: int | None,
        admin_secret: str,
        created: bool,
        replicas: int = 1,
    ) -> None:
        """Print the URLs, the admin credentials and how to make the first user."""
        gateway = f"http://127.0.0.1:{gateway_port}"
        if self.environ.get("KOMAR_ADMIN_SECRET"):
            secret = "(from KOMAR_ADMIN_SECRET)"
        elif created:
            secret = f"{admin_secret}   (new; kept in {self.data_dir / 'admin-secret'})"
        else:
            secret = f"stored in {self.data_dir / 'admin-secret'}"
        lines = [
            "",
            "Komar is running.",
            f"  Gateway:         {gateway}",
            f"  API docs:        {gateway}/docs",
            *([f"  Dashboard:       http://127.0.0.1:{dashboard_port}/"] if dashboard_port else []),
            "  Admin client id: admin",
            f"  Admin secret:    {secret}",
            f"  Logs:            {self.data_dir / 'log'}",
            *([f"  Replicas:        {replicas} of every service"] if replicas > 1 else []),
            *(FIRST_USER if dashboard_port else []),
            "Press Ctrl-C to stop.",
            "",
        ]
        print("\n".join(lines), flush=True)


FIRST_USER = [
    "A first dashboard user (asks for their password), in another terminal:",
    "  make user ARGS=\"--username sokha --name 'Sokha Chan' --role commune --area 120101\"",
]


def _raise_shutdown(signum: int, frame: FrameType | None) -> None:
    """Signal handler: unwind to the orderly shutdown (once)."""
    signal.signal(signal.SIGINT, _already_stopping)
    signal.signal(signal.SIGTERM, _already_stopping)
    raise Shutdown(signal.Signals(signum).name)


def _already_stopping(signum: int, frame: FrameType | None) -> None:
    """Signal handler during shutdown: keep stopping in order."""
    # os.write, not print: a handler that prints can hit a print it interrupted.
    os.write(sys.stderr.fileno(), b"komar | already stopping, please wait\n")


def main(argv: list[str] | None = None) -> int:
    """Run the platform until SIGINT/SIGTERM; 0 on a clean stop, 1 if it could not start."""
    parser = argparse.ArgumentParser(prog="python -m deploy.local", description=__doc__)
    parser.add_argument("--quiet", action="store_true", help="log to var/log only, not here")
    options = parser.parse_args(argv)
    try:
        show = terminal_format(os.environ, sys.stdout)
    except ValueError as exc:
        parser.error(str(exc))
    data_dir = Path(os.environ.get("KOMAR_DATA_DIR", "var")).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    platform = Platform(data_dir, os.environ, echo=not options.quiet, show=show)
    signal.signal(signal.SIGINT, _raise_shutdown)
    signal.signal(signal.SIGTERM, _raise_shutdown)
    code = 0
    try:
        platform.start()
        platform.keep_alive()
    except Shutdown as exc:
        say(f"{exc}: stopping")
    except (ProcessFailed, InfraError, ValueError) as exc:
        say(f"could not start: {exc}")
        code = 1
    finally:
        signal.signal(signal.SIGINT, _already_stopping)
        signal.signal(signal.SIGTERM, _already_stopping)
        platform.stop()
    say("stopped")
    return code


if __name__ == "__main__":
    sys.exit(main())
