"""Unmet needs: a referral routing finds no provider for answers 422 as ever, and the need is
recorded once per child, service type and month (Cambodia time), with one
`referrals.referral.unmatched.v1`, however often and however concurrently it is asked."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import FastAPI
from sqlalchemy import text

from libs.common import clock
from services.referrals import models
from tests.referrals.conftest import World, wait_for_events
from tests.support import migration_drift

UNMATCHED = "referrals.referral.unmatched.v1"
EVENT_FIELDS = {
    "child_id",
    "service_type",
    "urgency",
    "commune_code",
    "village_code",
    "occurred_at",
}


async def needs(world: World, child_id: str) -> list[dict[str, Any]]:
    """The child's rows of unmatched_needs, by service type."""
    async with world.db.transaction() as conn:
        rows = await conn.execute(
            text(
                "SELECT * FROM referrals.unmatched_needs WHERE child_id = :id"
                " ORDER BY service_type, month"
            ),
            {"id": child_id},
        )
        return [dict(r) for r in rows.mappings()]


async def outbox_events(world: World, child_id: str) -> list[dict[str, Any]]:
    """The unmatched events written for the child (published or not)."""
    async with world.db.transaction() as conn:
        rows = await conn.execute(
            text(
                "SELECT payload FROM referrals.outbox WHERE type = :type"
                " AND payload->>'subject' = :id ORDER BY seq"
            ),
            {"type": UNMATCHED, "id": child_id},
        )
        return [dict(r) for r in rows.scalars()]


async def test_no_provider_answers_422_as_before_and_records_the_need_once(
    world: World, nats_url: str
) -> None:
    p = world.place
    await world.provider([p.district], ["health"])
    child = await world.child(village=p.village)
    h = {**world.headers(), "X-Request-ID": "req-unmatched-1"}

    r = await world.refer(
        child, "shelter", headers=h, urgency="high", reason="REASON-unmet-42", expect=422
    )
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert set(problem) == {
        "type",
        "title",
        "status",
        "detail",
        "instance",
        "errors",
        "service_type",
        "place_code",
        "place_name",
    }
    assert problem["service_type"] == "shelter"
    assert problem["place_code"] == p.village
    assert problem["errors"] == [
        {"field": "service_type", "message": f"no provider available at {p.village}"}
    ]

    [need] = await needs(world, child)
    assert need["service_type"] == "shelter"
    assert need["urgency"] == "high"
    assert (need["commune_code"], need["village_code"]) == (p.commune, p.village)
    assert need["month"] == need["occurred_at"].astimezone(clock.CAMBODIA).strftime("%Y-%m")
    listed = await world.api.get(f"/v1/referrals?child_id={child}", headers=world.headers())
    assert listed.json()["items"] == []  # no referral was made

    [event] = await wait_for_events(nats_url, {child}, {UNMATCHED}, 1)
    assert event["source"] == "/services/referrals"
    assert event["subject"] == child
    assert event["requestid"] == "req-unmatched-1"
    assert event["_msg_id"] == event["id"]
    assert set(event["data"]) == EVENT_FIELDS
    assert event["data"] == {
        "child_id": child,
        "service_type": "shelter",
        "urgency": "high",
        "commune_code": p.commune,
        "village_code": p.village,
        "occurred_at": event["data"]["occurred_at"],
    }
    assert "REASON-unmet-42" not in json.dumps(event)
    assert "moswvy" not in json.dumps(event["data"])  # nor who asked


async def test_the_same_need_asked_again_and_at_once_is_recorded_once(world: World) -> None:
    child = await world.child()
    key = {**world.headers(), "Idempotency-Key": "unmatched-once"}
    first = await world.refer(child, "legal", expect=422)
    again = [await world.refer(child, "legal", expect=422) for _ in range(3)]
    keyed = [await world.refer(child, "legal", headers=key, expect=422) for _ in range(2)]
    assert {r.json()["detail"] for r in [*again, *keyed]} == {first.json()["detail"]}
    assert len(await needs(world, child)) == 1
    assert len(await outbox_events(world, child)) == 1

    # A child never asked for before, ten identical requests at once: every one answers 422
    # (none 500), one need, one event.
    other = await world.child()
    at_once = await asyncio.gather(*[world.refer(other, "legal", expect=None) for _ in range(10)])
    assert [r.status_code for r in at_once] == [422] * 10, [r.text for r in at_once]
    assert len(await needs(world, other)) == 1
    assert len(await outbox_events(world, other)) == 1


async def test_another_service_type_is_another_need(world: World) -> None:
    child = await world.child()
    await world.refer(child, "shelter", expect=422)
    await world.refer(child, "legal", expect=422)
    await world.refer(child, "shelter", expect=422)
    assert [n["service_type"] for n in await needs(world, child)] == ["legal", "shelter"]
    events = await outbox_events(world, child)
    assert sorted(e["data"]["service_type"] for e in events) == ["legal", "shelter"]
    assert len({e["id"] for e in events}) == 2


async def test_only_routing_that_finds_no_provider_records_a_need(world: World) -> None:
    p = world.place
    full = await world.provider([p.district], ["health"], capacity=0)
    elsewhere = await world.provider([p.other_commune], ["health"])
    child = await world.child()
    # a named provider that cannot take it: 422 naming the provider, nothing recorded
    for provider in (full, elsewhere):
        r = await world.refer(child, "health", provider_id=provider["id"], expect=422)
        assert r.json()["errors"][0]["field"] == "provider_id"
    # without consent, a partner is refused before any routing
    owned = await world.child(owner_org="ngo-owner", consent=False)
    partner = world.headers(org="ngo-owner", org_type="partner")
    await world.refer(owned, "health", headers=partner, expect=403)
    # invalid input never reaches routing
    await world.refer(child, "not-a-service", expect=422)
    # a child the service does not know
    await world.refer("00000000-0000-4000-8000-000000000000", "health", expect=404)
    assert await needs(world, child) == []
    assert await needs(world, owned) == []
    assert await outbox_events(world, child) == []

    # routing itself: the only provider serving the place is full
    r = await world.refer(child, "health", expect=422)
    assert r.json()["errors"][0]["field"] == "service_type"
    assert [n["service_type"] for n in await needs(world, child)] == ["health"]


def test_who_receives_the_event() -> None:
    from libs.common import access
    from services.indicators.handlers import STREAM_HANDLERS
    from services.referrals.api import REFERRAL_CHANGES
    from services.webhooks import domain as webhooks

    _, subject, handlers = STREAM_HANDLERS["REFERRALS"]
    assert subject == "referrals.>"
    assert UNMATCHED in handlers  # counted by the indicators
    # about no referral: not a share, not a change of the referrals feed, not a webhook
    # (the consumers of referrals.referral.> ack it without applying anything)
    assert UNMATCHED not in access.REFERRAL_EVENT_TYPES
    assert UNMATCHED not in REFERRAL_CHANGES
    assert UNMATCHED not in webhooks.EVENT_TYPES


async def test_the_migrations_make_what_the_models_declare(
    pg_url: str, referrals_app: FastAPI
) -> None:
    assert await migration_drift(pg_url, models.SCHEMA, models.metadata) == []
