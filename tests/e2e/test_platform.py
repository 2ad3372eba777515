"""The platform as a partner sees it, through the gateway, while its parts fail."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx

from tests.e2e.conftest import Platform, partner_client, token
from tests.registry.conftest import child_body
from tests.support import stream_events


async def registered_events(platform: Platform, ids: set[str], timeout: float = 90) -> Counter[str]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        events = await stream_events(platform.nats.url, "REGISTRY", "registry.child.registered.v1")
        seen = Counter(e["subject"] for e in events if e["subject"] in ids)
        if set(seen) == ids or asyncio.get_running_loop().time() > deadline:
            return seen
        await asyncio.sleep(0.5)


async def test_200_registrations_through_a_10_second_broker_outage(
    platform: Platform, gateway: httpx.AsyncClient
) -> None:
    client_id, secret = await partner_client(gateway, platform, ["12"])
    headers = {"Authorization": f"Bearer {await token(gateway, client_id, secret)}"}
    ids: set[str] = set()
    codes: list[int] = []

    async def register(n: int) -> None:
        for i in range(n):
            r = await gateway.post(
                "/v1/registry/children", json=child_body(given_name=f"Kid{i}"), headers=headers
            )
            codes.append(r.status_code)
            if r.status_code == 201:
                ids.add(r.json()["id"])

    async def outage() -> None:
        await asyncio.sleep(1.0)
        await asyncio.to_thread(platform.nats.stop)
        await asyncio.sleep(10)
        await asyncio.to_thread(platform.nats.start)

    await asyncio.gather(register(200), outage())
    assert codes == [201] * 200  # the API kept answering
    seen = await registered_events(platform, ids)
    assert seen == dict.fromkeys(ids, 1)  # all 200 arrived, none twice


async def test_data_and_unpublished_events_survive_killing_every_process(
    platform: Platform, gateway: httpx.AsyncClient
) -> None:
    client_id, secret = await partner_client(gateway, platform, ["12"])
    headers = {"Authorization": f"Bearer {await token(gateway, client_id, secret)}"}
    await asyncio.to_thread(platform.nats.stop)  # events pile up in the outbox
    ids = []
    for _ in range(20):
        r = await gateway.post("/v1/registry/children", json=child_body(), headers=headers)
        assert r.status_code == 201
        ids.append(r.json()["id"])
    await asyncio.to_thread(platform.kill_everything)
    await asyncio.to_thread(platform.start)
    headers = {"Authorization": f"Bearer {await token(gateway, client_id, secret)}"}
    for child_id in ids:
        r = await gateway.get(f"/v1/registry/children/{child_id}", headers=headers)
        assert r.status_code == 200
    seen = await registered_events(platform, set(ids))
    assert seen == dict.fromkeys(ids, 1)
