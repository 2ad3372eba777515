"""Races a user would notice: lost updates and doubled records."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from tests.registry.conftest import child_body
from tests.support import SigningKeys

pytestmark = pytest.mark.asyncio


async def test_two_patches_with_the_same_if_match_one_wins(
    api: httpx.AsyncClient, keys: SigningKeys
) -> None:
    h = keys.headers(org=f"ngo-{uuid.uuid4().hex[:6]}", org_type="partner")
    child = (await api.post("/v1/registry/children", json=child_body(), headers=h)).json()
    url = f"/v1/registry/children/{child['id']}"
    results = await asyncio.gather(
        api.patch(url, json={"risk_level": "high"}, headers={**h, "If-Match": '"1"'}),
        api.patch(url, json={"risk_level": "low"}, headers={**h, "If-Match": '"1"'}),
    )
    assert sorted(r.status_code for r in results) == [200, 412]
    final = (await api.get(url, headers=h)).json()
    assert final["version"] == 2
    winner = next(r for r in results if r.status_code == 200)
    assert final["risk_level"] == winner.json()["risk_level"]


async def test_fifty_parallel_posts_with_one_idempotency_key_create_one_child(
    api: httpx.AsyncClient, keys: SigningKeys
) -> None:
    org = f"ngo-{uuid.uuid4().hex[:6]}"
    h = {**keys.headers(org=org, org_type="partner", sub="sync-client"), "Idempotency-Key": "k-1"}
    body = child_body(given_name="Once")
    results = await asyncio.gather(
        *[api.post("/v1/registry/children", json=body, headers=h) for _ in range(50)]
    )
    codes = [r.status_code for r in results]
    assert set(codes) <= {201, 409}, codes
    created_ids = {r.json()["id"] for r in results if r.status_code == 201}
    assert len(created_ids) == 1
    listed = await api.get(
        "/v1/registry/children", headers=keys.headers(org=org, org_type="partner")
    )
    assert len(listed.json()["items"]) == 1
    replay = await api.post("/v1/registry/children", json=body, headers=h)
    assert replay.status_code == 201
    assert replay.json()["id"] in created_ids
    assert replay.headers["idempotent-replayed"] == "true"
    different = await api.post(
        "/v1/registry/children", json=child_body(given_name="Other"), headers=h
    )
    assert different.status_code == 422
