"""registry.child.* events: exactly once, minimal, and surviving a broker outage."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter

import httpx

from tests.registry.conftest import child_body
from tests.support import SigningKeys, stream_events

FORBIDDEN_IN_EVENTS = (
    "given_name",
    "family_name",
    "caregiver",
    "phone",
    "close_reason",
    "birth_date",
)


async def wait_for_events(
    nats_url: str, child_ids: set[str], verb: str, timeout: float = 60
) -> list[dict]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        events = [
            e
            for e in await stream_events(nats_url, "REGISTRY", f"registry.child.{verb}.v1")
            if e["subject"] in child_ids
        ]
        if {
            e["subject"] for e in events
        } == child_ids or asyncio.get_running_loop().time() > deadline:
            return events
        await asyncio.sleep(0.5)


async def test_each_registration_gives_exactly_one_event_without_personal_data(
    api: httpx.AsyncClient, keys: SigningKeys, nats_url: str
) -> None:
    h = {
        **keys.headers(org=f"ngo-{uuid.uuid4().hex[:6]}", org_type="partner"),
        "X-Request-ID": "req-abc-123",
    }
    ids = set()
    for _ in range(5):
        r = await api.post("/v1/registry/children", json=child_body(), headers=h)
        ids.add(r.json()["id"])
    events = await wait_for_events(nats_url, ids, "registered")
    assert Counter(e["subject"] for e in events) == dict.fromkeys(ids, 1)
    event = events[0]
    assert event["specversion"] == "1.0"
    assert event["source"] == "/services/registry"
    assert event["type"] == "registry.child.registered.v1"
    assert event["_msg_id"] == event["id"]
    assert event["requestid"] == "req-abc-123"
    assert event["data"]["birth_month"] == "2015-04"
    text = json.dumps(event)
    for word in ("Sokha", "Chan", "Dara", "345 678", *FORBIDDEN_IN_EVENTS):
        assert word not in text


async def test_update_close_reopen_events_name_fields_not_values(
    api: httpx.AsyncClient, keys: SigningKeys, nats_url: str
) -> None:
    h = keys.headers(org=f"ngo-{uuid.uuid4().hex[:6]}", org_type="partner")
    child = (await api.post("/v1/registry/children", json=child_body(), headers=h)).json()
    url = f"/v1/registry/children/{child['id']}"
    await api.patch(url, json={"given_name": "Secretname"}, headers={**h, "If-Match": '"1"'})
    await api.post(f"{url}/close", json={"reason": "Secretreason"}, headers=h)
    await api.post(f"{url}/reopen", headers=h)
    updated = await wait_for_events(nats_url, {child["id"]}, "updated")
    assert updated[0]["data"]["changed"] == ["given_name"]
    closed = await wait_for_events(nats_url, {child["id"]}, "closed")
    reopened = await wait_for_events(nats_url, {child["id"]}, "reopened")
    assert closed[0]["data"]["status"] == "closed"
    assert reopened[0]["data"]["version"] == 4
    for event in (*updated, *closed, *reopened):
        assert "Secret" not in json.dumps(event)


async def test_broker_outage_loses_no_event_and_the_api_keeps_answering(
    api: httpx.AsyncClient, keys: SigningKeys, nats_server, nats_url: str
) -> None:
    h = keys.headers(org=f"ngo-{uuid.uuid4().hex[:6]}", org_type="partner")
    ids: set[str] = set()

    async def register(n: int) -> None:
        for _ in range(n):
            r = await api.post("/v1/registry/children", json=child_body(), headers=h)
            assert r.status_code == 201
            ids.add(r.json()["id"])

    await register(20)
    await asyncio.to_thread(nats_server.stop)
    try:
        await register(30)  # the broker is away: the API still answers
    finally:
        await asyncio.to_thread(nats_server.start)
    await register(10)
    events = await wait_for_events(nats_url, ids, "registered", timeout=90)
    assert Counter(e["subject"] for e in events) == dict.fromkeys(ids, 1)


async def test_care_setting_has_a_history_and_a_move_home_is_one_reintegrated_event(
    api: httpx.AsyncClient, keys: SigningKeys, nats_url: str
) -> None:
    h = keys.headers(org=f"ngo-{uuid.uuid4().hex[:6]}", org_type="partner")
    plain = (await api.post("/v1/registry/children", json=child_body(), headers=h)).json()
    assert plain["care_setting"] == "family"
    r = await api.post(
        "/v1/registry/children",
        json=child_body(care_setting="residential_institution"),
        headers=h,
    )
    child = r.json()
    assert child["care_setting"] == "residential_institution"
    url = f"/v1/registry/children/{child['id']}"
    bad = await api.patch(url, json={"care_setting": "orphanage"}, headers={**h, "If-Match": '"1"'})
    assert bad.status_code == 422
    none = await api.patch(url, json={"care_setting": None}, headers={**h, "If-Match": '"1"'})
    assert none.status_code == 422
    # Into a group home is no reintegration; from there home is none either.
    for version, setting in enumerate(("group_home", "residential_institution", "kinship"), 1):
        r = await api.patch(
            url, json={"care_setting": setting}, headers={**h, "If-Match": f'"{version}"'}
        )
        assert r.status_code == 200, r.text
        assert r.json()["care_setting"] == setting
    history = (await api.get(f"{url}/history", headers=h)).json()["items"]
    moves = [e["changes"]["care_setting"] for e in history if "care_setting" in e["changes"]]
    assert moves == [
        {"old": "residential_institution", "new": "group_home"},
        {"old": "group_home", "new": "residential_institution"},
        {"old": "residential_institution", "new": "kinship"},
    ]
    events = await wait_for_events(nats_url, {child["id"]}, "reintegrated")
    assert len(events) == 1
    data = events[0]["data"]
    assert data["from_care_setting"] == "residential_institution"
    assert data["care_setting"] == "kinship"
    assert data["version"] == 4
    assert len(data["reintegrated_on"]) == 10
    text = json.dumps(events[0])
    for word in ("Sokha", "Chan", *FORBIDDEN_IN_EVENTS):
        assert word not in text
    updated = await wait_for_events(nats_url, {child["id"]}, "updated")
    assert [e["data"]["changed"] for e in updated] == [["care_setting"]] * 3
