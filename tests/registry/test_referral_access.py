"""Access follows referrals: a provider organisation reads a child while its referral is active."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import nats

from tests.registry.conftest import child_body
from tests.support import SigningKeys, referral_event


async def publish_referral(
    nats_url: str,
    referral_id: str,
    child_id: str,
    org: str,
    status: str,
    version: int,
    at: datetime | None = None,
) -> None:
    """Publish a referral event exactly as the referrals service does (at `at`)."""
    event = referral_event(
        child_id, provider_org=org, status=status, version=version, referral_id=referral_id, at=at
    )
    nc = await nats.connect(nats_url)
    try:
        await nc.jetstream().publish(
            event.type, event.model_dump_json().encode(), headers={"Nats-Msg-Id": event.id}
        )
    finally:
        await nc.close()


async def status_until(api: httpx.AsyncClient, url: str, headers: dict, want: int) -> int:
    for _ in range(100):
        code = (await api.get(url, headers=headers)).status_code
        if code == want:
            return code
        await asyncio.sleep(0.1)
    return code


async def test_provider_reads_child_after_accepting_and_not_after_cancel(
    api: httpx.AsyncClient, keys: SigningKeys, nats_url: str
) -> None:
    owner = keys.headers(org=f"ngo-{uuid.uuid4().hex[:6]}", org_type="partner", areas=["120101"])
    child = (await api.post("/v1/registry/children", json=child_body(), headers=owner)).json()
    provider_org = f"clinic-{uuid.uuid4().hex[:6]}"
    provider = keys.headers(org=provider_org, org_type="partner", areas=["1201"])
    url = f"/v1/registry/children/{child['id']}"
    referral = str(uuid.uuid4())

    await publish_referral(nats_url, referral, child["id"], provider_org, "created", 1)
    assert (await api.get(url, headers=provider)).status_code == 404  # pending: not yet

    await publish_referral(nats_url, referral, child["id"], provider_org, "accepted", 2)
    assert await status_until(api, url, provider, 200) == 200
    listed = await api.get("/v1/registry/children", headers=provider)
    assert [c["id"] for c in listed.json()["items"]] == [child["id"]]

    await publish_referral(nats_url, referral, child["id"], provider_org, "cancelled", 3)
    assert await status_until(api, url, provider, 404) == 404
    # a late, older event does not bring the access back
    await publish_referral(nats_url, referral, child["id"], provider_org, "accepted", 2)
    await asyncio.sleep(0.5)
    assert (await api.get(url, headers=provider)).status_code == 404


async def test_provider_outside_the_childs_area_still_cannot_read(
    api: httpx.AsyncClient, keys: SigningKeys, nats_url: str
) -> None:
    owner = keys.headers(org=f"ngo-{uuid.uuid4().hex[:6]}", org_type="partner", areas=["120101"])
    child = (await api.post("/v1/registry/children", json=child_body(), headers=owner)).json()
    provider_org = f"clinic-{uuid.uuid4().hex[:6]}"
    far_away = keys.headers(org=provider_org, org_type="partner", areas=["02"])
    await publish_referral(nats_url, str(uuid.uuid4()), child["id"], provider_org, "accepted", 2)
    await asyncio.sleep(0.5)
    assert (
        await api.get(f"/v1/registry/children/{child['id']}", headers=far_away)
    ).status_code == 404


async def test_access_through_a_referral_is_read_only(
    api: httpx.AsyncClient, keys: SigningKeys, nats_url: str
) -> None:
    owner_org = f"ngo-{uuid.uuid4().hex[:6]}"
    owner = keys.headers(org=owner_org, org_type="partner", areas=["120101"])
    child = (await api.post("/v1/registry/children", json=child_body(), headers=owner)).json()
    provider_org = f"clinic-{uuid.uuid4().hex[:6]}"
    provider = keys.headers(org=provider_org, org_type="partner", areas=["1201"])
    url = f"/v1/registry/children/{child['id']}"
    await publish_referral(nats_url, str(uuid.uuid4()), child["id"], provider_org, "accepted", 2)
    assert await status_until(api, url, provider, 200) == 200

    etag = {"If-Match": f'"{child["version"]}"', "Content-Type": "application/merge-patch+json"}
    patched = await api.patch(url, content=b'{"risk_level": "high"}', headers={**provider, **etag})
    assert patched.status_code == 403, patched.text
    assert "read-only" in patched.json()["detail"]
    closed = await api.post(f"{url}/close", json={"reason": "moved"}, headers=provider)
    assert closed.status_code == 403
    reopened = await api.post(f"{url}/reopen", json={}, headers=provider)
    assert reopened.status_code == 403
    assert (await api.get(url, headers=owner)).json()["version"] == child["version"]
    # government staff of the place may change it; another partner does not see it at all
    government = keys.headers(org="moswvy-phnom-penh", org_type="government", areas=["1201"])
    ok = await api.patch(url, content=b'{"risk_level": "high"}', headers={**government, **etag})
    assert ok.status_code == 200, ok.text
    stranger = keys.headers(org=f"ngo-{uuid.uuid4().hex[:6]}", org_type="partner", areas=["12"])
    assert (
        await api.post(f"{url}/close", json={"reason": "x"}, headers=stranger)
    ).status_code == 404


async def test_a_completed_referral_gives_access_for_30_days(
    api: httpx.AsyncClient, keys: SigningKeys, nats_url: str
) -> None:
    owner = keys.headers(org=f"ngo-{uuid.uuid4().hex[:6]}", org_type="partner", areas=["120101"])
    recent, old = [
        (await api.post("/v1/registry/children", json=child_body(), headers=owner)).json()
        for _ in range(2)
    ]
    provider_org = f"clinic-{uuid.uuid4().hex[:6]}"
    provider = keys.headers(org=provider_org, org_type="partner", areas=["1201"])
    now = datetime.now(UTC)
    # in this order: once the second applies, so has the first (one consumer, in order)
    await publish_referral(
        nats_url,
        str(uuid.uuid4()),
        old["id"],
        provider_org,
        "completed",
        3,
        at=now - timedelta(days=31),
    )
    await publish_referral(
        nats_url,
        str(uuid.uuid4()),
        recent["id"],
        provider_org,
        "completed",
        3,
        at=now - timedelta(days=29),
    )
    recent_url = f"/v1/registry/children/{recent['id']}"
    assert await status_until(api, recent_url, provider, 200) == 200
    assert (
        await api.get(f"/v1/registry/children/{old['id']}", headers=provider)
    ).status_code == 404
    listed = await api.get("/v1/registry/children", headers=provider)
    assert [c["id"] for c in listed.json()["items"]] == [recent["id"]]
