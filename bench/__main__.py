"""`python -m bench` (`make bench`): the whole platform against a bare ceiling, in one run.

The load generator runs in its own process (bench/loadgen.py). First, alone on the machine
with PostgreSQL:
  (a) ceiling   FastAPI + asyncpg, one INSERT / one SELECT (bench/ceiling.py)
then the whole platform as `make run` runs it (bench/platform.py: every service, every
consumer, the gateway), every scenario through the gateway and each counted only once every
durable consumer has applied its events (bench/scenarios.py):
  spread        registrations spread over every commune: accepted and *sustained* (children
                / time until the last event is applied everywhere); then reads by id
  crowded       registrations into one commune already holding 20,000 children
  workflows     referral create + accept, grant request + approve + disburse, a casework
                visit, per step (bench/workflows.py), the consumers' catch-up counted
  lag           commit-to-applied lag per consumer, p50/p99, registrations paced at 80 % of
                the spread maximum (the services' komar_events_lag_seconds histogram)
  webhooks      deliveries to a local receiver: commit-to-delivered lag p50/p99 under paced
                registrations, and a burst's delivery rate (bench/webhooks.py)
  bulk          100,000 children through children:batch from one client, children/s
  memory        peak RSS per process
Prints a table with every ratio to (a) and writes everything to var/bench/results.json.

Environment: BENCH_SECONDS, BENCH_WARMUP, BENCH_CONNECTIONS (bench/measure.py),
BENCH_CROWDED_CHILDREN, BENCH_BULK_CHILDREN (bench/scenarios.py); BENCH_SMALL=1 shrinks every
scenario for a try. `python -m bench indicators` (`make bench-indicators`, bench/indicators.py)
is a separate phase; `python -m bench capacity` the national capacity plan from the last
run's figures (bench/capacity.py); `python -m bench.soak` (`make soak`) the soak run
(bench/soak.py).
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import scenarios, webhooks, workflows
from bench.children import child_bodies
from bench.infra import machine, terminate_as_exit, write_results
from bench.measure import (
    CONNECTIONS,
    SECONDS,
    SMALL,
    WARMUP,
    request_figures,
    workflow_figures,
)
from bench.platform import WholePlatform, memory_mib
from bench.report import WORKFLOWS, ratios, report
from deploy.local.infra import free_port
from deploy.local.supervisor import REPO_ROOT
from libs.common import clock

ROOT = REPO_ROOT / "var" / "bench"
CALIBRATION_SECONDS = 3.0
CHILDREN_PER_WORKER = 16  # children registered for the workflows, per connection
SETUP_TIMEOUT = 600.0  # for the referrals and funds services to learn the children
EXTRA = [("trivial", "bench.loadgen"), ("ceiling", "bench.ceiling")]


def say(message: str) -> None:
    """Print a progress line."""
    print(f"bench | {message}", flush=True)


class Bench(WholePlatform):
    """The infrastructure, the load generator and the figures of one run."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, EXTRA, ready_timeout=120.0)
        self.results: dict[str, Any] = {
            "machine": machine(),
            "settings": {
                "connections": CONNECTIONS,
                "warmup_s": WARMUP,
                "duration_s": SECONDS,
                "small": SMALL,
                "crowded_children": scenarios.CROWDED_CHILDREN,
                "bulk_children": scenarios.BULK_CHILDREN,
            },
            "generator_ceiling": None,
            "ceiling": {},
            "spread": {},
            "workflows": {name: {} for name in WORKFLOWS},
        }

    def platform_progress_size(self, stream: str) -> int:
        """The stream's last sequence now."""
        return self.stream_sizes()[stream]

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
            job = {
                "base_url": f"http://127.0.0.1:{port}",
                "paths": ["/ping"],
                "warmup_s": 1.0,
                "duration_s": CALIBRATION_SECONDS,
            }
            figures = self.drive("generator", job, {"responder": [self.pid("trivial")]})
        finally:
            self.supervisor.stop("trivial")
        figures.pop("ids")
        self.results["generator_ceiling"] = figures
        say(f"generator ceiling: {figures['rps']:,.0f} req/s")

    def create_then_read(
        self, label: str, base_url: str, collection: str, watch: dict[str, list[int]]
    ) -> dict[str, Any]:
        """The ceiling: create, then read random created ids."""
        job: dict[str, Any] = {"base_url": base_url, "paths": [collection]}
        say(f"{label}: create")
        create = self.drive(
            f"{label}-create",
            job
            | {"method": "POST", "bodies": child_bodies(8192, 1), "expect": [201]}
            | {"collect_ids": True},
            watch,
        )
        ids = create.pop("ids")
        if not ids:
            raise RuntimeError(f"{label}: no record was created: {create['error_samples']}")
        say(f"{label}: read ({len(ids)} ids to choose from)")
        read = self.drive(
            f"{label}-read", job | {"paths": [f"{collection}/{i}" for i in ids]}, watch
        )
        read.pop("ids")
        return {"create": create, "read": read}

    def run_ceiling(self) -> None:
        """The bare app, alone on the machine with PostgreSQL."""
        port = free_port()
        env = {"DATABASE_URL": self.env["DATABASE_URL"], "BENCH_CEILING_PORT": str(port)}
        self.supervisor.start("ceiling", "bench.ceiling", env=env, port=port)
        try:
            watch = {"app": [self.pid("ceiling")], **self.infra_pids()}
            base = f"http://127.0.0.1:{port}"
            self.results["ceiling"] = self.create_then_read("ceiling", base, "/children", watch)
        finally:
            self.supervisor.stop("ceiling")

    def bench_client(self) -> None:
        """A national registry client through the admin API."""
        platform = workflows.Platform(self.gateway, self.admin_secret)
        try:
            scopes = ["registry:read", "registry:write"]
            value = platform.client("bench", "bench-moswvy", "government", scopes, ["KH"])
            self.credentials = platform.credentials[value]
            value = platform.client(
                "bench-ministry", "bench-moswvy", "government", ["indicators:read"], ["KH"]
            )
            self.reader_credentials = platform.credentials[value]
        finally:
            platform.close()

    def token(self) -> str:
        """A fresh token of the bench's client (tokens live 15 minutes, a run longer)."""
        return workflows.fresh_token(self.gateway, self.credentials)

    def run_spread(self, token: str) -> None:
        say("spread: registrations through the gateway, then the consumers' catch-up")
        figures = scenarios.spread(self, token)
        say(f"  accepted {figures['rps']:,.0f}/s, sustained {figures['sustained_rps']}/s")
        watch = self.watch("registry")
        ids = [c["id"] for c in self._some_children(token)]
        say("spread: reads by id through the gateway")
        headers = {"Authorization": f"Bearer {token}"}
        paths = [f"{scenarios.COLLECTION}/{i}" for i in ids]
        read = self.drive(
            "spread-read", {"base_url": self.gateway, "paths": paths, "headers": headers}, watch
        )
        read.pop("ids")
        say("spread: name searches through the gateway")
        names = sorted({body["given_name"] for body in child_bodies(8192, seed=3)})
        search = self.drive(
            "spread-search",
            {
                "base_url": self.gateway,
                "paths": [f"{scenarios.COLLECTION}?q={name}&limit=20" for name in names],
                "headers": headers,
            },
            watch,
        )
        search.pop("ids")
        self.results["spread"] = {"create": figures, "read": read, "search": search}

    def run_indicator_pulls(self) -> None:
        """A dashboard's pulls: this month's value of an indicator in every province."""
        token = workflows.fresh_token(self.gateway, self.reader_credentials)
        month = dt.datetime.now(clock.CAMBODIA).strftime("%Y%m")
        codes = ("CP_CHILD_REG", "CP_CASE_OPEN", "CP_REF_MADE", "CP_GRANT_APPROVED")
        say("indicator pulls through the gateway (every province, this month)")
        job = {
            "base_url": self.gateway,
            "paths": [
                f"/v1/indicators/values?indicator={code}&period={month}&area=KH&level=province"
                for code in codes
            ],
            "headers": {"Authorization": f"Bearer {token}"},
        }
        pulls = self.drive("indicator-pulls", job, self.watch("indicators"))
        pulls.pop("ids")
        self.results["indicator_pulls"] = pulls

    def _some_children(self, token: str) -> list[dict[str, Any]]:
        import httpx

        with httpx.Client(base_url=self.gateway, timeout=60.0) as http:
            answer = http.get(
                scenarios.COLLECTION,
                params={"limit": 500},
                headers={"Authorization": f"Bearer {token}"},
            )
        items: list[dict[str, Any]] = workflows.check(answer, "listing children")["items"]
        return items

    def run_workflows(self) -> None:
        """Each workflow through the gateway, counted until the consumers caught up."""
        count = CONNECTIONS * CHILDREN_PER_WORKER
        say(f"setting up the workflows: clients, providers, funds, {count} children")
        setup = workflows.set_up(
            self.gateway,
            self.admin_secret,
            child_bodies(count, seed=4),
            caught_up=self.caught_up,
            timeout=SETUP_TIMEOUT,
            say=lambda line: say(f"  set-up: {line}"),
        )
        self.results["workflow_setup_s"] = setup.seconds
        jobs: dict[str, dict[str, Any]] = {
            "referral": {"items": setup.referral_items, "tokens": setup.referral_tokens},
            "grant": {
                "items": setup.grant_items,
                "tokens": setup.grant_tokens,
                "partition_items": True,  # one open grant per child and category
            },
            "visit": {"items": setup.visit_items, "tokens": setup.visit_tokens},
        }
        for name, (label, service, steps) in WORKFLOWS.items():
            self.wait_caught_up(SETUP_TIMEOUT)
            say(label)
            watch = self.watch(service)
            try:
                job = {"base_url": self.gateway, "workflow": steps, **jobs[name]}
                raw = self.loadgen.run(f"workflow-{name}", job, watch)
                figures = workflow_figures(raw, watch)
                caught_up = self.wait_caught_up(scenarios.CATCH_UP_TIMEOUT)
            except Exception as exc:
                say(f"{label} failed: {exc}")
                self.results["workflows"][name] = {"error": str(exc).splitlines()[0]}
                continue
            catch_up = max(0.0, caught_up - figures["ended_at"])
            figures["catch_up_s"] = round(catch_up, 2)
            # Requests of the window over the window plus the catch-up after it.
            figures["sustained_step_rps"] = round(figures["requests"] / (SECONDS + catch_up), 1)
            self.results["workflows"][name] = figures
            say(
                f"{label}: {figures['workflows_per_s']:,.1f} workflows/s, "
                f"{figures['errors']} errors, catch-up {catch_up:.1f} s"
            )

    def memory(self) -> None:
        pids = {name: [pid] for name, pid in self.component_pids().items()}
        self.results["memory"] = memory_mib(pids | self.infra_pids())
        self.results["storage"] = self.storage()


def step(name: str, action: Callable[[], None], failures: list[str]) -> None:
    """Run one scenario; a failure is recorded and the run goes on."""
    try:
        action()
    except Exception as exc:
        failures.append(f"{name}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
        say(f"{name} failed: {failures[-1]}")


def main() -> int:
    """Run every measurement, print the table, write var/bench/results.json."""
    bench = Bench(ROOT)
    failures: list[str] = []
    started = time.monotonic()
    results = bench.results
    with terminate_as_exit():
        bench.wipe()
        try:
            say(bench.start())
            bench.calibrate()
            bench.run_ceiling()
            say("migrating and starting the whole platform")
            bench.start_platform(say)
            bench.bench_client()
            step("spread", lambda: bench.run_spread(bench.token()), failures)
            step(
                "crowded",
                lambda: results.update(crowded=scenarios.crowded(bench, bench.token(), say)),
                failures,
            )
            step("workflows", bench.run_workflows, failures)
            step("indicator pulls", bench.run_indicator_pulls, failures)
            # The maximum the whole platform sustains (its consumers keeping up), not what the
            # gateway accepts for a while: paced above it, the consumers fall behind by design.
            spread_max = results["spread"].get("create", {}).get("sustained_rps", 0.0)
            if spread_max:
                say(f"event lag at {scenarios.LAG_LOAD:.0%} of {spread_max:,.0f} sustained/s")
                step(
                    "lag",
                    lambda: results.update(lag=scenarios.lag(bench, bench.token(), spread_max)),
                    failures,
                )
                step(
                    "webhooks",
                    lambda: results.update(
                        webhooks=webhooks.measure(bench, bench.token(), spread_max, say)
                    ),
                    failures,
                )
            step(
                "bulk",
                lambda: results.update(bulk=scenarios.bulk(bench, bench.token(), say)),
                failures,
            )
            bench.memory()
        finally:
            say("stopping every process")
            bench.stop_all()
    results["failures"] = failures
    results["ratios"] = ratios(results)
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    write_results(ROOT, results, report(results))
    print("indicators with 10k vs 1M children (seeding takes minutes): make bench-indicators")
    errors = sum(
        row.get("errors", 0)
        for row in [
            *results["ceiling"].values(),
            *results["spread"].values(),
            results.get("indicator_pulls", {}),
        ]
        if isinstance(row, dict)
    ) + sum(w.get("errors", 0) for w in results["workflows"].values())
    missing = any("steps" not in data for data in results["workflows"].values())
    return 1 if failures or errors or missing else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["capacity"]:
        from bench import capacity

        sys.exit(capacity.main())
    if sys.argv[1:2] == ["indicators"]:
        from bench import indicators

        sys.exit(indicators.main())
    sys.exit(main())
