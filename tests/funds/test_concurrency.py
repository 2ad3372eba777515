"""Races a treasurer would notice: overspending and paying twice."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest
from fastapi import FastAPI

from libs.common.events.bus import EventBus
from tests.funds.conftest import (
    People,
    add_children,
    make_fund,
    make_grant,
)
from tests.support import stream_events


async def relay_flushed(app: FastAPI, timeout: float = 30) -> None:
    """Until every event written so far is on the stream."""
    deadline = asyncio.get_running_loop().time() + timeout
    while await app.state.runtime.relay.pending():
        assert asyncio.get_running_loop().time() < deadline, "relay did not flush"
        await asyncio.sleep(0.1)


async def test_25_racing_approvals_never_overspend_the_fund(
    api: httpx.AsyncClient, funds_app: FastAPI, registry_bus: EventBus, people: People
) -> None:
    children = await add_children(funds_app, registry_bus, 25)
    fund = await make_fund(
        api, people, budget_khr=1_000_000, max_grant_khr=100_000, approval_threshold_khr=100_000
    )
    grants = [await make_grant(api, people, fund["id"], c, amount_khr=100_000) for c in children]

    recon_url = f"/v1/funds/reconciliation?fund_id={fund['id']}"

    async def reconcile_meanwhile() -> list[dict]:
        seen = []
        for _ in range(8):  # a treasurer's screen refreshing while approvals land
            seen.append((await api.get(recon_url, headers=people.manager)).json())
            await asyncio.sleep(0.02)
        return seen

    *results, meanwhile = await asyncio.gather(
        *[api.post(f"/v1/funds/grants/{g['id']}/approve", headers=people.approver) for g in grants],
        reconcile_meanwhile(),
    )
    codes = Counter(r.status_code for r in results)
    assert codes == {200: 10, 409: 15}, codes
    assert all(r["balanced"] for r in meanwhile), [r["problems"] for r in meanwhile]
    assert all(r["fund"]["available_khr"] >= 0 for r in meanwhile)
    for r in results:
        if r.status_code == 409:
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json()["detail"] == "insufficient funds: available 0, needed 100000"
    state = (await api.get(f"/v1/funds/funds/{fund['id']}", headers=people.manager)).json()
    assert (state["committed_khr"], state["available_khr"]) == (1_000_000, 0)

    ledger = (
        await api.get(f"/v1/funds/funds/{fund['id']}/ledger?limit=500", headers=people.manager)
    ).json()["items"]
    approved_ids = {r.json()["id"] for r in results if r.status_code == 200}
    assert sorted(e["grant_id"] for e in ledger) == sorted(approved_ids)
    refused = [g for g, r in zip(grants, results, strict=True) if r.status_code == 409]
    for g in refused[:3]:  # a refused approval leaves no trace: still requested, no approval
        again = (await api.get(f"/v1/funds/grants/{g['id']}", headers=people.manager)).json()
        assert (again["status"], again["approvals"]) == ("requested", [])
    recon = (await api.get(recon_url, headers=people.manager)).json()
    assert recon["balanced"], recon["problems"]
    assert recon["grants_by_status"]["approved"] == {"count": 10, "amount_khr": 1_000_000}
    assert recon["grants_by_status"]["requested"] == {"count": 15, "amount_khr": 1_500_000}


@pytest.mark.parametrize("idempotency_key", [None, "pay-once-1"])
async def test_20_racing_disbursements_pay_once(
    api: httpx.AsyncClient,
    funds_app: FastAPI,
    registry_bus: EventBus,
    people: People,
    nats_url: str,
    idempotency_key: str | None,
) -> None:
    [child] = await add_children(funds_app, registry_bus)
    fund = await make_fund(api, people)
    grant = await make_grant(api, people, fund["id"], child, amount_khr=120_000)
    await api.post(f"/v1/funds/grants/{grant['id']}/approve", headers=people.approver)
    headers = dict(people.disburser)
    if idempotency_key:
        headers["Idempotency-Key"] = f"{idempotency_key}-{people.tag}"
    url = f"/v1/funds/grants/{grant['id']}/disburse"
    body = {"method": "mobile_money", "reference": f"WING-{people.tag}"}

    results = await asyncio.gather(*[api.post(url, json=body, headers=headers) for _ in range(20)])
    codes = Counter(r.status_code for r in results)
    assert set(codes) <= {200, 409}, codes
    paid = [r for r in results if r.status_code == 200]
    if idempotency_key is None:
        assert codes == {200: 1, 409: 19}
        conflicts = [r.json()["detail"] for r in results if r.status_code == 409]
        assert set(conflicts) == {"the grant is already disbursed"}
    else:  # the winner, its replays, and 409s for those that arrived while it ran
        assert paid
        assert len({r.content for r in paid}) == 1
        later = await api.post(url, json=body, headers=headers)
        assert later.status_code == 200
        assert later.headers["idempotent-replayed"] == "true"
        assert later.content == paid[0].content
    assert paid[0].json()["status"] == "disbursed"
    without_key = await api.post(url, json=body, headers=people.disburser)
    assert without_key.status_code == 409

    ledger = (await api.get(f"/v1/funds/funds/{fund['id']}/ledger", headers=people.manager)).json()[
        "items"
    ]
    assert [e["kind"] for e in ledger] == ["commitment", "disbursement"]
    state = (await api.get(f"/v1/funds/funds/{fund['id']}", headers=people.manager)).json()
    assert (state["disbursed_khr"], state["committed_khr"]) == (120_000, 0)

    await relay_flushed(funds_app)
    events = await stream_events(nats_url, "FUNDS", "funds.grant.disbursed.v1")
    assert [e["subject"] for e in events].count(grant["id"]) == 1


async def test_a_payment_reference_pays_once_per_fund_and_method(
    api: httpx.AsyncClient, funds_app: FastAPI, registry_bus: EventBus, people: People
) -> None:
    a, b = await add_children(funds_app, registry_bus, 2)
    fund = await make_fund(api, people)
    grants = [await make_grant(api, people, fund["id"], c) for c in (a, b)]
    for g in grants:
        await api.post(f"/v1/funds/grants/{g['id']}/approve", headers=people.approver)
    body = {"method": "bank", "reference": f"ACLEDA-{people.tag}"}
    results = await asyncio.gather(
        *[
            api.post(f"/v1/funds/grants/{g['id']}/disburse", json=body, headers=people.disburser)
            for g in grants
        ]
    )
    assert sorted(r.status_code for r in results) == [200, 409]
    refused = next(r for r in results if r.status_code == 409)
    assert "payment reference" in refused.json()["detail"]
    # the same reference by another method is another payment
    loser = grants[[r.status_code for r in results].index(409)]
    r = await api.post(
        f"/v1/funds/grants/{loser['id']}/disburse",
        json={**body, "method": "cash"},
        headers=people.disburser,
    )
    assert r.status_code == 200
