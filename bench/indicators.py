"""`python -m bench indicators` (`make bench-indicators`): a month of indicators, 10k vs 1M.

The indicators service answers from pre-aggregated cells, so a pull should cost the same
whatever the number of children. This phase checks it: on its own PostgreSQL, NATS, gateway
and indicators service (fresh var/bench-indicators/, fresh ports) it
  1. seeds BENCH_INDICATORS_SMALL children (default 10,000) with
     `python -m services.indicators seed --rebuild` (services/indicators/seed.py): every
     event a registry, referrals and funds would publish (registered, updated, closed,
     referrals, grants; times over the last 24 months) goes onto the streams, and a replay
     into a new generation loads the aggregates, all with the indicators service stopped
     as the seed's docstring asks; VACUUM ANALYZE of the indicators tables (what
     autovacuum would do soon after such a load, done now so it does not run during the
     timed pulls); then starts the service;
  2. pulls, through the gateway, one after the other (1 warm-up + BENCH_INDICATORS_REPEATS,
     default 5, timed), for last month (complete, and inside the seeded months):
       - dataValueSets?dataSet=CP_MONTHLY&orgUnit=KH&children=true, with
         `indicators:read indicators:read:detail` (every value), and again with only
         `indicators:read` (small counts rounded to base 5);
       - values?indicator=CP_CASE_OPEN&area=KH&level=commune;
  3. grows the platform to BENCH_INDICATORS_LARGE children (default 1,000,000) the same
     way (the difference, with another random seed), and pulls the same again;
  4. prints both figures side by side with their ratio (target: the large median within
     2x of the small) and writes var/bench-indicators/results.json.

Not part of the default `make bench`: publishing and replaying a million children's events
(about two million) takes many minutes: about 11 on 2 cores (publishing ~3, replay ~5.5,
monthly stock cells ~0.6, the pulls ~1.5). Every process it started is stopped at the end,
also on an error or Ctrl-C. Exit status 1 when something failed (not for a ratio above the
target: that is a finding, printed as ABOVE). Note that seed.py's providers grow with the
children (one per 500, at most 2,000), and so does the CP_PROVIDERS part of a pull.

Environment: BENCH_INDICATORS_SMALL (10000), BENCH_INDICATORS_LARGE (1000000),
BENCH_INDICATORS_REPEATS (5).
The modules: this one starts things and times the pulls; indicators_seeding.py runs the
seed and settles the tables; indicators_figures.py holds the queries, the checks of their
answers and the table.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bench import indicators_seeding, workflows
from bench.cpu import cpu_snapshot, cpu_used
from bench.indicators_figures import (
    DETAIL,
    QUERIES,
    READ,
    SEED_MONTHS,
    TARGET_RATIO,
    answer_shape,
    check_data,
    ratio_rows,
    report,
)
from bench.infra import BenchInfra, machine, service_env, terminate_as_exit, write_results
from deploy.local.supervisor import REPO_ROOT
from services.indicators import dates

ROOT = REPO_ROOT / "var" / "bench-indicators"
SMALL = int(os.environ.get("BENCH_INDICATORS_SMALL", "10000"))
LARGE = int(os.environ.get("BENCH_INDICATORS_LARGE", "1000000"))
REPEATS = int(os.environ.get("BENCH_INDICATORS_REPEATS", "5"))
PULL_TIMEOUT_S = 300.0
# Before each query's pulls, wait up to QUIET_WAIT_S for the rest of the machine to use under
# QUIET_CORES (over QUIET_WINDOW_S): on a shared machine a test run elsewhere skews timings.
QUIET_CORES, QUIET_WINDOW_S, QUIET_WAIT_S = 0.25, 2.0, 120.0
# Processes the bench runs under the supervisor: (log name, module).
PROCESSES = [
    ("gateway-migrate", "gateway"),
    ("indicators-migrate", "services.indicators"),
    ("gateway", "gateway"),
    ("indicators", "services.indicators"),
    ("seed-small", "services.indicators"),
    ("seed-large", "services.indicators"),
]
CLIENTS = {
    DETAIL: ["indicators:read", "indicators:read:detail"],
    READ: ["indicators:read"],
}


def say(message: str) -> None:
    """Print a progress line."""
    print(f"bench-indicators | {message}", flush=True)


class IndicatorsBench(BenchInfra):
    """The infrastructure, the clients and the figures of one run."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, PROCESSES, ready_timeout=120.0, stop_timeout=10.0)
        self.clients: dict[str, tuple[str, str]] = {}  # kind -> (client id, secret)
        month = dates.current_month() - 1  # last month: complete, and inside the seeded span
        self.period = dates.month_code(month)
        self.results: dict[str, Any] = {
            "machine": machine(),
            "settings": {
                "small": SMALL,
                "large": LARGE,
                "repeats": REPEATS,
                "warmup": 1,
                "period": self.period,
                "seed_months": SEED_MONTHS,
                "target_ratio": TARGET_RATIO,
            },
            "queries": {
                name: {"label": label, "path": path.format(period=self.period), "client": who}
                for name, (label, path, who) in QUERIES.items()
            },
            "sizes": {},
        }

    # -------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """PostgreSQL and NATS on fresh ports; migrate; start the gateway; create the clients."""
        say(self.start_infra(service_env("indicators")))
        self.supervisor.run("gateway-migrate", "gateway", "migrate", env=self.env)
        self.supervisor.run("indicators-migrate", "services.indicators", "migrate", env=self.env)
        gateway_port = int(self.env["KOMAR_GATEWAY_PORT"])
        self.supervisor.start("gateway", "gateway", env=self.env, port=gateway_port)
        with httpx.Client(base_url=self.gateway, timeout=30.0) as http:
            admin = workflows.token(http, "admin", self.admin_secret)
            for kind, scopes in CLIENTS.items():
                created = workflows.create_client(
                    http,
                    admin,
                    f"bench-indicators-{kind}",
                    "bench-moswvy",
                    "government",
                    scopes,
                    ["KH"],
                    1000,
                )
                self.clients[kind] = (created["client_id"], created["client_secret"])

    def tokens(self) -> dict[str, str]:
        """Fresh access tokens of both clients (they live 15 minutes)."""
        with httpx.Client(base_url=self.gateway, timeout=30.0) as http:
            return {kind: workflows.token(http, *pair) for kind, pair in self.clients.items()}

    def start_service(self) -> None:
        """Start the indicators service and wait until its consumers have nothing pending."""
        port = int(self.env["KOMAR_INDICATORS_PORT"])
        if "indicators" in self.supervisor.names():
            self.supervisor.restart("indicators")
        else:
            self.supervisor.start("indicators", "services.indicators", env=self.env, port=port)
        consumers = [
            (stream, durable)
            for stream, (durable, _) in indicators_seeding.indicators_consumers().items()
        ]
        workflows.wait_until(
            lambda: workflows.consumer_backlog(self.env["NATS_URL"], consumers) == 0,
            120.0,
            "the indicators consumers to have nothing pending",
        )

    def stop_service(self) -> None:
        """The seed's rebuild runs with the indicators service stopped."""
        if "indicators" in self.supervisor.names() and self.supervisor.is_running("indicators"):
            self.supervisor.stop("indicators")

    # -------------------------------------------------------------- seeding

    def seed(self, name: str, children: int, seed_value: int) -> dict[str, Any]:
        """Stop the indicators service and seed `children` more (bench/indicators_seeding.py)."""
        self.stop_service()
        return indicators_seeding.seed(self.supervisor, self.env, name, children, seed_value, say)

    # -------------------------------------------------------------- measuring

    def measure(self, children: int) -> dict[str, Any]:
        """Every query: one warm-up, then REPEATS timed pulls one after the other."""
        tokens = self.tokens()
        watch = {
            "indicators": [self.pid("indicators")],
            "gateway": [self.pid("gateway")],
            **self.infra_pids(),
        }
        figures: dict[str, Any] = {}
        bodies: dict[str, bytes] = {}
        with httpx.Client(base_url=self.gateway, timeout=PULL_TIMEOUT_S) as http:
            status = workflows.check(
                http.get(
                    "/v1/indicators/status",
                    headers={"Authorization": f"Bearer {tokens[READ]}"},
                ),
                "indicators status",
            )
            for name, (label, template, who) in QUERIES.items():
                path = template.format(period=self.period)
                headers = {"Authorization": f"Bearer {tokens[who]}", "Accept": "application/json"}
                _pull(http, path, headers, f"{label} (warm-up)")
                other_before = _wait_quiet(watch)
                seconds: list[float] = []
                cpu: dict[str, list[float]] = {k: [] for k in [*watch, "other"]}
                body = b""
                for _ in range(REPEATS):
                    before = cpu_snapshot(watch, "self")
                    started = time.perf_counter()
                    body = _pull(http, path, headers, label)
                    elapsed = time.perf_counter() - started
                    after = cpu_snapshot(watch, "self")
                    seconds.append(elapsed)
                    used = cpu_used(before, after)
                    for k in cpu:
                        cpu[k].append(used[k])
                bodies[name] = body
                figures[name] = {
                    "seconds": [round(s, 4) for s in seconds],
                    "min_s": round(min(seconds), 4),
                    "median_s": round(statistics.median(seconds), 4),
                    "max_s": round(max(seconds), 4),
                    "bytes": len(body),
                    # CPU seconds per pull (median), per process group; 'other': the rest
                    # of the machine (not this bench) during the pull.
                    "cpu_s": {k: round(statistics.median(v), 3) for k, v in cpu.items()},
                    "other_cores_before": other_before,
                    **answer_shape(name, body),
                }
                row = figures[name]
                say(
                    f"  {label}: median {row['median_s']:.3f} s "
                    f"(min {row['min_s']:.3f}, max {row['max_s']:.3f}), "
                    f"{row['bytes'] / 1e6:.1f} MB, {row['rows']:,} rows"
                )
        checks = check_data(self.period, children, bodies)
        say(f"  data: {checks['summary']}")
        return {
            "children": children,
            "status": {
                "generation": status.get("generation"),
                "stocks_through": status.get("stocks_through"),
                "streams": [
                    {k: s.get(k) for k in ("stream", "last_sequence", "lag")}
                    for s in status.get("streams", [])
                ],
            },
            "queries": figures,
            "checks": checks,
        }


# ------------------------------------------------------------------ helpers


def _pull(http: httpx.Client, path: str, headers: dict[str, str], what: str) -> bytes:
    """One GET, read to its end; fail unless it answered 200."""
    response = http.get(path, headers=headers)
    if response.status_code != 200:
        raise RuntimeError(f"{what}: HTTP {response.status_code}: {response.text[:300]}")
    return response.content


def _wait_quiet(watch: dict[str, list[int]]) -> float:
    """Wait until processes outside the bench use under QUIET_CORES; the last reading."""
    deadline = time.monotonic() + QUIET_WAIT_S
    while True:
        before, started = cpu_snapshot(watch, "self"), time.monotonic()
        time.sleep(QUIET_WINDOW_S)
        after, elapsed = cpu_snapshot(watch, "self"), time.monotonic() - started
        other = cpu_used(before, after)["other"] / elapsed
        if other < QUIET_CORES or time.monotonic() > deadline:
            if other >= QUIET_CORES:
                say(f"  the machine stays busy elsewhere ({other:.2f} cores): timing anyway")
            return round(other, 3)


def main() -> int:
    """Seed the small platform, measure, grow it to the large one, measure; report."""
    if not 0 < SMALL < LARGE:
        print("need 0 < BENCH_INDICATORS_SMALL < BENCH_INDICATORS_LARGE", file=sys.stderr)
        return 2
    bench = IndicatorsBench(ROOT)
    failed = False
    started = time.monotonic()
    sizes = bench.results["sizes"]
    with terminate_as_exit():
        bench.wipe()
        try:
            bench.start()
            for key, children, added, seed_value in (
                ("small", SMALL, SMALL, 1),
                ("large", LARGE, LARGE - SMALL, 2),
            ):
                sizes[key] = {"children": children}
                say(f"seeding {added:,} children ({children:,} in all): events onto the streams")
                seed = bench.seed(f"seed-{key}", added, seed_value)
                sizes[key]["seed"] = seed
                say(
                    f"seeded in {seed['wall_s']:.0f} s: {seed.get('events', 0):,} events "
                    f"published in {seed.get('publish_s', 0):.0f} s, aggregates rebuilt in "
                    f"{seed.get('rebuild_s') or 0:.0f} s"
                )
                seed["settle_s"] = indicators_seeding.settle(bench.env["DATABASE_URL"])
                say(f"VACUUM ANALYZE of the indicators tables: {seed['settle_s']:.0f} s")
                bench.start_service()
                say(f"pulling {bench.period} with {children:,} children")
                sizes[key] |= bench.measure(children)
        except Exception as exc:
            failed = True
            say(f"failed: {exc}")
            bench.results["error"] = str(exc)[:2000]
        finally:
            say("stopping every process")
            bench.stop_all()
    results = bench.results
    if "small" in sizes and "large" in sizes:
        results["ratios"] = ratio_rows(sizes["small"], sizes["large"])
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    write_results(ROOT, results, report(results))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
