"""`python -m bench` (`make bench`): what the registry and the gateway cost against a bare ceiling.

One run on this machine, each target alone in turn, the load generator in its own process:
  (a) ceiling   FastAPI + asyncpg, one INSERT / one SELECT (bench/ceiling.py)
  (b) registry  `python -m services.registry`, called directly with a gateway-issued token
  (c) gateway   the registry through `python -m gateway`
each for create (POST) and read-by-id (GET); then two workflows through the gateway, each
worker running one workflow after the other (bench/workflows.py):
  (d) referral  create a referral, the provider it was routed to accepts it
  (e) grant     request a grant, another principal approves it, a disburser pays it
Prints a table and the ratios b/a, c/a and, per workflow, its request rate over the ceiling's
create rate; writes everything to var/bench/results.json.

Environment: BENCH_SECONDS (measured window, default 10), BENCH_WARMUP (default 2),
BENCH_CONNECTIONS (default 32; also the workers of a workflow).

`python -m bench indicators` (`make bench-indicators`, bench/indicators.py) is a separate
phase, not run here: a month of indicators pulled with 10,000 and with 1,000,000 children,
whose seeding takes many minutes.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import platform
import random
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from bench import workflows
from deploy.local.infra import EmbeddedNats, EmbeddedPostgres, free_port, stop_orphan
from deploy.local.supervisor import REPO_ROOT, Supervisor

ROOT = REPO_ROOT / "var" / "bench"
SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))
WARMUP = float(os.environ.get("BENCH_WARMUP", "2"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "32"))
CALIBRATION_SECONDS = 3.0
BODIES_PER_TARGET = 8192
TARGET_RATIO, AIM_RATIO = 0.5, 0.7
CHILDREN_PER_WORKER = 16  # children registered for the workflows, per connection
SETUP_TIMEOUT = 180.0  # for the referrals and funds services to learn the children
BUSY_OTHER_CORES = 0.25  # outside load above which the table warns that req/s is distorted
# Modules the bench runs under the supervisor: (log name, module).
PROCESSES = [
    ("trivial", "bench.loadgen"),
    ("ceiling", "bench.ceiling"),
    ("registry-migrate", "services.registry"),
    ("gateway-migrate", "gateway"),
    ("registry", "services.registry"),
    ("gateway", "gateway"),
    ("referrals-migrate", "services.referrals"),
    ("funds-migrate", "services.funds"),
    ("referrals", "services.referrals"),
    ("funds", "services.funds"),
]
TARGETS = {
    "ceiling": "(a) ceiling: FastAPI + asyncpg",
    "registry": "(b) registry, direct",
    "gateway": "(c) registry via gateway",
}
# name -> (label, service under test, steps)
WORKFLOWS = {
    "referral": ("(d) referral: create, accept", "referrals", workflows.REFERRAL_STEPS),
    "grant": ("(e) grant: request, approve, disburse", "funds", workflows.GRANT_STEPS),
}
SERVICES = ["registry", "referrals", "funds"]

GIVEN = ["Sokha", "Dara", "Sreymom", "Vanna", "Bopha", "Rithy", "Chenda", "Piseth", "Kanha"]
FAMILY = ["Chan", "Sok", "Kim", "Heng", "Meas", "Ouk", "Prak", "Touch", "Yim", "Nhem"]
SYLLABLES = ["ra", "ny", "tha", "vy", "ka", "mon", "lis", "sa", "vath", "rith", "dy", "na"]
VULNERABILITIES = ["poor_household", "out_of_school", "disability", "neglect", "child_labour"]


def say(message: str) -> None:
    """Print a progress line."""
    print(f"bench | {message}", flush=True)


# ------------------------------------------------------------------ workload


def child_bodies(count: int, seed: int) -> list[dict[str, Any]]:
    """Distinct, valid children spread over every commune (as a national partner sync would)."""
    from libs.common.places import all_communes

    rng = random.Random(seed)
    communes = all_communes()
    today = dt.date.today()
    bodies = []
    for _ in range(count):
        suffix = "".join(rng.choice(SYLLABLES) for _ in range(2))
        bodies.append(
            {
                "given_name": rng.choice(GIVEN) + suffix,
                "family_name": rng.choice(FAMILY),
                "sex": rng.choice(["female", "male"]),
                "birth_date": (today - dt.timedelta(days=rng.randint(365, 16 * 365))).isoformat(),
                "commune_code": rng.choice(communes),
                "caregiver": {
                    "name": "Dara Chan",
                    "relationship": "mother",
                    "phone": "+85512345678",
                },
                "vulnerabilities": rng.sample(VULNERABILITIES, 2),
                "risk_level": rng.choice(["low", "medium", "high"]),
                "consent": {
                    "data_sharing": True,
                    "given_by": "mother",
                    "date": (today - dt.timedelta(days=7)).isoformat(),
                },
            }
        )
    return bodies


# ------------------------------------------------------------------ measuring


def _quantile(ordered: list[float], q: float) -> float:
    """Nearest-rank quantile of sorted values."""
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


class Bench:
    """Owns the embedded servers, the supervised processes and the figures of one run."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.jobs = root / "jobs"
        self.supervisor = Supervisor(root / "log", ready_timeout=90.0)
        self.postgres = EmbeddedPostgres(root / "postgres", free_port())
        self.nats = EmbeddedNats(root / "nats", free_port())
        self.loadgen: subprocess.Popen[bytes] | None = None
        self.admin_secret = secrets.token_urlsafe(24)
        self.env: dict[str, str] = {}
        self.results: dict[str, Any] = {
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
            "settings": {"connections": CONNECTIONS, "warmup_s": WARMUP, "duration_s": SECONDS},
            "generator_ceiling": None,
            "targets": {name: {} for name in TARGETS},
            "workflows": {name: {} for name in WORKFLOWS},
        }

    # -------------------------------------------------------------- lifecycle

    def wipe(self) -> None:
        """Stop whatever a crashed earlier run left behind, then start from an empty folder."""
        for name, module in PROCESSES:
            stop_orphan(self.root / "log" / f"{name}.pid", "-m", module, timeout=15.0)
        pg_dir, nats_dir = self.root / "postgres", self.root / "nats"
        stop_orphan(pg_dir / "postmaster.pid", "postgres", str(pg_dir), sig=signal.SIGINT)
        stop_orphan(nats_dir / "nats-server.pid", "nats-server", str(nats_dir))
        shutil.rmtree(self.root, ignore_errors=True)
        self.jobs.mkdir(parents=True)

    def start_infra(self) -> None:
        """Start PostgreSQL and NATS on fresh ports and fix the services' environment."""
        database_url = self.postgres.start()
        nats_url = self.nats.start()
        registry_port, gateway_port = free_port(), free_port()
        referrals_port, funds_port = free_port(), free_port()
        self.env = {
            "DATABASE_URL": database_url,
            "NATS_URL": nats_url,
            "KOMAR_DATA_DIR": str(self.root / "data"),
            "KOMAR_ADMIN_SECRET": self.admin_secret,
            "KOMAR_KEK": secrets.token_urlsafe(32),  # the gateway's key-encryption key
            "KOMAR_REGISTRY_PORT": str(registry_port),
            "KOMAR_GATEWAY_PORT": str(gateway_port),
            "KOMAR_REGISTRY_URL": f"http://127.0.0.1:{registry_port}",
            "KOMAR_REFERRALS_PORT": str(referrals_port),
            "KOMAR_REFERRALS_URL": f"http://127.0.0.1:{referrals_port}",
            "KOMAR_FUNDS_PORT": str(funds_port),
            "KOMAR_FUNDS_URL": f"http://127.0.0.1:{funds_port}",
            "KOMAR_JWKS_URL": f"http://127.0.0.1:{gateway_port}/.well-known/jwks.json",
            "KOMAR_LOG_LEVEL": "warning",
        }
        say(f"PostgreSQL {database_url}, NATS {nats_url}")

    def stop_all(self) -> None:
        """Stop the generator, every supervised process, NATS and PostgreSQL."""
        if self.loadgen is not None and self.loadgen.poll() is None:
            self.loadgen.kill()
            self.loadgen.wait()
        # Shutdown is not what is measured here: SIGKILL whatever has not stopped after 5 s.
        self.supervisor.stop_all(timeout=5.0)
        self.nats.stop()
        self.postgres.stop()

    def port(self, name: str) -> int:
        """The port of a supervised process."""
        port = self.supervisor.get(name).port
        assert port is not None
        return port

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

    # -------------------------------------------------------------- measuring

    def generate(
        self, label: str, job: dict[str, Any], watch: dict[str, list[int]]
    ) -> dict[str, Any]:
        """Run the generator process on `job`; its raw figures."""
        job = {
            "connections": CONNECTIONS,
            "warmup_s": WARMUP,
            "duration_s": SECONDS,
            "watch": watch,
            **job,
        }
        job_path, result_path = self.jobs / f"{label}.job.json", self.jobs / f"{label}.result.json"
        job_path.write_text(json.dumps(job))
        self.loadgen = subprocess.Popen(
            [sys.executable, "-m", "bench.loadgen", "run", str(job_path), str(result_path)],
            cwd=REPO_ROOT,
        )
        code = self.loadgen.wait(timeout=job["warmup_s"] + job["duration_s"] + 120)
        self.loadgen = None
        if code != 0:
            raise RuntimeError(f"load generator failed on {label} (exit code {code})")
        raw: dict[str, Any] = json.loads(result_path.read_text())
        return raw

    def drive(self, label: str, job: dict[str, Any], watch: dict[str, list[int]]) -> dict[str, Any]:
        """Run the generator on a single-request job; its figures and who used the CPU."""
        raw = self.generate(label, job, watch)
        ordered = sorted(raw["latencies_ms"])
        rps = raw["requests"] / raw["duration_s"]
        cores: dict[str, float] = raw["cores"]
        server = sum(cores[name] for name in watch)
        return {
            "rps": round(rps, 1),
            "p50_ms": round(_quantile(ordered, 0.50), 2),
            "p99_ms": round(_quantile(ordered, 0.99), 2),
            "requests": raw["requests"],
            "errors": raw["errors"],
            "statuses": raw["statuses"],
            "error_samples": raw["error_samples"],
            # Cores busy on average over the measured window, per process group.
            "cores": cores,
            # CPU time the serving side (gateway, app, PostgreSQL, NATS) spent per request:
            # unlike req/s, barely moved by whatever else runs on the machine.
            "server_cpu_ms_per_request": round(server / rps * 1000, 3) if rps else None,
            "ids": raw["ids"],
        }

    def calibrate(self) -> None:
        """The generator's own ceiling: GETs against a trivial raw-asyncio responder."""
        port = free_port()
        say("measuring the load generator's own ceiling")
        self.supervisor.start(
            "trivial", "bench.loadgen", "serve-trivial", env={"BENCH_PORT": str(port)}, port=port
        )
        try:
            figures = self.drive(
                "generator",
                {
                    "base_url": f"http://127.0.0.1:{port}",
                    "method": "GET",
                    "paths": ["/ping"],
                    "warmup_s": 1.0,
                    "duration_s": CALIBRATION_SECONDS,
                },
                {"responder": [self.pid("trivial")]},
            )
        finally:
            self.supervisor.stop("trivial")
        figures.pop("ids")
        self.results["generator_ceiling"] = figures
        say(f"generator ceiling: {figures['rps']:,.0f} req/s")

    def measure(
        self,
        target: str,
        base_url: str,
        collection: str,
        headers: dict[str, str],
        watch: dict[str, list[int]],
        seed: int,
    ) -> None:
        """Create, then read random created ids, against one target."""
        figures = self.results["targets"][target]
        say(f"{TARGETS[target]}: create")
        create = self.drive(
            f"{target}-create",
            {
                "base_url": base_url,
                "method": "POST",
                "paths": [collection],
                "bodies": child_bodies(BODIES_PER_TARGET, seed),
                "headers": headers,
                "expect": [201],
                "collect_ids": True,
            },
            watch,
        )
        ids = create.pop("ids")
        figures["create"] = create
        if not ids:
            raise RuntimeError(f"{target}: no record was created: {create['error_samples']}")
        say(f"{TARGETS[target]}: read ({len(ids)} ids to choose from)")
        read = self.drive(
            f"{target}-read",
            {
                "base_url": base_url,
                "method": "GET",
                "paths": [f"{collection}/{i}" for i in ids],
                "headers": headers,
                "expect": [200],
            },
            watch,
        )
        read.pop("ids")
        figures["read"] = read

    def run_ceiling(self) -> None:
        """(a): the bare app, alone on the machine with PostgreSQL."""
        port = free_port()
        env = {"DATABASE_URL": self.env["DATABASE_URL"], "BENCH_CEILING_PORT": str(port)}
        self.supervisor.start("ceiling", "bench.ceiling", env=env, port=port)
        try:
            self.measure(
                "ceiling",
                f"http://127.0.0.1:{port}",
                "/children",
                {},
                {"app": [self.pid("ceiling")], **self.infra_pids()},
                seed=1,
            )
        finally:
            self.supervisor.stop("ceiling")

    def start_platform(self) -> str:
        """Migrate and start the registry and the gateway; return a bench client's token."""
        say("migrating and starting the registry and the gateway")
        self.supervisor.run("registry-migrate", "services.registry", "migrate", env=self.env)
        self.supervisor.run("gateway-migrate", "gateway", "migrate", env=self.env)
        registry_port = int(self.env["KOMAR_REGISTRY_PORT"])
        gateway_port = int(self.env["KOMAR_GATEWAY_PORT"])
        self.supervisor.start("registry", "services.registry", env=self.env, port=registry_port)
        self.supervisor.start("gateway", "gateway", env=self.env, port=gateway_port)
        return self.bench_token(f"http://127.0.0.1:{gateway_port}")

    def bench_token(self, gateway: str) -> str:
        """Create a national registry client through the admin API and get its token."""
        with httpx.Client(base_url=gateway, timeout=30.0) as http:
            admin = _token(http, "admin", self.admin_secret)
            created = http.post(
                "/v1/admin/clients",
                headers={"Authorization": f"Bearer {admin}"},
                json={
                    "name": "bench",
                    "org": "bench-moswvy",
                    "org_type": "government",
                    "scopes": ["registry:read", "registry:write"],
                    "areas": ["KH"],
                    "rate_limit_per_second": 100_000,
                },
            )
            _check(created, "creating the bench client")
            client = created.json()
            return _token(http, client["client_id"], client["client_secret"])

    def run_services(self, token: str) -> None:
        """(b) the registry directly, then (c) through the gateway, one after the other."""
        headers = {"Authorization": f"Bearer {token}"}
        registry, gateway = self.pid("registry"), self.pid("gateway")
        infra = self.infra_pids()
        self.measure(
            "registry",
            self.env["KOMAR_REGISTRY_URL"],
            "/v1/registry/children",
            headers,
            {"app": [registry], **infra},
            seed=2,
        )
        self.measure(
            "gateway",
            f"http://127.0.0.1:{self.port('gateway')}",
            "/v1/registry/children",
            headers,
            {"gateway": [gateway], "app": [registry], **infra},
            seed=3,
        )

    # -------------------------------------------------------------- workflows

    def drive_workflow(
        self, label: str, job: dict[str, Any], watch: dict[str, list[int]]
    ) -> dict[str, Any]:
        """Run the generator on a workflow job; figures per workflow and per step."""
        raw = self.generate(label, job, watch)
        duration = raw["duration_s"]
        flow = raw["workflows"]
        ordered = sorted(flow["latencies_ms"])
        wps = flow["completed"] / duration
        step_rps = raw["requests"] / duration
        cores: dict[str, float] = raw["cores"]
        server = sum(cores[name] for name in watch)
        steps = {}
        samples = []
        for step in raw["steps"]:
            latencies = sorted(step["latencies_ms"])
            steps[step["name"]] = {
                "rps": round(step["requests"] / duration, 1),
                "p50_ms": round(_quantile(latencies, 0.50), 2),
                "p99_ms": round(_quantile(latencies, 0.99), 2),
                "requests": step["requests"],
                "errors": step["errors"],
                "statuses": step["statuses"],
                "error_samples": step["error_samples"],
            }
            samples += [f"{step['name']}: {sample}" for sample in step["error_samples"]]
        return {
            "workflows_per_s": round(wps, 1),
            "p50_ms": round(_quantile(ordered, 0.50), 2),
            "p99_ms": round(_quantile(ordered, 0.99), 2),
            "completed": flow["completed"],
            "failed": flow["failed"],
            "failed_at": flow["failed_at"],
            # Every step's request, answered inside the window.
            "step_rps": round(step_rps, 1),
            "requests": raw["requests"],
            "errors": raw["errors"],
            "error_samples": samples,
            "steps": steps,
            "cores": cores,
            # Serving CPU (gateway, the service, the other services' consumers, PostgreSQL,
            # NATS) per whole workflow, and per request of it.
            "server_cpu_ms_per_workflow": round(server / wps * 1000, 3) if wps else None,
            "server_cpu_ms_per_request": round(server / step_rps * 1000, 3) if step_rps else None,
        }

    def start_workflow_services(self) -> None:
        """Migrate and start the referrals and funds services (the gateway already routes to
        their ports)."""
        say("migrating and starting the referrals and funds services")
        self.supervisor.run("referrals-migrate", "services.referrals", "migrate", env=self.env)
        self.supervisor.run("funds-migrate", "services.funds", "migrate", env=self.env)
        for name in ("referrals", "funds"):
            port = int(self.env[f"KOMAR_{name.upper()}_PORT"])
            self.supervisor.start(name, f"services.{name}", env=self.env, port=port)

    def backlog(self, consumers: list[tuple[str, str]]) -> bool:
        """Whether the durable consumers have applied every event published so far."""
        return workflows.consumer_backlog(self.env["NATS_URL"], consumers) == 0

    def run_workflows(self) -> None:
        """(d) and (e): set both up through the gateway, then measure one after the other."""
        self.start_workflow_services()
        gateway = f"http://127.0.0.1:{self.port('gateway')}"
        count = CONNECTIONS * CHILDREN_PER_WORKER
        say(f"setting up the workflows: clients, providers, funds, {count} children")
        setup = workflows.set_up(
            gateway,
            self.admin_secret,
            child_bodies(count, seed=4),
            caught_up=lambda: self.backlog(workflows.CHILD_CONSUMERS),
            timeout=SETUP_TIMEOUT,
            say=lambda line: say(f"  set-up: {line}"),
        )
        self.results["workflow_setup_s"] = setup.seconds
        say(f"workflow set-up done in {setup.seconds:.0f} s")
        jobs: dict[str, dict[str, Any]] = {
            "referral": {"items": setup.referral_items, "tokens": setup.referral_tokens},
            "grant": {
                "items": setup.grant_items,
                "tokens": setup.grant_tokens,
                "partition_items": True,  # one open grant per child and category
            },
        }
        infra = self.infra_pids()
        for name, (label, service, steps) in WORKFLOWS.items():
            # Nothing left over from the set-up or the previous workflow: the registry has
            # applied every referral event (access follows referrals) before this one starts.
            workflows.wait_until(
                lambda: self.backlog(workflows.CHILD_CONSUMERS + workflows.REFERRAL_CONSUMERS),
                SETUP_TIMEOUT,
                "the consumers to catch up",
            )
            say(label)
            watch = {
                "gateway": [self.pid("gateway")],
                "app": [self.pid(service)],
                "services": [self.pid(s) for s in SERVICES if s != service],
                **infra,
            }
            try:
                figures = self.drive_workflow(
                    f"workflow-{name}",
                    {"base_url": gateway, "workflow": steps, **jobs[name]},
                    watch,
                )
            except Exception as exc:
                say(f"{label} failed: {exc}")
                self.results["workflows"][name] = {"error": str(exc).splitlines()[0]}
                continue
            self.results["workflows"][name] = figures
            say(
                f"{label}: {figures['workflows_per_s']:,.1f} workflows/s, "
                f"{figures['errors']} errors"
            )


def _check(response: httpx.Response, what: str) -> None:
    """Fail with the answer when a set-up call did not succeed."""
    if response.status_code >= 300:
        raise RuntimeError(f"{what}: HTTP {response.status_code}: {response.text[:500]}")


def _token(http: httpx.Client, client_id: str, secret: str) -> str:
    """An access token for a client (RFC 6749 client_credentials, secret in the form)."""
    response = http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    )
    _check(response, f"token for {client_id}")
    token: str = response.json()["access_token"]
    return token


# ------------------------------------------------------------------ report


def _rows(results: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every measured row (target x operation)."""
    for data in results["targets"].values():
        for op in ("create", "read"):
            if isinstance(data.get(op), dict):
                yield data[op]


def _workflow_rows(results: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every measured workflow."""
    for data in results.get("workflows", {}).values():
        if "steps" in data:
            yield data


def workflow_ratios(results: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """Per workflow: its request rate (every step's requests) over the ceiling's create rate,
    and the inverse ratio of serving CPU per request. Also stored on each step."""
    base = results["targets"]["ceiling"].get("create")
    out: dict[str, dict[str, float | None]] = {}
    for name, (label, _, _) in WORKFLOWS.items():
        data = results["workflows"].get(name, {})
        key = f"{label[1]}/a steps"  # "(d) referral…" -> "d/a steps"
        if not isinstance(base, dict) or not base["rps"] or "steps" not in data:
            out[key] = {"throughput": None, "cpu_cost": None}
            continue
        for step in data["steps"].values():
            step["ratio_to_ceiling_create"] = round(step["rps"] / base["rps"], 3)
        cost = data["server_cpu_ms_per_request"]
        out[key] = {
            "throughput": round(data["step_rps"] / base["rps"], 3),
            "cpu_cost": round(base["server_cpu_ms_per_request"] / cost, 3) if cost else None,
        }
        data["step_ratio_to_ceiling_create"] = out[key]["throughput"]
        data["cpu_ratio_to_ceiling_create"] = out[key]["cpu_cost"]
    return out


def ratios(targets: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """b/a, c/a (and c/b) per operation: by throughput, and by server CPU per request."""
    pairs = [("b/a", "registry", "ceiling"), ("c/a", "gateway", "ceiling")]
    pairs.append(("c/b", "gateway", "registry"))
    out: dict[str, dict[str, float | None]] = {}
    for name, top, base in pairs:
        for op in ("create", "read"):
            num, den = targets[top].get(op), targets[base].get(op)
            if not (isinstance(num, dict) and isinstance(den, dict)) or not den["rps"]:
                out[f"{name} {op}"] = {"throughput": None, "cpu_cost": None}
                continue
            cost = num["server_cpu_ms_per_request"]
            out[f"{name} {op}"] = {
                "throughput": round(num["rps"] / den["rps"], 3),
                # The inverse ratio of serving CPU per request: what the throughput ratio
                # would be on a machine where the serving side had all the CPU.
                "cpu_cost": round(den["server_cpu_ms_per_request"] / cost, 3) if cost else None,
            }
    return out


def report(results: dict[str, Any]) -> str:
    """The human-readable table."""
    lines = []
    gen = results["generator_ceiling"]
    s = results["settings"]
    lines.append(
        f"{results['machine']['cpus']} CPUs, {s['connections']} keep-alive connections, "
        f"{s['warmup_s']:g} s warm-up + {s['duration_s']:g} s measured per row"
    )
    if gen:
        lines.append(
            f"load generator ceiling (GET on a trivial responder): {gen['rps']:,.0f} req/s, "
            f"p50 {gen['p50_ms']:.2f} ms, using {gen['cores']['loadgen']:.2f} core"
        )
    lines.append("")
    header = (
        f"{'target':<30} {'op':<6} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6}"
        f" {'srv CPU':>8}   cores busy: gw / app / pg / nats / loadgen / other"
    )
    lines += [header, f"{'':<30} {'':<6} {'':>7} {'':>7} {'':>7} {'':>6} {'ms/req':>8}"]
    lines.append("-" * len(header))
    for target, label in TARGETS.items():
        data = results["targets"][target]
        for op in ("create", "read"):
            row = data.get(op)
            if row is None:
                reason = data.get("error", "not measured")
                lines.append(f"{label:<30} {op:<6} {'-':>7}   {reason[:80]}")
                continue
            cores = row["cores"]
            used = " / ".join(
                f"{cores[k]:.2f}" if k in cores else "  - "
                for k in ("gateway", "app", "postgres", "nats", "loadgen", "other")
            )
            lines.append(
                f"{label:<30} {op:<6} {row['rps']:>7,.0f} {row['p50_ms']:>7.1f} "
                f"{row['p99_ms']:>7.1f} {row['errors']:>6} "
                f"{row['server_cpu_ms_per_request']:>8.2f}   {used}"
            )
    lines += workflow_report(results)
    lines += ["", f"{'ratio':<11} {'req/s':>6} {'by CPU/req':>11}"]
    for name, value in results["ratios"].items():
        tput, cost = value["throughput"], value["cpu_cost"]
        note = ""
        if name.startswith("c/a"):
            verdict = "n/a" if tput is None else ("ok" if tput >= TARGET_RATIO else "BELOW")
            note = f"   target >= {TARGET_RATIO} (aim {AIM_RATIO}): {verdict}"
        shown = [f"{v:.2f}" if v is not None else "n/a" for v in (tput, cost)]
        if name.endswith(" steps"):
            note = "   every step's request over the ceiling's create"
        lines.append(f"{name:<11} {shown[0]:>6} {shown[1]:>11}{note}")
    lines.append(
        "by CPU/req: the ceiling's serving CPU per request over the target's (what req/s would "
        "give if\nthe serving side had the machine to itself); 'other' is CPU used by processes "
        "outside the bench"
    )
    measured = [*_rows(results), *_workflow_rows(results)]
    busiest = max((row["cores"]["other"] for row in measured), default=0.0)
    if busiest > BUSY_OTHER_CORES:
        lines.append(
            f"warning: processes outside the bench used up to {busiest:.2f} of "
            f"{results['machine']['cpus']} cores during a row;\nreq/s (and its ratios) are "
            "understated and noisy there, the CPU/req figures much less so"
        )
    fastest = max((row["rps"] for row in _rows(results)), default=0.0)
    fastest = max([fastest, *(row["step_rps"] for row in _workflow_rows(results))])
    if gen and fastest > 0.5 * gen["rps"]:
        lines.append(
            f"note: the fastest row ({fastest:,.0f} req/s) is over half the generator's "
            "ceiling: the generator may be part of the limit there"
        )
    return "\n".join(lines)


def workflow_report(results: dict[str, Any]) -> list[str]:
    """The workflows' part of the table: one line per workflow, then one per step."""
    if not results.get("workflows"):
        return []
    lines = ["", "workflows through the gateway, each worker running one after the other"]
    header = (
        f"{'workflow':<38} {'row':<10} {'per s':>6} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6}"
        f" {'srv CPU':>8} {'/ (a)':>6}   cores busy: gw / app / services / pg / nats / "
        "loadgen / other"
    )
    lines += [header, f"{'':<38} {'':<10} {'':>6} {'':>7} {'':>7} {'':>6} {'ms':>8} {'create':>6}"]
    lines.append("-" * len(header))
    for name, (label, _, _) in WORKFLOWS.items():
        data = results["workflows"].get(name, {})
        if "steps" not in data:
            reason = data.get("error", "not measured")
            lines.append(f"{label:<38} {'workflow':<10} {'-':>6}   {reason[:80]}")
            continue
        cores = data["cores"]
        used = " / ".join(
            f"{cores[k]:.2f}" if k in cores else "  - "
            for k in ("gateway", "app", "services", "postgres", "nats", "loadgen", "other")
        )
        cpu = data["server_cpu_ms_per_workflow"]
        lines.append(
            f"{label:<38} {'workflow':<10} {data['workflows_per_s']:>6,.1f} "
            f"{data['p50_ms']:>7.1f} {data['p99_ms']:>7.1f} {data['errors']:>6} "
            f"{_num(cpu, 8)} {'':>6}   {used}"
        )
        for index, (step, row) in enumerate(data["steps"].items(), 1):
            lines.append(
                f"{'':<38} {f'{index} {step}':<10} {row['rps']:>6,.1f} {row['p50_ms']:>7.1f} "
                f"{row['p99_ms']:>7.1f} {row['errors']:>6} {'':>8} "
                f"{_num(row.get('ratio_to_ceiling_create'), 6)}"
            )
        lines.append(
            f"{'':<38} {'all steps':<10} {data['step_rps']:>6,.1f} {'':>7} {'':>7} {'':>6} "
            f"{_num(data['server_cpu_ms_per_request'], 8)} "
            f"{_num(data.get('step_ratio_to_ceiling_create'), 6)}"
        )
    lines.append(
        "srv CPU: per workflow on its line, per request on 'all steps'; / (a) create: req/s "
        "over the ceiling's\ncreate req/s; 'services': the other Komar services (their event "
        "consumers)"
    )
    return lines


def _num(value: float | None, width: int) -> str:
    """A figure right-aligned in `width`, or n/a."""
    return f"{value:>{width}.2f}" if value is not None else f"{'n/a':>{width}}"


@contextmanager
def _terminate_as_exit() -> Iterator[None]:
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


def main() -> int:
    """Run every measurement, print the table, write var/bench/results.json."""
    bench = Bench(ROOT)
    failed = False
    started = time.monotonic()
    with _terminate_as_exit():
        bench.wipe()
        try:
            bench.start_infra()
            bench.calibrate()
            bench.run_ceiling()
            try:
                token = bench.start_platform()
                bench.run_services(token)
            except Exception as exc:
                failed = True
                say(f"registry/gateway measurement failed: {exc}")
                for target in ("registry", "gateway"):
                    bench.results["targets"][target].setdefault("error", str(exc).splitlines()[0])
            try:
                bench.run_workflows()
            except Exception as exc:
                failed = True
                say(f"workflow measurement failed: {exc}")
                for name in WORKFLOWS:
                    if not bench.results["workflows"][name]:
                        bench.results["workflows"][name] = {"error": str(exc).splitlines()[0]}
        finally:
            say("stopping every process")
            bench.stop_all()
    results = bench.results
    results["ratios"] = ratios(results["targets"]) | workflow_ratios(results)
    results["targets_ratio"] = {"c/a": TARGET_RATIO, "aim": AIM_RATIO}
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    (ROOT / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print()
    print(report(results))
    print(f"\nwritten to {ROOT / 'results.json'} in {results['elapsed_s']:.0f} s")
    print("indicators with 10k vs 1M children (seeding takes minutes): make bench-indicators")
    errors = sum(row["errors"] for row in [*_rows(results), *_workflow_rows(results)])
    missing = any("steps" not in data for data in results["workflows"].values())
    return 1 if failed or errors or missing else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["indicators"]:
        from bench import indicators

        sys.exit(indicators.main())
    sys.exit(main())
