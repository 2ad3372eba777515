"""Indicators tests: a PostgreSQL database and a NATS server of their own per module.

The streams must hold exactly the events a test publishes (other packages publish registry,
referrals and funds events on the session's broker), so each module starts its own broker
and database. Events are built with the catalogue models via `new_event` and published
onto the real streams, exactly as the producers' relays do.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from fastapi import FastAPI
from nats.js.api import StorageType, StreamConfig
from pydantic import BaseModel

from deploy.local.infra import EmbeddedNats, create_database, free_port
from libs.common.events import CloudEvent, new_event
from libs.common.events.catalog import STREAMS, ChildUpdatedV1, ChildV1
from libs.common.events.funds_events import FundToppedUpV1, FundV1, GrantDisbursedV1, GrantV1
from libs.common.events.referrals_events import (
    ProviderUpsertedV1,
    ReferralUnmatchedV1,
    ReferralV1,
)
from libs.common.settings import Settings
from services.indicators import jetstream
from tests.support import SigningKeys, drop_test_database, running_service, short_ack_durable

NATIONAL_READ = "indicators:read"
DETAIL = "indicators:read indicators:read:detail"


@pytest.fixture(scope="module")
def own_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    """A broker whose streams hold only this module's events."""
    server = EmbeddedNats(tmp_path_factory.mktemp("ind-nats"), port=free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def own_db(pg_url: str) -> Iterator[str]:
    """A database of this module's own on the session's PostgreSQL."""
    name = f"indicators_{secrets.token_hex(4)}"
    url = create_database(pg_url, name)
    try:
        yield url
    finally:
        drop_test_database(pg_url, name)


@pytest.fixture(scope="module")
def keys() -> SigningKeys:
    return SigningKeys()


@pytest.fixture(scope="module")
async def indicators_app(
    own_db: str, own_nats: EmbeddedNats, keys: SigningKeys
) -> AsyncIterator[FastAPI]:
    settings = Settings(
        database_url=own_db, nats_url=own_nats.url, log_json=True, log_level="warning"
    )
    async with running_service("services.indicators", settings, keys) as app:
        yield app


@pytest.fixture
async def api(indicators_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=indicators_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://indicators") as client:
        yield client


# ---------------------------------------------------------------- events


def at(moment: str) -> datetime:
    """An instant; without an offset it is UTC."""
    value = datetime.fromisoformat(moment)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def event(service: str, type_: str, subject: str, data: BaseModel, when: str) -> CloudEvent:
    """A catalogued CloudEvent, as `new_event` builds it, at a chosen time."""
    return new_event(service, type_, subject, data, f"req-{secrets.token_hex(4)}").model_copy(
        update={"time": at(when)}
    )


def child_event(
    verb: str,
    child_id: str,
    *,
    commune: str,
    sex: str,
    birth: str,
    registered_on: str,
    version: int,
    when: str,
    status: str = "open",
    risk: str = "low",
    vulnerabilities: Sequence[str] = (),
) -> CloudEvent:
    data: dict[str, Any] = {
        "child_id": child_id,
        "case_number": f"{commune}-{version}",
        "commune_code": commune,
        "village_code": None,
        "sex": sex,
        "birth_month": birth,
        "vulnerabilities": list(vulnerabilities),
        "risk_level": risk,
        "status": status,
        "owner_org": "moswvy",
        "data_sharing_consent": True,
        "version": version,
        "registered_on": registered_on,
    }
    model: BaseModel = (
        ChildUpdatedV1(**data, changed=["risk_level"]) if verb == "updated" else ChildV1(**data)
    )
    return event("registry", f"registry.child.{verb}.v1", child_id, model, when)


def referral_event(
    verb: str,
    referral_id: str,
    *,
    child_id: str,
    commune: str,
    service_type: str,
    version: int,
    when: str,
    due_at: str = "2025-12-31T00:00:00+00:00",
    previous: str | None = None,
) -> CloudEvent:
    status = {"created": "pending", "overdue": "pending"}.get(verb, verb)
    data = ReferralV1(
        referral_id=referral_id,
        child_id=child_id,
        commune_code=commune,
        village_code=None,
        service_type=service_type,
        urgency="normal",
        status=status,
        provider_id=str(uuid_of("provider-" + service_type)),
        provider_org="ngo-care",
        referrer_org="moswvy",
        previous_referral_id=previous,
        due_at=due_at,
        overdue=verb == "overdue",
        consent_override=False,
        outcome_code="service_received" if verb == "completed" else None,
        version=version,
    )
    return event("referrals", f"referrals.referral.{verb}.v1", referral_id, data, when)


def unmatched_event(
    child_id: str, *, commune: str, service_type: str, occurred_at: str, when: str | None = None
) -> CloudEvent:
    """A referrals.referral.unmatched.v1: routing found no provider for the child's referral
    (published once per child, service type and month by the referrals service)."""
    data = ReferralUnmatchedV1(
        child_id=child_id,
        service_type=service_type,
        urgency="high",
        commune_code=commune,
        village_code=None,
        occurred_at=occurred_at,
    )
    return event(
        "referrals", "referrals.referral.unmatched.v1", child_id, data, when or occurred_at
    )


def grant_event(
    verb: str,
    grant_id: str,
    *,
    child_id: str,
    commune: str,
    category: str,
    amount: int,
    version: int,
    when: str,
) -> CloudEvent:
    status = {"requested": "requested"}.get(verb, verb)
    fields: dict[str, Any] = {
        "grant_id": grant_id,
        "fund_id": str(uuid_of("fund-" + commune)),
        "child_id": child_id,
        "commune_code": commune,
        "category": category,
        "shock": None,
        "amount_khr": amount,
        "status": status,
        "repeat_within_30_days": False,
        "version": version,
    }
    model: BaseModel = (
        GrantDisbursedV1(**fields, method="cash") if verb == "disbursed" else GrantV1(**fields)
    )
    return event("funds", f"funds.grant.{verb}.v1", grant_id, model, when)


def fund_events(commune: str, when: str) -> list[CloudEvent]:
    fund_id = str(uuid_of("fund-" + commune))
    base: dict[str, Any] = {
        "fund_id": fund_id,
        "commune_code": commune,
        "fiscal_year": 2025,
        "budget_khr": 10_000_000,
        "max_grant_khr": 500_000,
        "approval_threshold_khr": 300_000,
        "topped_up_khr": 0,
        "committed_khr": 0,
        "disbursed_khr": 0,
        "available_khr": 10_000_000,
        "version": 1,
    }
    created = event("funds", "funds.fund.created.v1", fund_id, FundV1(**base), when)
    topped = {**base, "version": 2, "topped_up_khr": 1000, "available_khr": 10_001_000}
    return [
        created,
        event(
            "funds",
            "funds.fund.topped_up.v1",
            fund_id,
            FundToppedUpV1(**topped, amount_khr=1000),
            when,
        ),
    ]


def provider_event(
    provider_id: str,
    *,
    areas: list[str],
    service_types: list[str],
    version: int,
    when: str,
    active: bool = True,
) -> CloudEvent:
    data = ProviderUpsertedV1(
        provider_id=provider_id,
        org=f"org-{provider_id[:4]}",
        service_types=service_types,
        areas=areas,
        capacity=10,
        active=active,
        version=version,
    )
    return event("referrals", "referrals.provider.upserted.v1", provider_id, data, when)


def uuid_of(name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"komar-test:{name}"))


async def publish(nats_url: str, events: Sequence[CloudEvent], *, msg_suffix: str = "") -> None:
    """Publish onto the real streams as the relay does: subject = type, Nats-Msg-Id = id."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        for stream, subjects in STREAMS.items():
            try:
                await js.stream_info(stream)
            except nats.js.errors.NotFoundError:
                await js.add_stream(
                    StreamConfig(name=stream, subjects=subjects, storage=StorageType.FILE)
                )
        for e in events:
            await js.publish(
                e.type, e.model_dump_json().encode(), headers={"Nats-Msg-Id": e.id + msg_suffix}
            )
    finally:
        await nc.close()


async def caught_up(api: httpx.AsyncClient, headers: dict[str, str], timeout: float = 60) -> dict:
    """Wait until every stream's consumer has applied everything; the status document."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        r = await api.get("/v1/indicators/status", headers=headers)
        assert r.status_code == 200, r.text
        doc = r.json()
        if all(s.get("lag") == 0 for s in doc["streams"]):
            return dict(doc)
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"indicators did not catch up: {doc}")
        await asyncio.sleep(0.2)


def repo_path() -> Path:
    return Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
async def loaded(
    indicators_app: FastAPI, own_nats: EmbeddedNats, keys: SigningKeys
) -> list[CloudEvent]:
    """The scripted scenario, published and applied."""
    from tests.indicators.scenario import scenario_events

    events = scenario_events()
    await publish(own_nats.url, events)
    transport = httpx.ASGITransport(app=indicators_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://indicators") as client:
        await caught_up(client, keys.headers(areas=["KH"], scope=NATIONAL_READ))
    return events


async def durables_with_short_ack_wait(nats_url: str) -> None:
    """The service's durables, made beforehand with a 2 s ack wait (it binds to existing ones),
    so what a stopped or killed process had fetched but not acked comes back quickly."""
    await publish(nats_url, [])  # creates the streams
    nc = await nats.connect(nats_url)
    try:
        jsm = nc.jetstream()
        for stream, (durable, subject) in jetstream.CONSUMERS.items():
            await jsm.add_consumer(stream, short_ack_durable(durable, subject))
    finally:
        await nc.close()
