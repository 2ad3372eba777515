"""The whole platform as `make run` runs it, for the bench and the soak: every service and
the gateway started the way deploy/local starts them (its component list, environment and
per-process settings), and what a run reads from it: how far every durable consumer has
applied its stream, the services' /metrics, and memory per process from /proc."""

from __future__ import annotations

import asyncio
import math
import os
import re
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.cpu import tree_cpu_seconds
from bench.infra import BenchInfra
from bench.measure import LoadGenerator
from deploy.local.__main__ import COMPONENTS, component_env, replica_env, replica_layout
from deploy.local.infra import free_port

SERVICES = [name for name, _, _, _ in COMPONENTS if name != "gateway"]
# Everything a run may start under the supervisor: (log name, module).
PROCESSES = [(f"{name}-migrate", module) for name, module, _, _ in COMPONENTS] + [
    (name, module) for name, module, _, _ in COMPONENTS
]
# Every durable consumer of the platform: (stream, durable, subject filter), as
# services/*/app.py, handlers.py and the indicators' jetstream.py declare them.
CONSUMERS: list[tuple[str, str, str]] = [
    ("REGISTRY", "referrals-children", "registry.child.>"),
    ("REGISTRY", "funds-children", "registry.child.>"),
    ("REGISTRY", "indicators-registry", "registry.>"),
    ("REFERRALS", "registry-referral-access", "referrals.referral.>"),
    ("REFERRALS", "funds-referral-shares", "referrals.referral.>"),
    ("REFERRALS", "indicators-referrals", "referrals.>"),
    ("FUNDS", "indicators-funds", "funds.>"),
    ("REGISTRY", "webhooks-registry", "registry.child.>"),
    ("REFERRALS", "webhooks-referrals", "referrals.referral.>"),
    ("FUNDS", "webhooks-funds", "funds.grant.>"),
    ("CASEWORK", "webhooks-casework", "casework.>"),
    ("REGISTRY", "casework-children", "registry.child.>"),
    ("REFERRALS", "casework-referrals", "referrals.referral.>"),
    ("CASEWORK", "indicators-casework", "casework.>"),
    ("CASEWORK", "registry-worker-accounts", "casework.worker.>"),
    ("CASEWORK", "registry-assignments", "casework.assignment.>"),
]
# The handlers each consumer applies (`module:attribute`; the indicators' by stream). A
# message of any other type under its filter is acknowledged without an inbox row (a
# casework.worker.* event to webhooks-casework, referrals.referral.unmatched.v1 to the
# referral shares), so only the types handled are counted against its inbox.
HANDLERS: dict[str, str] = {
    "referrals-children": "services.referrals.handlers:CHILD_HANDLERS",
    "funds-children": "services.funds.handlers:CHILD_HANDLERS",
    "registry-referral-access": "services.registry.handlers:REFERRAL_HANDLERS",
    "funds-referral-shares": "services.funds.handlers:REFERRAL_HANDLERS",
    "webhooks-registry": "services.webhooks.handlers:CHILD_HANDLERS",
    "webhooks-referrals": "services.webhooks.handlers:REFERRAL_HANDLERS",
    "webhooks-funds": "services.webhooks.handlers:GRANT_HANDLERS",
    "webhooks-casework": "services.webhooks.handlers:CASEWORK_HANDLERS",
    "casework-children": "services.casework.handlers:CHILD_HANDLERS",
    "casework-referrals": "services.casework.handlers:REFERRAL_HANDLERS",
    "registry-worker-accounts": "services.registry.handlers:WORKER_HANDLERS",
    "registry-assignments": "services.registry.handlers:ASSIGNMENT_HANDLERS",
}


def handled_types(stream: str, durable: str) -> frozenset[str]:
    """The event types a consumer applies (each event's type is its subject)."""
    import importlib

    if durable.startswith("indicators-"):
        from services.indicators.handlers import STREAM_HANDLERS

        return frozenset(STREAM_HANDLERS[stream][2])
    module, attribute = HANDLERS[durable].split(":")
    return frozenset(getattr(importlib.import_module(module), attribute))


# Which service (and schema) each consumer belongs to: its name's first word.
STREAMS = ["REGISTRY", "REFERRALS", "FUNDS", "CASEWORK"]
LAG_METRIC = "komar_events_lag_seconds"


class WholePlatform(BenchInfra):
    """PostgreSQL, NATS, every service and the gateway on fresh ports."""

    def __init__(self, root: Path, extra: list[tuple[str, str]], ready_timeout: float) -> None:
        super().__init__(root, extra + PROCESSES, ready_timeout=ready_timeout, stop_timeout=10.0)
        self.jobs = root / "jobs"
        self.loadgen = LoadGenerator(self.jobs)

    def wipe(self) -> None:
        """Start from an empty folder, with a place for the generator's jobs."""
        super().wipe()
        self.jobs.mkdir()

    def stop_all(self) -> None:
        """Stop the generator, every supervised process, NATS and PostgreSQL."""
        self.loadgen.kill()
        super().stop_all()

    def start(self) -> str:
        """Start PostgreSQL and NATS; fix every component's environment as deploy/local does
        (a free port each). Returns a line saying where the servers run."""
        where = self.start_infra({})
        ports = {name: free_port() for name, _, _, _ in COMPONENTS}
        ports["gateway"] = int(self.env["KOMAR_GATEWAY_PORT"])
        env = component_env(
            ports,
            database_url=self.env["DATABASE_URL"],
            nats_url=self.env["NATS_URL"],
            data_dir=self.root / "data",
            admin_secret=self.admin_secret,
            kek=self.env["KOMAR_KEK"],
        )
        self.env |= env
        # make run's log level (info, one access line per request) unless BENCH_LOG_LEVEL.
        self.env.pop("KOMAR_LOG_LEVEL", None)
        if os.environ.get("BENCH_LOG_LEVEL"):
            self.env["KOMAR_LOG_LEVEL"] = os.environ["BENCH_LOG_LEVEL"]
        self.ports = ports
        return where

    def start_platform(self, say: Callable[[str], None]) -> None:
        """Migrate every schema, start the services, then the gateway (deploy/local's order)."""
        for name, module, _, _ in COMPONENTS:
            self.supervisor.run(f"{name}-migrate", module, "migrate", env=self.env)
        for replica in replica_layout(self.ports, 1):
            say(f"starting {replica.name} on 127.0.0.1:{replica.port}")
            self.supervisor.start(
                replica.name,
                replica.module,
                env=replica_env(self.env, replica),
                port=replica.port,
            )

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def component_pids(self) -> dict[str, int]:
        """Every running Komar process by name."""
        return {name: self.pid(name) for name, _, _, _ in COMPONENTS}

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds used so far by each Komar process, PostgreSQL (its backends
        included) and NATS."""
        groups = {name: [pid] for name, pid in self.component_pids().items()}
        return {name: tree_cpu_seconds(pids) for name, pids in (groups | self.infra_pids()).items()}

    def watch(self, app: str | None = None) -> dict[str, list[int]]:
        """CPU groups for the generator: the gateway, `app`, the other services, PG, NATS."""
        pids = self.component_pids()
        out = {"gateway": [pids["gateway"]]}
        if app:
            out["app"] = [pids[app]]
        out["services"] = [pid for name, pid in pids.items() if name not in ("gateway", app)]
        return out | self.infra_pids()

    # ------------------------------------------------------------ consumers

    def progress(self) -> dict[str, Any]:
        """Each stream's last sequence, each consumer's ack floor and pending counts."""
        return asyncio.run(_progress(self.env["NATS_URL"]))

    def caught_up(self, expect: dict[str, int] | None = None) -> bool:
        """Whether every consumer has acknowledged every message of its stream (and each
        stream in `expect` holds at least that many messages)."""
        state = self.progress()
        for stream, least in (expect or {}).items():
            if state["streams"][stream] < least:
                return False
        return all(
            c is not None and c["pending"] == 0 and c["ack_pending"] == 0
            for c in state["consumers"].values()
        )

    def wait_caught_up(
        self, timeout: float, expect: dict[str, int] | None = None, poll: float = 0.2
    ) -> float:
        """Wait until `caught_up`; the wall-clock time (epoch s) it was first seen. Raises
        after `timeout` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.caught_up(expect):
                return time.time()
            time.sleep(poll)
        raise RuntimeError(f"the consumers did not catch up within {timeout:.0f} s")

    def storage(self) -> dict[str, Any]:
        """Bytes on disk per schema (tables, indexes and TOAST), the registry's children, and
        each JetStream stream's bytes: what the capacity plan scales by children."""
        return asyncio.run(_storage(self.env["DATABASE_URL"], self.env["NATS_URL"]))

    def stream_sizes(self) -> dict[str, int]:
        return dict(self.progress()["streams"])

    # ------------------------------------------------------------ metrics and memory

    def metrics(self) -> dict[str, str]:
        """Each service's /metrics text ('' when it does not answer)."""
        out = {}
        for service in SERVICES:
            try:
                with urllib.request.urlopen(self.url(service) + "/metrics", timeout=10) as r:
                    out[service] = r.read().decode()
            except OSError:
                out[service] = ""
        return out


async def _progress(nats_url: str) -> dict[str, Any]:
    import nats
    from nats.js.errors import NotFoundError

    nc = await nats.connect(nats_url, connect_timeout=5, max_reconnect_attempts=0)
    try:
        js = nc.jetstream()
        streams: dict[str, int] = {}
        for stream in STREAMS:
            try:
                streams[stream] = (await js.stream_info(stream)).state.last_seq
            except NotFoundError:
                streams[stream] = 0
        consumers: dict[str, dict[str, int] | None] = {}
        for stream, durable, _ in CONSUMERS:
            try:
                info = await js.consumer_info(stream, durable)
            except NotFoundError:
                consumers[durable] = None
                continue
            consumers[durable] = {
                "pending": info.num_pending or 0,
                "ack_pending": info.num_ack_pending or 0,
                "ack_floor": info.ack_floor.stream_seq if info.ack_floor else 0,
            }
        return {"streams": streams, "consumers": consumers}
    finally:
        await nc.close()


async def _storage(database_url: str, nats_url: str) -> dict[str, Any]:
    import asyncpg
    import nats

    pg = await asyncpg.connect(database_url)
    try:
        rows = await pg.fetch(
            "SELECT n.nspname AS schema, sum(pg_total_relation_size(c.oid))::bigint AS bytes"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind IN ('r', 'm') AND n.nspname NOT LIKE 'pg\\_%'"
            " AND n.nspname <> 'information_schema' GROUP BY 1 ORDER BY 1"
        )
        children = await pg.fetchval("SELECT count(*) FROM registry.children")
    finally:
        await pg.close()
    nc = await nats.connect(nats_url, connect_timeout=5, max_reconnect_attempts=0)
    try:
        js = nc.jetstream()
        streams = {s.config.name: s.state.bytes for s in await js.streams_info()}
    finally:
        await nc.close()
    return {
        "schemas": {r["schema"]: r["bytes"] for r in rows},
        "children": children,
        "streams": streams,
    }


async def subject_counts(nats_url: str) -> dict[str, int]:
    """Messages per consumer in its stream (under its filter, of the types it applies), and
    dead letters per consumer (`dead:<durable>`)."""
    import nats
    from nats.js.errors import NotFoundError

    nc = await nats.connect(nats_url, connect_timeout=5, max_reconnect_attempts=0)
    try:
        js = nc.jetstream()
        out: dict[str, int] = {}
        for stream, durable, subject in CONSUMERS:
            info = await js.stream_info(stream, subjects_filter=subject)
            handled = handled_types(stream, durable)
            subjects = info.state.subjects or {}
            out[durable] = sum(n for name, n in subjects.items() if name in handled)
            try:
                dead = await js.stream_info("DEADLETTER", subjects_filter=f"deadletter.{durable}.>")
                out[f"dead:{durable}"] = sum((dead.state.subjects or {}).values())
            except NotFoundError:
                out[f"dead:{durable}"] = 0
        return out
    finally:
        await nc.close()


# ---------------------------------------------------------------- the lag histogram

_SAMPLE = re.compile(r"^(\w+)\{([^}]*)\}\s+(\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def histograms(texts: dict[str, str], metric: str = LAG_METRIC) -> dict[str, dict[float, float]]:
    """The cumulative buckets of `metric` per consumer ("service/consumer"), summed over
    the other labels: {consumer: {le: count}}."""
    out: dict[str, dict[float, float]] = {}
    for text in texts.values():
        for line in text.splitlines():
            match = _SAMPLE.match(line)
            if not match or match.group(1) != f"{metric}_bucket":
                continue
            labels = dict(_LABEL.findall(match.group(2)))
            key = f"{labels.get('service', '?')}/{labels.get('consumer', '?')}"
            le = math.inf if labels["le"] == "+Inf" else float(labels["le"])
            buckets = out.setdefault(key, {})
            buckets[le] = buckets.get(le, 0.0) + float(match.group(3))
    return out


def lag_quantiles(
    before: dict[str, dict[float, float]], after: dict[str, dict[float, float]]
) -> dict[str, dict[str, Any]] | None:
    """p50 and p99 (s) per consumer of what was observed between two scrapes, each the
    upper bound of the bucket it falls in; None when the histogram is absent."""
    if not after:
        return None
    out: dict[str, dict[str, Any]] = {}
    for key, buckets in sorted(after.items()):
        diff = {le: n - before.get(key, {}).get(le, 0.0) for le, n in sorted(buckets.items())}
        total = diff.get(math.inf, max(diff.values(), default=0.0))
        figures: dict[str, Any] = {"events": int(total)}
        for name, q in (("p50_s", 0.5), ("p99_s", 0.99)):
            bound = next((le for le, n in diff.items() if total and n >= q * total), None)
            figures[name] = None if bound is None or bound == math.inf else bound
            if bound == math.inf:
                figures[name] = f"> {max(le for le in diff if le != math.inf):g}"
        out[key] = figures
    return out


# ---------------------------------------------------------------- memory


def _status_kib(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(root: int) -> list[int]:
    """`root` and its descendants."""
    parents: dict[int, int] = {}
    for name in Path("/proc").iterdir():
        if name.name.isdigit():
            try:
                parents[int(name.name)] = int(
                    (name / "stat").read_text().rsplit(")", 1)[1].split()[1]
                )
            except (OSError, IndexError, ValueError):
                continue
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        kids = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(kids)
        frontier.extend(kids)
    return sorted(tree)


def memory_mib(pids: dict[str, list[int]]) -> dict[str, dict[str, float]]:
    """Per process group, in MiB: resident memory now without shared memory (VmRSS minus
    RssShmem: PostgreSQL's shared buffers would otherwise count once per backend that
    touched them) and the peak (VmHWM, shared memory included). A group of several
    processes (PostgreSQL's backends) is summed: read its peak as an upper bound."""
    out = {}
    for name, roots in pids.items():
        tree = [pid for root in roots for pid in _children(root)]
        out[name] = {
            "rss_mib": round(
                sum(_status_kib(p, "VmRSS") - _status_kib(p, "RssShmem") for p in tree) / 1024, 1
            ),
            "peak_mib": round(sum(_status_kib(p, "VmHWM") for p in tree) / 1024, 1),
            "processes": len(tree),
        }
    return out
