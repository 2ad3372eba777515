"""Two replicas of every service behind one gateway, as `make run REPLICAS=2` runs them.

The work is shared (both replicas of a consumer apply events, both relays publish), nothing
is done twice (every event applied once, published once; every periodic job once per tick),
and a replica SIGKILLed in the middle of the load costs no answered request and no event.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.funds.handlers import CHILD_HANDLERS as FUNDS_CHILD_HANDLERS
from services.referrals.handlers import CHILD_HANDLERS as REFERRALS_CHILD_HANDLERS
from services.registry.handlers import REFERRAL_HANDLERS
from tests.e2e.conftest import Platform, running_platform, token
from tests.registry.conftest import child_body
from tests.support import stream_events

REPLICAS = 2
# Short intervals, so a window of seconds holds many ticks.
SETTINGS = {
    "KOMAR_REFERRALS_OVERDUE_SWEEP_S": "1",
    "KOMAR_IDEMPOTENCY_PURGE_S": "2",
    "KOMAR_RELAY_INTERVAL_S": "0.2",
    "KOMAR_UPSTREAM_COOLDOWN_S": "2",
}
JOBS_WINDOW_S = 12.0
JOBS = {
    ("registry", "audit-sealer"): 1.0,
    ("registry", "idempotency-purge"): 2.0,
    ("referrals", "overdue-sweeper"): 1.0,
    ("referrals", "idempotency-purge"): 2.0,
    ("funds", "idempotency-purge"): 2.0,
}
# Durable consumer -> (service, stream, the event types it applies). A consumer also
# receives (and acks) the other types under its subject without applying them.
CONSUMERS = {
    "registry-referral-access": ("registry", "REFERRALS", frozenset(REFERRAL_HANDLERS)),
    "referrals-children": ("referrals", "REGISTRY", frozenset(REFERRALS_CHILD_HANDLERS)),
    "funds-children": ("funds", "REGISTRY", frozenset(FUNDS_CHILD_HANDLERS)),
}
STREAMS = {"registry": "REGISTRY", "referrals": "REFERRALS", "funds": "FUNDS"}
VILLAGE = "12010101"  # Tonle Basak commune (120101), Phnom Penh (12)
CONCURRENCY = 4
# A consumer replica killed with fetched, unacknowledged messages holds them until the
# durable consumer's ack wait (30 s) sends them to the other replica.
PROJECTION_WAIT_S = 75.0


@pytest.fixture(scope="module")
def replicated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    root = tmp_path_factory.mktemp("replicas")
    with running_platform(root, replicas=REPLICAS, settings=SETTINGS) as p:
        yield p


# ---------------------------------------------------------------- what the platform holds

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(http: httpx.AsyncClient, port: int) -> Samples:
    """One process's /metrics as (name, labels) -> value."""
    r = await http.get(f"http://127.0.0.1:{port}/metrics")
    assert r.status_code == 200
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


async def scrape_services(platform: Platform, http: httpx.AsyncClient) -> dict[str, Samples]:
    """/metrics of every service replica, by supervisor name (not the gateway's, nor the
    dashboard's: it keeps none)."""
    found = {}
    for r in platform.processes:
        if r.component not in ("gateway", "dashboard"):
            found[r.name] = await scrape(http, r.port)
    return found


def total(samples: Samples, name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


@dataclass
class Snapshot:
    """Outboxes, streams and inboxes at one moment."""

    outbox: dict[str, list[dict[str, Any]]]  # service -> rows (id, type, subject, published)
    streams: dict[str, list[dict[str, Any]]]  # stream -> events
    inbox: dict[str, list[str]]  # consumer -> event ids

    def applicable(self, consumer: str) -> list[str]:
        """Ids of the events on the consumer's stream that it applies."""
        _, stream, types = CONSUMERS[consumer]
        return [e["id"] for e in self.streams[stream] if e["type"] in types]

    def settled(self) -> bool:
        published = all(r["published"] for rows in self.outbox.values() for r in rows)
        return published and all(
            Counter(self.inbox[c]) == Counter(self.applicable(c)) for c in CONSUMERS
        )


async def snapshot(platform: Platform) -> Snapshot:
    conn = await asyncpg.connect(platform.postgres.url)
    try:
        outbox = {
            service: [
                dict(r)
                for r in await conn.fetch(
                    f"SELECT id::text, type, payload->>'subject' AS subject,"
                    f" published_at IS NOT NULL AS published FROM {service}.outbox"
                )
            ]
            for service in STREAMS
        }
        inbox = {
            consumer: [
                r["event_id"]
                for r in await conn.fetch(
                    f"SELECT event_id::text FROM {service}.processed_events WHERE consumer = $1",
                    consumer,
                )
            ]
            for consumer, (service, _, _) in CONSUMERS.items()
        }
    finally:
        await conn.close()
    streams = {s: await stream_events(platform.nats.url, s) for s in STREAMS.values()}
    return Snapshot(outbox, streams, inbox)


async def settle(platform: Platform, timeout: float = 120.0) -> Snapshot:
    """Wait until every outbox row is published and every consumer has caught up."""
    deadline = time.monotonic() + timeout
    while True:
        state = await snapshot(platform)
        if state.settled() or time.monotonic() > deadline:
            return state
        await asyncio.sleep(1.0)


# ---------------------------------------------------------------- the load


@dataclass
class Call:
    service: str
    what: str
    status: int  # 0: no answer from the gateway at all
    started: float
    ended: float


@dataclass
class Told:
    """What the clients were told with a 2xx: the last state of each entity they saw, and
    the events those answers imply."""

    children: dict[str, dict[str, Any]] = field(default_factory=dict)
    referrals: dict[str, dict[str, Any]] = field(default_factory=dict)
    grants: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: Counter[tuple[str, str]] = field(default_factory=Counter)  # (subject, type)


@dataclass
class Load:
    """Partners and staff working through the gateway."""

    http: httpx.AsyncClient
    headers: dict[str, dict[str, str]]
    fund_id: str
    calls: list[Call] = field(default_factory=list)
    told: Told = field(default_factory=Told)
    uncertain: set[str] = field(default_factory=set)  # whose last action got no clear answer
    journeys_done: int = 0

    async def call(
        self, service: str, what: str, who: str, path: str, body: Any = None
    ) -> httpx.Response | None:
        started = time.monotonic()
        try:
            r: httpx.Response | None = await self.http.post(
                path, json=body, headers=self.headers[who]
            )
        except httpx.TransportError:
            r = None
        status = r.status_code if r is not None else 0
        self.calls.append(Call(service, what, status, started, time.monotonic()))
        return r

    async def create(
        self, service: str, what: str, who: str, path: str, body: dict[str, Any]
    ) -> dict[str, Any] | None:
        """POST a new entity; 404 means the child has not reached this service yet: again."""
        deadline = time.monotonic() + PROJECTION_WAIT_S
        pause = 0.2
        while True:
            r = await self.call(service, what, who, path, body)
            if r is not None and r.status_code == 404 and time.monotonic() < deadline:
                self.calls[-1].what += " (child not synced yet)"
                await asyncio.sleep(pause)
                pause = min(2 * pause, 2.0)
                continue
            return r.json() if r is not None and r.status_code == 201 else None

    async def act(
        self, service: str, verb: str, who: str, entity_id: str, path: str, body: Any = None
    ) -> dict[str, Any] | None:
        r = await self.call(service, verb, who, path, body)
        if r is None or r.status_code >= 500:
            self.uncertain.add(entity_id)
        return r.json() if r is not None and r.status_code == 200 else None

    async def journey(self, tag: str, i: int) -> None:
        """Register a child, refer it (then cancel, accept, or accept and complete), and
        request a grant for it (approved for every other child)."""
        try:
            await self._journey(tag, i)
        finally:
            self.journeys_done += 1

    async def _journey(self, tag: str, i: int) -> None:
        told = self.told
        child = await self.create(
            "registry",
            "register child",
            "gov",
            "/v1/registry/children",
            child_body(given_name=f"{tag}{i}", village_code=VILLAGE),
        )
        if child is None:
            return
        child.pop("possible_duplicates", None)  # a hint of the registration answer only
        told.children[child["id"]] = child
        told.events[child["id"], "registry.child.registered.v1"] += 1

        referral = await self.create(
            "referrals",
            "refer",
            "gov",
            "/v1/referrals",
            {"child_id": child["id"], "service_type": "health", "reason": "fever for a week"},
        )
        if referral is not None:
            rid = referral["id"]
            told.referrals[rid] = referral
            told.events[rid, "referrals.referral.created.v1"] += 1
            steps = (
                [("cancel", "gov", {"reason": "family moved"})]
                if i % 3 == 0
                else [("accept", "provider", None)]
                + ([("complete", "provider", {"outcome": {"code": "service_provided"}})])
                * (i % 3 == 1)
            )
            for verb, who, body in steps:
                path = f"/v1/referrals/{rid}/{verb}"
                done = await self.act("referrals", verb, who, rid, path, body)
                if done is None:
                    break
                told.referrals[rid] = done
                past = {"cancel": "cancelled", "accept": "accepted", "complete": "completed"}
                told.events[rid, f"referrals.referral.{past[verb]}.v1"] += 1

        grant = await self.create(
            "funds",
            "request grant",
            "gov",
            "/v1/funds/grants",
            {
                "child_id": child["id"],
                "fund_id": self.fund_id,
                "category": "education_support",
                "amount_khr": 100_000,
                "justification": "uniform and books for the new school year",
            },
        )
        if grant is None:
            return
        told.grants[grant["id"]] = grant
        told.events[grant["id"], "funds.grant.requested.v1"] += 1
        if i % 2 == 0:
            path = f"/v1/funds/grants/{grant['id']}/approve"
            approved = await self.act("funds", "approve", "approver", grant["id"], path)
            if approved is not None:
                told.grants[grant["id"]] = approved
                told.events[grant["id"], "funds.grant.approved.v1"] += 1

    async def run(self, tag: str, n: int) -> None:
        """`n` journeys, CONCURRENCY at a time."""
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(i: int) -> None:
            async with gate:
                await self.journey(tag, i)

        await asyncio.gather(*(one(i) for i in range(n)))


async def open_load(platform: Platform, http: httpx.AsyncClient) -> Load:
    """Clients for a government worker, a provider's staff, a fund manager and an approver;
    a provider on the map and a commune fund."""
    admin = {"Authorization": f"Bearer {await token(http, 'admin', platform.admin_secret)}"}
    provider_org = f"ngo-health-{secrets.token_hex(3)}"
    principals = {
        "gov": (
            "government",
            "moswvy-pp",
            ["12"],
            "registry:read registry:write referrals:read referrals:write funds:read funds:request",
        ),
        "provider": ("partner", provider_org, ["12"], "referrals:read referrals:respond"),
        "manager": ("government", "moswvy-pp", ["12"], "funds:read funds:manage"),
        "approver": ("government", "ccwc-tonle-basak", ["120101"], "funds:read funds:approve"),
    }
    headers = {}
    for who, (org_type, org, areas, scopes) in principals.items():
        r = await http.post(
            "/v1/admin/clients",
            json={
                "name": f"replicas {who}",
                "org": org,
                "org_type": org_type,
                "scopes": scopes.split(),
                "areas": areas,
                "rate_limit_per_second": 10_000,
            },
            headers=admin,
        )
        assert r.status_code == 201, r.text
        bearer = await token(http, r.json()["client_id"], r.json()["client_secret"])
        headers[who] = {"Authorization": f"Bearer {bearer}"}
    r = await http.post(
        "/v1/referrals/providers",
        json={
            "name": "Tonle Basak health centre",
            "org": provider_org,
            "service_types": ["health"],
            "areas": ["12"],
            "capacity": 100_000,
        },
        headers=headers["gov"],
    )
    assert r.status_code == 201, r.text
    r = await http.post(
        "/v1/funds/funds",
        json={
            "commune_code": "120101",
            "fiscal_year": 2026,
            "name": "Tonle Basak emergency fund",
            "budget_khr": 10**12,
            "max_grant_khr": 400_000,
            "approval_threshold_khr": 200_000,
        },
        headers=headers["manager"],
    )
    assert r.status_code == 201, r.text
    return Load(http, headers, r.json()["id"])


# ---------------------------------------------------------------- the test


async def test_two_replicas_share_the_work_do_nothing_twice_and_survive_a_kill(
    replicated: Platform,
) -> None:
    report: dict[str, Any] = {}
    try:
        async with (
            httpx.AsyncClient(base_url=replicated.gateway, timeout=60) as http,
            httpx.AsyncClient(timeout=10) as probe,
        ):
            load = await open_load(replicated, http)
            await all_replicas_up(replicated, load, probe, report)
            await one_replica_of_each_service_killed(replicated, load, probe, report)
    finally:
        print("\nreplicas report:", json.dumps(report, indent=1))


async def all_replicas_up(
    platform: Platform, load: Load, probe: httpx.AsyncClient, report: dict[str, Any]
) -> None:
    """Load with every replica up, then quiet: the counters of both replicas add up to what
    the database and the streams hold."""
    jobs_before = await scrape_services(platform, probe)
    window_start = time.monotonic()
    await load.run("Alpha", 30)
    state = await settle(platform)
    assert state.settled(), "events still unpublished or unapplied after 120 s"
    await asyncio.sleep(JOBS_WINDOW_S - (time.monotonic() - window_start))
    metrics = await scrape_services(platform, probe)
    window = time.monotonic() - window_start

    # Consumers share the work: all replicas of a service pull from one durable consumer
    # (one name), and JetStream hands each message to one pending pull request at a time.
    # Both replicas keep a pull waiting while the load publishes events one by one over
    # seconds, so each gets a share.
    report["consumers"] = {}
    for consumer, (service, _, _) in CONSUMERS.items():
        ids = state.applicable(consumer)
        replicas = platform.replicas_of(service)
        shares = [
            total(metrics[r.name], "komar_events_applied_total", consumer=consumer)
            for r in replicas
        ]
        duplicates = sum(
            total(metrics[r.name], "komar_events_duplicate_total", consumer=consumer)
            for r in replicas
        )
        report["consumers"][consumer] = {"events": len(ids), "applied_by_replica": shares}
        assert len(ids) >= 20, (consumer, len(ids))
        assert len(set(ids)) == len(ids)  # each event on the stream once
        assert sum(shares) == len(ids), (consumer, shares, len(ids))
        assert all(share > 0 for share in shares), (consumer, shares)
        assert duplicates == 0  # nothing was redelivered while every replica was up
        assert Counter(state.inbox[consumer]) == Counter(ids)  # each id in the inbox once

    # The relays of both replicas publish, never the same row twice.
    report["relays"] = {}
    for service, stream in STREAMS.items():
        rows = state.outbox[service]
        replicas = platform.replicas_of(service)
        published = [
            total(metrics[r.name], "komar_outbox_published_total", service=service)
            for r in replicas
        ]
        duplicate_acks = sum(
            total(metrics[r.name], "komar_outbox_duplicate_acks_total", service=service)
            for r in replicas
        )
        report["relays"][service] = {"rows": len(rows), "published_by_replica": published}
        assert sum(published) == len(rows), (service, published, len(rows))
        assert duplicate_acks == 0
        on_stream = Counter(e["_msg_id"] for e in state.streams[stream])
        assert on_stream == Counter(r["id"] for r in rows)  # each event once

    # Periodic jobs run once per tick across both replicas: about window/interval runs in
    # all, where a run per replica per tick would make twice that.
    report["jobs"] = {"window_s": round(window, 1)}
    for (service, job), interval in JOBS.items():
        by_replica = [
            total(metrics[r.name], "komar_job_runs_total", service=service, job=job)
            - total(jobs_before[r.name], "komar_job_runs_total", service=service, job=job)
            for r in platform.replicas_of(service)
        ]
        expected = window / interval
        report["jobs"][f"{service}/{job}"] = {
            "expected": round(expected, 1),
            "runs_by_replica": by_replica,
        }
        assert sum(by_replica) <= expected + 2, (service, job, by_replica, expected)
        assert sum(by_replica) >= expected / 2 - 1, (service, job, by_replica, expected)


async def one_replica_of_each_service_killed(
    platform: Platform, load: Load, probe: httpx.AsyncClient, report: dict[str, Any]
) -> None:
    """The same load again, with one replica of each service SIGKILLed in the middle of it
    (and brought back afterwards, as `make run` would)."""
    calls_before = len(load.calls)
    n = 36
    kills: list[tuple[str, str, float]] = []  # (replica, service, when)
    victims = [("registry-2", "registry"), ("referrals-1", "referrals"), ("funds-2", "funds")]

    async def killer() -> None:
        for k, (name, service) in enumerate(victims):
            while load.journeys_done < n * (k + 1) // (len(victims) + 2):
                await asyncio.sleep(0.05)
            kills.append((name, service, time.monotonic()))
            await asyncio.to_thread(platform.supervisor.kill, name)

    await asyncio.gather(load.run("Bravo", n), killer())
    assert len(kills) == len(victims)
    for name, _, _ in kills:
        await asyncio.to_thread(platform.supervisor.restart, name)
    state = await settle(platform)
    assert state.settled(), "events still unpublished or unapplied after 120 s"

    during = load.calls[calls_before:]
    failed = [c for c in during if c.status >= 500 or c.status == 0]
    report["kill"] = {
        "victims": [name for name, _, _ in kills],
        "requests": len(during),
        "succeeded": sum(1 for c in during if 200 <= c.status < 300),
        "failed": [(c.service, c.what, c.status) for c in failed],
        "waited_for_projection": sum(1 for c in during if "not synced" in c.what),
    }
    # Failures: only requests caught in flight on the replica that died (502), or in the
    # instant after; the gateway sends everything else to the live replica ...
    for c in failed:
        assert c.status in (502, 503), c
        assert any(
            s == c.service and c.started <= at + 1.0 and c.ended >= at for _, s, at in kills
        ), c
    assert len(failed) <= CONCURRENCY * len(kills)
    # ... and requests kept succeeding after each kill, with the victim still down.
    for name, service, at in kills:
        after = [c for c in during if c.service == service and c.started > at + 1.0]
        assert sum(1 for c in after if 200 <= c.status < 300) >= 5, (name, after)
    unexpected = [c for c in load.calls if 400 <= c.status < 500 and "not synced" not in c.what]
    assert not unexpected, unexpected

    # Nothing a client was told about is lost or changed: read back through the gateway
    # (once the restarted replicas are out of their cool-down, so they serve reads too).
    # An entity whose last action failed may or may not have taken it.
    await asyncio.sleep(2.0)
    told = load.told
    for path, entities in (
        ("/v1/registry/children/{}", told.children),
        ("/v1/referrals/{}", told.referrals),
        ("/v1/funds/grants/{}", told.grants),
    ):
        for entity_id, last in entities.items():
            r = await load.http.get(path.format(entity_id), headers=load.headers["gov"])
            assert r.status_code == 200, (path, entity_id, r.text)
            if entity_id in load.uncertain:
                assert r.json()["version"] in (last["version"], last["version"] + 1)
            else:
                assert r.json() == last, (path, entity_id)
    # Every event the answers imply is on its stream exactly once; no event is on a stream
    # twice or missing from it; every consumer applied each of its events exactly once.
    on_streams: Counter[tuple[str, str]] = Counter(
        (e["subject"], e["type"]) for events in state.streams.values() for e in events
    )
    missing = {k: v for k, v in told.events.items() if on_streams[k] != v}
    assert not missing, missing
    for service, stream in STREAMS.items():
        on_stream = Counter(e["_msg_id"] for e in state.streams[stream])
        assert on_stream == Counter(r["id"] for r in state.outbox[service])
    for consumer in CONSUMERS:
        assert Counter(state.inbox[consumer]) == Counter(state.applicable(consumer))

    # The restarted replicas are back in the gateway's rotation.
    for name, service, _ in kills:
        port = next(r.port for r in platform.replicas_of(service) if r.name == name)
        served = sum(
            v
            for (metric, labels), v in (await scrape(probe, port)).items()
            if metric == "komar_http_requests_total" and dict(labels)["route"].startswith("/v1/")
        )
        assert served > 0, name

    # What the kills cost: requests that failed may still have done their work before the
    # replica died (nobody was told; a client retrying with its Idempotency-Key learns it).
    report["kill"]["unannounced"] = await unannounced(platform, told, "Bravo")
    survivors = await scrape_services(platform, probe)
    report["kill"]["duplicates_skipped_by_consumers"] = sum(
        total(m, "komar_events_duplicate_total") for m in survivors.values()
    )
    report["kill"]["duplicate_publish_acks"] = sum(
        total(m, "komar_outbox_duplicate_acks_total") for m in survivors.values()
    )
    gateway = await scrape(probe, platform.ports["gateway"])
    report["gateway_failovers"] = {
        u: total(gateway, "komar_gateway_failovers_total", upstream=u) for u in STREAMS
    }
    report["events_on_streams"] = {s: len(e) for s, e in state.streams.items()}
    report["requests_total"] = len(load.calls)


async def unannounced(platform: Platform, told: Told, tag: str) -> dict[str, int]:
    """Entities of the phase `tag` that exist although no client was told of them."""
    conn = await asyncpg.connect(platform.postgres.url)
    try:
        children = [
            str(r["id"])
            for r in await conn.fetch(
                "SELECT id FROM registry.children WHERE given_name LIKE $1", f"{tag}%"
            )
        ]
        referrals = await conn.fetch(
            "SELECT id::text FROM referrals.referrals WHERE child_id::text = ANY($1)", children
        )
        grants = await conn.fetch(
            "SELECT id::text FROM funds.grants WHERE child_id::text = ANY($1)", children
        )
    finally:
        await conn.close()
    return {
        "children": len(set(children) - set(told.children)),
        "referrals": len({r["id"] for r in referrals} - set(told.referrals)),
        "grants": len({r["id"] for r in grants} - set(told.grants)),
    }
