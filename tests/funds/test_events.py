"""funds.* events: the fields indicators need, no free text, exactly once through an outage."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

import httpx
from fastapi import FastAPI

from libs.common.events.bus import EventBus
from tests.funds.conftest import (
    People,
    add_children,
    make_fund,
    make_grant,
    wait_for_events,
)

GRANT_FIELDS = {
    "grant_id",
    "fund_id",
    "child_id",
    "commune_code",
    "category",
    "shock",
    "amount_khr",
    "status",
    "repeat_within_30_days",
    "version",
    "requested_org",  # an organisation's id: a partner sees the grants it requested
}


async def test_events_carry_codes_and_amounts_but_no_free_text(
    api: httpx.AsyncClient,
    funds_app: FastAPI,
    registry_bus: EventBus,
    people: People,
    nats_url: str,
) -> None:
    secret = f"zq{people.tag}"  # one marker inside every free text we send
    a, b, c = await add_children(funds_app, registry_bus, 3)
    fund = await make_fund(api, people, name=f"Fund {secret}-NAME")
    h = {**people.manager, "X-Request-ID": f"req-{people.tag}"}
    await api.post(
        f"/v1/funds/funds/{fund['id']}/top-ups",
        json={"amount_khr": 5000, "reference": f"{secret}-TOPUP"},
        headers=h,
    )
    flood = await make_grant(
        api,
        people,
        fund["id"],
        a,
        category="emergency_disaster",
        shock="flood",
        justification=f"house lost {secret}-JUSTIFICATION",
    )
    rice = await make_grant(
        api,
        people,
        fund["id"],
        b,
        category="material_support",
        amount_khr=80_000,
        items=[{"description": f"rice {secret}-ITEM", "quantity": 2, "unit_cost_khr": 40_000}],
    )
    bus_fare = await make_grant(api, people, fund["id"], c, category="medical_transport")
    g = "/v1/funds/grants"
    await api.post(f"{g}/{flood['id']}/approve", headers=people.approver)
    await api.post(
        f"{g}/{flood['id']}/disburse",
        json={"method": "cash", "reference": f"{secret}-PAYREF"},
        headers=people.disburser,
    )
    await api.post(
        f"{g}/{flood['id']}/reverse", json={"reason": f"{secret}-REVERSAL"}, headers=people.manager
    )
    await api.post(
        f"{g}/{rice['id']}/reject", json={"reason": f"{secret}-REJECTION"}, headers=people.approver
    )
    await api.post(
        f"{g}/{bus_fare['id']}/cancel",
        json={"reason": f"{secret}-CANCEL"},
        headers=people.requester,
    )

    expected = {
        "funds.fund.created.v1": {fund["id"]},
        "funds.fund.topped_up.v1": {fund["id"]},
        "funds.grant.requested.v1": {flood["id"], rice["id"], bus_fare["id"]},
        "funds.grant.approved.v1": {flood["id"]},
        "funds.grant.disbursed.v1": {flood["id"]},
        "funds.grant.reversed.v1": {flood["id"]},
        "funds.grant.rejected.v1": {rice["id"]},
        "funds.grant.cancelled.v1": {bus_fare["id"]},
    }
    everything = {fund["id"], flood["id"], rice["id"], bus_fare["id"]}
    deadline = asyncio.get_running_loop().time() + 60
    while True:  # until the last event of the story is out
        events = await wait_for_events(nats_url, "funds.>", everything)
        if any(e["type"] == "funds.grant.cancelled.v1" for e in events):
            break
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.2)
    for type_, subjects in expected.items():
        found = [e["subject"] for e in events if e["type"] == type_]
        assert Counter(found) == dict.fromkeys(subjects, 1), type_
    assert len(events) == sum(len(s) for s in expected.values())  # nothing else about them

    text = json.dumps(events)
    assert secret not in text  # no name, justification, item, reference or reason
    for event in events:
        assert event["source"] == "/services/funds"
        assert event["_msg_id"] == event["id"]
        if event["type"].startswith("funds.grant."):
            assert set(event["data"]) - {"method"} == GRANT_FIELDS
            assert event["data"]["commune_code"] == "120101"  # the child's commune
            assert event["data"]["status"] == event["type"].split(".")[2]
    paid = next(e for e in events if e["type"] == "funds.grant.disbursed.v1")
    assert paid["data"] | {"version": 0} == {
        "grant_id": flood["id"],
        "fund_id": fund["id"],
        "child_id": a,
        "commune_code": "120101",
        "category": "emergency_disaster",
        "shock": "flood",
        "amount_khr": 100_000,
        "status": "disbursed",
        "repeat_within_30_days": False,
        "method": "cash",
        "version": 0,
        "requested_org": flood["requested_by"]["org"],
    }
    topped = next(e for e in events if e["type"] == "funds.fund.topped_up.v1")
    assert topped["requestid"] == f"req-{people.tag}"
    assert (topped["data"]["amount_khr"], topped["data"]["available_khr"]) == (5000, 1_005_000)


async def test_a_broker_outage_during_approvals_loses_and_doubles_nothing(
    api: httpx.AsyncClient,
    funds_app: FastAPI,
    registry_bus: EventBus,
    people: People,
    nats_server,
    nats_url: str,
) -> None:
    children = await add_children(funds_app, registry_bus, 12)
    fund = await make_fund(api, people, budget_khr=2_000_000)
    grants = [await make_grant(api, people, fund["id"], c) for c in children]
    ids = {g["id"] for g in grants}

    await asyncio.to_thread(nats_server.stop)
    stopped = time.monotonic()
    try:
        results = await asyncio.gather(
            *[
                api.post(f"/v1/funds/grants/{g['id']}/approve", headers=people.approver)
                for g in grants
            ]
        )
        assert [r.status_code for r in results] == [200] * 12  # the API keeps answering
        await asyncio.sleep(max(0.0, 10 - (time.monotonic() - stopped)))
    finally:
        await asyncio.to_thread(nats_server.start)

    approved = await wait_for_events(nats_url, "funds.grant.approved.v1", ids, timeout=90)
    assert Counter(e["subject"] for e in approved) == dict.fromkeys(ids, 1)
    requested = await wait_for_events(nats_url, "funds.grant.requested.v1", ids)
    assert Counter(e["subject"] for e in requested) == dict.fromkeys(ids, 1)
