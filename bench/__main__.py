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

Environment: BENCH_SECONDS, BENCH_WARMUP, BENCH_CONNECTIONS (bench/measure.py).
The modules: infra.py starts things, children.py makes the workload, measure.py runs the
load generator and draws the figures, report.py turns them into ratios and the table.
loadgen.py is the generator process (templates.py fills its workflow steps, trivial.py is
the responder that measures its ceiling, cpu.py reads who used the CPU).

`python -m bench indicators` (`make bench-indicators`, bench/indicators.py) is a separate
phase, not run here: a month of indicators pulled with 10,000 and with 1,000,000 children,
whose seeding takes many minutes.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from bench import workflows
from bench.children import child_bodies
from bench.infra import BenchInfra, machine, service_env, terminate_as_exit, write_results
from bench.measure import (
    CONNECTIONS,
    SECONDS,
    WARMUP,
    LoadGenerator,
    request_figures,
    workflow_figures,
)
from bench.report import (
    AIM_RATIO,
    TARGET_RATIO,
    TARGETS,
    WORKFLOWS,
    ratios,
    report,
    rows,
    workflow_ratios,
    workflow_rows,
)
from deploy.local.infra import free_port
from deploy.local.supervisor import REPO_ROOT

ROOT = REPO_ROOT / "var" / "bench"
CALIBRATION_SECONDS = 3.0
BODIES_PER_TARGET = 8192
CHILDREN_PER_WORKER = 16  # children registered for the workflows, per connection
SETUP_TIMEOUT = 180.0  # for the referrals and funds services to learn the children
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
SERVICES = ["registry", "referrals", "funds"]


def say(message: str) -> None:
    """Print a progress line."""
    print(f"bench | {message}", flush=True)


class Bench(BenchInfra):
    """The infrastructure, the load generator and the figures of one run."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, PROCESSES, ready_timeout=90.0, stop_timeout=5.0)
        self.jobs = root / "jobs"
        self.loadgen = LoadGenerator(self.jobs)
        self.results: dict[str, Any] = {
            "machine": machine(),
            "settings": {"connections": CONNECTIONS, "warmup_s": WARMUP, "duration_s": SECONDS},
            "generator_ceiling": None,
            "targets": {name: {} for name in TARGETS},
            "workflows": {name: {} for name in WORKFLOWS},
        }

    # -------------------------------------------------------------- lifecycle

    def wipe(self) -> None:
        """Start from an empty folder, with a place for the generator's jobs."""
        super().wipe()
        self.jobs.mkdir()

    def start(self) -> None:
        """Start PostgreSQL and NATS on fresh ports and fix the services' environment."""
        services = service_env("registry") | service_env("referrals") | service_env("funds")
        say(self.start_infra(services))

    def stop_all(self) -> None:
        """Stop the generator, every supervised process, NATS and PostgreSQL (shutdown is not
        what is measured here: SIGKILL whatever has not stopped after 5 s)."""
        self.loadgen.kill()
        super().stop_all()

    # -------------------------------------------------------------- measuring

    def drive(self, label: str, job: dict[str, Any], watch: dict[str, list[int]]) -> dict[str, Any]:
        """Run the generator on a single-request job; its figures and who used the CPU."""
        return request_figures(self.loadgen.run(label, job, watch), watch)

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
        return self.bench_token(self.gateway)

    def bench_token(self, gateway: str) -> str:
        """Create a national registry client through the admin API and get its token."""
        platform = workflows.Platform(gateway, self.admin_secret)
        try:
            return platform.client(
                "bench", "bench-moswvy", "government", ["registry:read", "registry:write"], ["KH"]
            )
        finally:
            platform.close()

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
            self.gateway,
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
        return workflow_figures(self.loadgen.run(label, job, watch), watch)

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
        gateway = self.gateway
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


def main() -> int:
    """Run every measurement, print the table, write var/bench/results.json."""
    bench = Bench(ROOT)
    failed = False
    started = time.monotonic()
    with terminate_as_exit():
        bench.wipe()
        try:
            bench.start()
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
    write_results(ROOT, results, report(results))
    print("indicators with 10k vs 1M children (seeding takes minutes): make bench-indicators")
    errors = sum(row["errors"] for row in [*rows(results), *workflow_rows(results)])
    missing = any("steps" not in data for data in results["workflows"].values())
    return 1 if failed or errors or missing else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["indicators"]:
        from bench import indicators

        sys.exit(indicators.main())
    sys.exit(main())
