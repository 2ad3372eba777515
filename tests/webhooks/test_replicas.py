"""Two replicas of every service, the webhooks' two delivery workers claiming from the same
table: every change reaches the receiver, each under one webhook-id, and a record's changes
in the order of its versions, although the receiver fails a third of its requests."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.e2e.conftest import Platform, running_platform, token
from tests.trust.test_access import MERGE_PATCH, register
from tests.webhooks.test_platform import (
    CHILD_TYPES,
    COMMUNES,
    SETTINGS,
    Receivers,
    deliveries,
    hook,
    hook_caller,
    until,
)
from tests.webhooks.test_platform import receivers as receivers

CHILDREN, PATCHES = 15, 3


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    root = tmp_path_factory.mktemp("webhooks-replicas")
    with running_platform(root, replicas=2, settings=SETTINGS) as p:
        yield p


@pytest.fixture
async def gateway(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=platform.gateway, timeout=60) as client:
        yield client


async def test_two_workers_deliver_each_change_once_and_in_order(
    platform: Platform, gateway: httpx.AsyncClient, receivers: Receivers
) -> None:
    admin = {"Authorization": f"Bearer {await token(gateway, 'admin', platform.admin_secret)}"}
    commune = COMMUNES[10]
    partner = await hook_caller(gateway, admin, commune)
    rng = random.Random(12)
    receiver = receivers.new(lambda n: 500 if rng.random() < 0.33 else 200)
    endpoint = await hook(gateway, partner, receivers, receiver, CHILD_TYPES)

    async def changes() -> str:
        child = await register(gateway, partner, village_code=None, commune_code=commune)
        for version in range(1, PATCHES + 1):
            r = await gateway.patch(
                f"/v1/registry/children/{child['id']}",
                content=f'{{"risk_level": "{rng.choice(["low", "high"])}"}}'.encode(),
                headers={
                    **partner.headers,
                    "Content-Type": MERGE_PATCH,
                    "If-Match": f'"{version}"',
                },
            )
            assert r.status_code == 200, r.text
        return str(child["id"])

    children = await asyncio.gather(*(changes() for _ in range(CHILDREN)))
    wanted = {(c, v) for c in children for v in range(1, PATCHES + 2)}

    def delivered() -> set[tuple[str, int]]:
        return {
            (g.body["data"]["child_id"], g.body["data"]["version"]) for g in receiver.delivered()
        }

    await until(lambda: delivered() >= wanted, timeout=120)
    ids: dict[tuple[str, int], set[str]] = {}
    done: set[tuple[str, int]] = set()
    for g in receiver.got:
        key = (g.body["data"]["child_id"], g.body["data"]["version"])
        ids.setdefault(key, set()).add(g.id)
        if key[1] > 1:  # sent only once the version before was delivered
            assert (key[0], key[1] - 1) in done, f"{key} before the version before it"
        if 200 <= g.status < 300:
            done.add(key)
    assert set(ids) == wanted
    assert all(len(v) == 1 for v in ids.values())
    assert sum(1 for g in receiver.got if g.status >= 500) > 0  # the receiver did fail
    assert receiver.unverified == 0
    listed = await deliveries(gateway, partner, endpoint["id"])
    assert len(listed) == len(wanted)
