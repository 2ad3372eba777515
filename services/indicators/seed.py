"""A synthetic population as real events on the real streams, for `make bench`.

`python -m services.indicators seed --children N [--months M] [--seed S] [--rebuild]` writes
what the producers would: registry.child.* (registered, some updated, closed, reopened),
referrals (providers, referrals through their states), funds (grants through theirs) and
casework (a worker per district; assignments, visits and overdue flags for about a third of
the children), with times spread over the last M months. Published with publish_async in batches.
`seed(...)` is the same for the bench to call; with rebuild it also loads the aggregates by
a replay (far faster than the live consumers applying events one transaction at a time) and
starts the service's durable consumers after the replayed events: run it with the
indicators service stopped, then start the service and time its reads (READS).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from libs.common import clock, places
from libs.common.db import Database
from libs.common.events import CloudEvent, new_event
from libs.common.events.bus import EventBus
from libs.common.events.casework_events import (
    AssignmentV1,
    ContractV1,
    TrainingV1,
    VisitOverdueV1,
    VisitV1,
    WorkerUpsertedV1,
)
from libs.common.events.catalog import STREAMS, ChildUpdatedV1, ChildV1
from libs.common.events.funds_events import GrantDisbursedV1, GrantV1
from libs.common.events.referrals_events import ProviderUpsertedV1, ReferralV1
from libs.common.settings import Settings
from services.indicators import catalogue, dates, jetstream, replay

BATCH = 2000
# Representative pulls for the bench to time (GET, with an indicators:read token).
READS = (
    "/v1/indicators/values?indicator=CP_CASE_OPEN&period={year}&area=KH&level=commune",
    "/v1/indicators/values?indicator=CP_CHILD_REG&period={month}&area=12&level=district",
    "/v1/indicators/values?indicator=CP_PROVIDERS&period={month}&area=KH&level=province",
    "/v1/indicators/dataValueSets?dataSet=CP_MONTHLY&period={month}&orgUnit=12&children=true",
)


@dataclass(frozen=True)
class SeedSummary:
    children: int
    events: int
    publish_seconds: float
    rebuild_seconds: float | None

    def __str__(self) -> str:
        loaded = f", aggregates rebuilt in {self.rebuild_seconds} s" if self.rebuild_seconds else ""
        return (
            f"seeded {self.children} children: {self.events} events published in "
            f"{self.publish_seconds} s{loaded}"
        )


def _event(service_: str, type_: str, subject: str, data: object, at: datetime) -> CloudEvent:
    event = new_event(service_, type_, subject, data, None)  # type: ignore[arg-type]
    return event.model_copy(update={"time": at})


def population(
    children: int, *, months: int = 24, seed: int = 1, now: datetime | None = None
) -> Iterator[CloudEvent]:
    """The events of `children` children, some providers, referrals and grants (deterministic)."""
    rng = random.Random(seed)
    now = now or datetime.now(UTC)
    communes = places.all_communes()
    providers: list[tuple[str, str]] = []  # (id, org)
    for n in range(max(20, min(2000, children // 500))):
        pid, org = str(uuid.UUID(int=rng.getrandbits(128))), f"provider-org-{n}"
        area = rng.choice(communes)[: rng.choice((2, 4, 6, 6))]
        types = rng.sample(catalogue.SERVICE_TYPES, rng.randint(1, 3))
        at = now - timedelta(days=months * 30 + 1)
        data = ProviderUpsertedV1(
            provider_id=pid,
            org=org,
            service_types=types,
            areas=[area],
            capacity=50,
            active=True,
            version=1,
        )
        providers.append((pid, org))
        yield _event("referrals", "referrals.provider.upserted.v1", pid, data, at)
    followed: list[tuple[str, str, datetime]] = []  # (child, commune, registered at)
    for _ in range(children):
        yield from _child_events(rng, communes, providers, months, now, followed)
    # casework from a generator of its own: the events above stay what they were
    yield from _casework_events(random.Random(seed * 7919 + 1), followed, months, now)


def _child_events(
    rng: random.Random,
    communes: tuple[str, ...],
    providers: list[tuple[str, str]],
    months: int,
    now: datetime,
    followed: list[tuple[str, str, datetime]],
) -> Iterator[CloudEvent]:
    child_id = str(uuid.UUID(int=rng.getrandbits(128)))
    commune = rng.choice(communes)
    at = now - timedelta(seconds=rng.randint(3600, months * 30 * 86400))
    registered = at.astimezone(clock.CAMBODIA).date()
    age_months = rng.randint(0, 17 * 12 + 11)
    birth = dates.date_month(registered) - age_months
    y, m = dates.year_month(birth)
    vulns = sorted(rng.sample(catalogue.VULNERABILITIES, rng.randint(0, 3)))
    base = {
        "child_id": child_id,
        "case_number": f"{commune}-{rng.randint(1, 10**6)}",
        "commune_code": commune,
        "village_code": None,
        "sex": rng.choice(("female", "male")),
        "birth_month": f"{y:04d}-{m:02d}",
        "vulnerabilities": vulns,
        "risk_level": rng.choice(("low", "medium", "high")),
        "status": "open",
        "owner_org": "seed",
        "data_sharing_consent": True,
        "registered_on": registered.isoformat(),
    }
    version = 1
    yield _event(
        "registry", "registry.child.registered.v1", child_id, ChildV1(**base, version=version), at
    )
    followed.append((child_id, commune, at))
    later = _later(rng, at, now)
    if later is not None and rng.random() < 0.2:
        version += 1
        base["risk_level"] = "high"
        data = ChildUpdatedV1(**base, version=version, changed=["risk_level"])
        yield _event("registry", "registry.child.updated.v1", child_id, data, later)
        at = later
    later = _later(rng, at, now)
    if later is not None and rng.random() < 0.1:
        version += 1
        base["status"] = "closed"
        yield _event(
            "registry",
            "registry.child.closed.v1",
            child_id,
            ChildV1(**base, version=version),
            later,
        )
    if rng.random() < 0.3:
        yield from _referral_events(rng, child_id, commune, providers, at, now)
    if rng.random() < 0.05:
        yield from _grant_events(rng, child_id, commune, at, now)


def _casework_events(
    rng: random.Random, children: list[tuple[str, str, datetime]], months: int, now: datetime
) -> Iterator[CloudEvent]:
    """A worker per district, and for about a third of the children an assignment, a visit
    and sometimes an overdue flag (docs/api-guide.md#casework)."""
    hired = now - timedelta(days=months * 30 + 1)
    workers: dict[str, tuple[str, int, int]] = {}  # district -> (worker, caseload, max)
    for child_id, commune, registered in children:
        if rng.random() >= 0.3:
            continue
        district = commune[:4]
        if district not in workers:
            worker_id = str(uuid.UUID(int=rng.getrandbits(128)))
            trained = rng.random() < 0.8
            worker = WorkerUpsertedV1(
                worker_id=worker_id,
                org="seed",
                org_type="government",
                role=rng.choice(catalogue.WORKER_ROLES),
                sex=rng.choice(("female", "male")),
                areas=[district],
                status="active",
                max_caseload=rng.choice((5, 25)),
                trainings=[
                    TrainingV1(course="child_protection_basics", completed_on=str(hired.date()))
                ]
                if trained
                else [],
                contracts=[
                    ContractV1(
                        org="seed", start_on=str(hired.date()), end_on=None, monthly_fee_khr=0
                    )
                ],
                version=1,
            )
            yield _event("casework", "casework.worker.upserted.v1", worker_id, worker, hired)
            workers[district] = (worker_id, 0, worker.max_caseload)
        worker_id, caseload, max_caseload = workers[district]
        start = _later(rng, registered, now)
        if start is None:
            continue
        workers[district] = (worker_id, caseload + 1, max_caseload)
        assignment_id = str(uuid.UUID(int=rng.getrandbits(128)))
        started = AssignmentV1(
            assignment_id=assignment_id,
            child_id=child_id,
            worker_id=worker_id,
            commune_code=commune,
            org="seed",
            status="active",
            started_on=str(start.astimezone(clock.CAMBODIA).date()),
            ended_on=None,
            caseload=caseload + 1,
            max_caseload=max_caseload,
            override=caseload + 1 > max_caseload,
        )
        yield _event("casework", "casework.assignment.started.v1", assignment_id, started, start)
        seen = _later(rng, start, now)
        if seen is None:
            continue
        visit_id = str(uuid.UUID(int=rng.getrandbits(128)))
        visit = VisitV1(
            visit_id=visit_id,
            child_id=child_id,
            worker_id=worker_id,
            commune_code=commune,
            date=str(seen.astimezone(clock.CAMBODIA).date()),
            kind=rng.choice(catalogue.VISIT_KINDS),
            outcome="met",
            next_visit_on=None,
            followups_made=[],
        )
        yield _event("casework", "casework.visit.recorded.v1", visit_id, visit, seen)
        missed = _later(rng, seen, now)
        if missed is not None and rng.random() < 0.1:
            day = str(missed.astimezone(clock.CAMBODIA).date())
            flag = VisitOverdueV1(
                child_id=child_id,
                commune_code=commune,
                worker_id=worker_id,
                due_on=day,
                overdue=True,
                at=day,
            )
            yield _event("casework", "casework.visit.overdue.v1", child_id, flag, missed)


def _later(rng: random.Random, after: datetime, now: datetime) -> datetime | None:
    moment = after + timedelta(seconds=rng.randint(60, 60 * 86400))
    return moment if moment < now else None


def _referral_events(
    rng: random.Random,
    child_id: str,
    commune: str,
    providers: list[tuple[str, str]],
    at: datetime,
    now: datetime,
) -> Iterator[CloudEvent]:
    rid = str(uuid.UUID(int=rng.getrandbits(128)))
    pid, org = rng.choice(providers)
    data: dict[str, Any] = {
        "referral_id": rid,
        "child_id": child_id,
        "commune_code": commune,
        "village_code": None,
        "service_type": rng.choice(catalogue.SERVICE_TYPES),
        "urgency": "normal",
        "status": "pending",
        "provider_id": pid,
        "provider_org": org,
        "referrer_org": "seed",
        "previous_referral_id": None,
        "due_at": (at + timedelta(days=7)).isoformat(),
        "overdue": False,
        "consent_override": False,
        "version": 1,
    }
    yield _event("referrals", "referrals.referral.created.v1", rid, ReferralV1(**data), at)
    for verb in ("accepted", "completed"):
        later = _later(rng, at, now)
        if later is None or rng.random() < 0.4:
            return
        data = {**data, "status": verb, "version": data["version"] + 1}
        if verb == "completed":
            data["outcome_code"] = "service_received"
        yield _event("referrals", f"referrals.referral.{verb}.v1", rid, ReferralV1(**data), later)
        at = later


def _grant_events(
    rng: random.Random, child_id: str, commune: str, at: datetime, now: datetime
) -> Iterator[CloudEvent]:
    gid = str(uuid.UUID(int=rng.getrandbits(128)))
    base = {
        "grant_id": gid,
        "fund_id": str(uuid.UUID(int=rng.getrandbits(128))),
        "child_id": child_id,
        "commune_code": commune,
        "category": rng.choice(catalogue.GRANT_CATEGORIES),
        "shock": None,
        "amount_khr": rng.randint(20, 400) * 1000,
        "status": "requested",
        "repeat_within_30_days": False,
        "version": 1,
    }
    yield _event("funds", "funds.grant.requested.v1", gid, GrantV1(**base), at)
    later = _later(rng, at, now)
    if later is None:
        return
    base = {**base, "status": "approved", "version": 2}
    yield _event("funds", "funds.grant.approved.v1", gid, GrantV1(**base), later)
    paid = _later(rng, later, now)
    if paid is not None and rng.random() < 0.8:
        base = {**base, "status": "disbursed", "version": 3}
        yield _event(
            "funds", "funds.grant.disbursed.v1", gid, GrantDisbursedV1(**base, method="cash"), paid
        )


async def publish(js: JetStreamContext, events: Iterator[CloudEvent], batch: int = BATCH) -> int:
    """Publish events as the relay does (subject = type, Nats-Msg-Id = id), in async batches."""
    count = 0
    pending: list[asyncio.Future[Any]] = []
    for event in events:
        payload = event.model_dump_json().encode()
        pending.append(
            await js.publish_async(event.type, payload, headers={"Nats-Msg-Id": event.id})
        )
        count += 1
        if len(pending) >= batch:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)
    return count


async def start_consumers_after(js: JetStreamContext, positions: dict[str, int]) -> None:
    """(Re)create the service's durable consumers to start after what a rebuild replayed.

    For a bulk load with the indicators service stopped: otherwise its consumers would go
    through every seeded event again, only to find each already applied.
    """
    for stream, (durable, subject) in jetstream.CONSUMERS.items():
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer(stream, durable)
        await js.add_consumer(
            stream,
            ConsumerConfig(
                durable_name=durable,
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=positions.get(stream, 0) + 1,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=30,
                max_deliver=-1,
                filter_subject=subject,
                max_ack_pending=1000,
            ),
        )


async def seed(
    settings: Settings,
    children: int,
    *,
    months: int = 24,
    seed_value: int = 1,
    rebuild: bool = False,
) -> SeedSummary:
    """Publish a population's events; with rebuild, load the aggregates by replay too."""
    bus = EventBus(settings.nats_url, "komar-indicators-seed", STREAMS)
    bus.start()
    try:
        await bus.wait_ready(30)
        loop = asyncio.get_running_loop()
        started = loop.time()
        count = await publish(bus.js, population(children, months=months, seed=seed_value))
        published = round(loop.time() - started, 3)
        rebuilt = None
        if rebuild:
            db = Database(settings.database_url, pool_size=2, max_overflow=2)
            try:
                result = await replay.rebuild(db, bus.js)
            finally:
                await db.close()
            rebuilt = result.seconds
            await start_consumers_after(bus.js, result.positions)
    finally:
        await bus.close()
    return SeedSummary(children, count, published, rebuilt)


async def main(settings: Settings, argv: list[str]) -> SeedSummary:
    """The `seed` command line."""
    parser = argparse.ArgumentParser(prog="python -m services.indicators seed")
    parser.add_argument("--children", type=int, required=True)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rebuild", action="store_true", help="load aggregates by replay")
    args = parser.parse_args(argv)
    return await seed(
        settings, args.children, months=args.months, seed_value=args.seed, rebuild=args.rebuild
    )


__all__ = ["SeedSummary", "main", "population", "publish", "seed"]
