"""Change feeds, followed through the gateway of a running platform while it is written to.

- 20 concurrent writers make 2,000 changes, some held back in slow transactions; a reader
  following the registry's feed at the same time sees every one exactly once, and each
  record's versions in the order they committed.
- A reader of `updated_since` without overlap misses a change that commits late with an
  earlier time: the reason the feed exists.
- A feed never mentions what the caller may not see: another partner's child, another
  commune's; a provider's feed shows a child once a referral is accepted, and no longer
  once it is cancelled. Referrals and funds have their own feeds under the same rules.
- Cursors are opaque and checked; a cursor the feed has purged past answers 410.
"""

from __future__ import annotations

import asyncio
import random
import secrets
from collections import defaultdict
from typing import Any

import asyncpg
import httpx

from libs.common import places
from libs.common.http import encode_cursor
from tests.e2e.conftest import Platform
from tests.registry.conftest import child_body
from tests.trust.conftest import Caller, new_caller
from tests.trust.test_access import (
    CHILD_SCOPES,
    MERGE_PATCH,
    PROVIDER_SCOPES,
    act,
    eventually,
    grant_body,
    make_fund,
    provider_of,
    refer,
    register,
)

DISTRICT = "1701"  # Angkor Chum, Siem Reap: no other test writes there
WRITERS, CHILDREN_EACH, PATCHES_EACH = 20, 20, 80  # 20 x (20 + 80) = 2,000 changes
RISKS = ("low", "medium", "high")
READER_SCOPES = [*CHILD_SCOPES, "funds:read"]

Change = tuple[str, int]  # (record id, version)


async def follow(
    gateway: httpx.AsyncClient, who: Caller, feed: str, cursor: str | None
) -> tuple[list[dict[str, Any]], str]:
    """Every change the feed has for the caller after the cursor, and the cursor to go on."""
    items: list[dict[str, Any]] = []
    while True:
        params: dict[str, Any] = {"limit": 500}
        if cursor is not None:
            params["after"] = cursor
        r = await gateway.get(f"/v1/{feed}/changes", params=params, headers=who.headers)
        assert r.status_code == 200, r.text
        page = r.json()
        items += page["items"]
        if page["next_cursor"] == cursor:
            return items, cursor
        cursor = page["next_cursor"]


async def follow_until(
    gateway: httpx.AsyncClient,
    who: Caller,
    feed: str,
    cursor: str | None,
    change: tuple[str, int],
) -> tuple[list[dict[str, Any]], str]:
    """`follow` until the (id, version) change has come (a change enters the feed once the
    relay has taken it, moments after its commit), else for 15 s."""
    items: list[dict[str, Any]] = []
    deadline = asyncio.get_running_loop().time() + 15
    while True:
        more, cursor = await follow(gateway, who, feed, cursor)
        items += more
        if change in [(i["id"], i["version"]) for i in items]:
            return items, cursor
        if asyncio.get_running_loop().time() > deadline:
            return items, cursor
        await asyncio.sleep(0.1)


async def feed_end(gateway: httpx.AsyncClient, who: Caller, feed: str) -> str:
    """A cursor at the feed's end now."""
    return (await follow(gateway, who, feed, None))[1]


def patch_body(gateway: httpx.AsyncClient, who: Caller, child_id: str, version: int) -> Any:
    return gateway.patch(
        f"/v1/registry/children/{child_id}",
        content=f'{{"risk_level": "{random.choice(RISKS)}", "household_id_poor": '
        f'"{secrets.randbelow(10**8):08d}"}}'.encode(),
        headers={**who.headers, "Content-Type": MERGE_PATCH, "If-Match": f'"{version}"'},
    )


async def test_a_reader_sees_every_concurrent_change_once_in_commit_order(
    platform: Platform, gateway: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    writer = await new_caller(
        gateway,
        admin_headers,
        scopes=["registry:read", "registry:write"],
        areas=[DISTRICT],
        org_type="government",
    )
    communes = places.children_at(DISTRICT, "commune")
    start = await feed_end(gateway, writer, "registry")
    made: list[Change] = []
    registered: list[str] = []
    done = asyncio.Event()

    async def write(w: int) -> None:
        rng = random.Random(w)
        mine: dict[str, int] = {}
        for i in range(CHILDREN_EACH):
            body = child_body(
                given_name=f"Feed{w}x{i}",
                family_name=secrets.token_hex(3),
                village_code=None,
                commune_code=rng.choice(communes),
            )
            r = await gateway.post("/v1/registry/children", json=body, headers=writer.headers)
            assert r.status_code == 201, r.text
            mine[r.json()["id"]] = 1
            registered.append(r.json()["id"])
            made.append((r.json()["id"], 1))
        for _ in range(PATCHES_EACH):
            child_id = rng.choice(list(mine))
            r = await patch_body(gateway, writer, child_id, mine[child_id])
            assert r.status_code == 200, r.text
            mine[child_id] = r.json()["version"]
            made.append((child_id, mine[child_id]))

    async def hold_some_back() -> None:
        """Slow transactions: lock a few children now and then, so their changes wait while
        later ones commit (and commit later with the earlier time they began at)."""
        conn = await asyncpg.connect(platform.env["DATABASE_URL"])
        try:
            while not done.is_set():
                if registered:
                    ids = random.sample(registered, min(3, len(registered)))
                    async with conn.transaction():
                        await conn.execute(
                            "SELECT 1 FROM registry.children WHERE id = ANY($1::uuid[]) FOR UPDATE",
                            ids,
                        )
                        await asyncio.sleep(0.3)
                await asyncio.sleep(0.05)
        finally:
            await conn.close()

    seen: list[Change] = []

    async def read() -> None:
        cursor = start
        while True:
            items, cursor = await follow(gateway, writer, "registry", cursor)
            seen.extend((i["id"], i["version"]) for i in items)
            if done.is_set() and len(seen) >= len(made):
                return
            await asyncio.sleep(0.05)

    reader = asyncio.create_task(read())
    locker = asyncio.create_task(hold_some_back())
    try:
        await asyncio.gather(*(write(w) for w in range(WRITERS)))
    finally:
        done.set()
        await locker
    await asyncio.wait_for(reader, 60)

    assert len(made) == WRITERS * (CHILDREN_EACH + PATCHES_EACH)
    assert len(seen) == len(set(seen)), "a change was seen twice"
    assert set(seen) == set(made)
    versions: dict[str, list[int]] = defaultdict(list)
    for child_id, version in seen:
        versions[child_id].append(version)
    assert all(v == list(range(1, len(v) + 1)) for v in versions.values())


async def test_updated_since_without_overlap_misses_a_late_commit_the_feed_does_not(
    platform: Platform, gateway: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    writer = await new_caller(
        gateway,
        admin_headers,
        scopes=["registry:read", "registry:write"],
        areas=["1702"],
        org_type="government",
    )
    commune = places.children_at("1702", "commune")[0]  # where no other test writes
    late, early = [
        await register(gateway, writer, village_code=None, commune_code=commune) for _ in range(2)
    ]
    cursor = await feed_end(gateway, writer, "registry")
    since = max(late["updated_at"], early["updated_at"])

    conn = await asyncpg.connect(platform.env["DATABASE_URL"])
    try:
        async with conn.transaction():  # `late`'s change begins, then waits on this lock
            await conn.execute(
                "SELECT 1 FROM registry.children WHERE id = $1::uuid FOR UPDATE", late["id"]
            )
            slow = asyncio.create_task(patch_body(gateway, writer, late["id"], 1))
            await asyncio.sleep(0.5)
            r = await patch_body(gateway, writer, early["id"], 1)  # commits first
            assert r.status_code == 200, r.text
            # the partner's sync runs now: it sees `early` and moves past its time
            r = await gateway.get(
                "/v1/registry/children",
                params={"commune_code": commune, "updated_since": since},
                headers=writer.headers,
            )
            synced = {c["id"]: c["version"] for c in r.json()["items"]}
            assert synced[early["id"]] == 2
            assert synced.get(late["id"], 1) == 1
            since = r.json()["items"][-1]["updated_at"]
        assert (await slow).status_code == 200
    finally:
        await conn.close()

    # the next sync starts where the last one ended: `late` committed after it, with an
    # earlier time, and is missed; the feed has both, in the order they committed
    r = await gateway.get(
        "/v1/registry/children",
        params={"commune_code": commune, "updated_since": since},
        headers=writer.headers,
    )
    assert late["id"] not in {c["id"] for c in r.json()["items"]}
    items, _ = await follow_until(gateway, writer, "registry", cursor, (late["id"], 2))
    assert [(i["id"], i["version"]) for i in items] == [(early["id"], 2), (late["id"], 2)]


async def test_a_feed_mentions_only_what_the_caller_may_see(
    gateway: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    commune = places.children_at(DISTRICT, "commune")[1]
    other = places.children_at(DISTRICT, "commune")[2]
    owner = await new_caller(gateway, admin_headers, scopes=CHILD_SCOPES, areas=[commune])
    clinic = await new_caller(gateway, admin_headers, scopes=PROVIDER_SCOPES, areas=[DISTRICT])
    rival = await new_caller(gateway, admin_headers, scopes=READER_SCOPES, areas=[commune])
    elsewhere = await new_caller(
        gateway, admin_headers, scopes=READER_SCOPES, areas=[other], org_type="government"
    )
    callers = {"clinic": clinic, "rival": rival, "elsewhere": elsewhere}
    cursors = {k: await feed_end(gateway, c, "registry") for k, c in callers.items()}
    child = await register(gateway, owner, village_code=None, commune_code=commune)

    async def registry_changes(name: str) -> list[Change]:
        items, cursors[name] = await follow(gateway, callers[name], "registry", cursors[name])
        return [(i["id"], i["version"]) for i in items]

    provider = await provider_of(gateway, clinic, [commune])
    referral = await refer(gateway, owner, child["id"], provider)
    for name in callers:
        assert await registry_changes(name) == [], name  # pending: nothing yet

    await act(gateway, clinic, referral["id"], "accept")
    url = f"/v1/registry/children/{child['id']}"
    await eventually(lambda: gateway.get(url, headers=clinic.headers), 200)
    r = await gateway.patch(
        url,
        content=b'{"risk_level": "high"}',
        headers={**owner.headers, "Content-Type": MERGE_PATCH, "If-Match": '"1"'},
    )
    assert r.status_code == 200, r.text
    items, cursors["clinic"] = await follow_until(
        gateway, clinic, "registry", cursors["clinic"], (child["id"], 2)
    )
    assert [(i["id"], i["version"]) for i in items] == [(child["id"], 2)]  # from acceptance
    items, _ = await follow(gateway, clinic, "referrals", None)
    assert referral["id"] in {i["id"] for i in items}

    await act(gateway, owner, referral["id"], "cancel")
    await eventually(lambda: gateway.get(url, headers=clinic.headers), 404)
    r = await gateway.patch(
        url,
        content=b'{"risk_level": "low"}',
        headers={**owner.headers, "Content-Type": MERGE_PATCH, "If-Match": '"2"'},
    )
    assert r.status_code == 200, r.text
    # the owner's feed has the change; the clinic's no longer does
    owned, _ = await follow_until(gateway, owner, "registry", None, (child["id"], 3))
    assert (child["id"], 3) in [(i["id"], i["version"]) for i in owned]
    assert await registry_changes("clinic") == []
    for name in ("rival", "elsewhere"):
        assert await registry_changes(name) == [], name
        for feed in ("referrals", "funds"):
            items, _ = await follow(gateway, callers[name], feed, None)
            assert child["id"] not in str(items)
            assert referral["id"] not in str(items)


async def test_the_funds_feed_follows_a_grant(
    gateway: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    commune = places.children_at(DISTRICT, "commune")[3]
    worker = await new_caller(
        gateway,
        admin_headers,
        scopes=[*CHILD_SCOPES, "funds:read", "funds:request", "funds:manage"],
        areas=[commune],
        org_type="government",
    )
    elsewhere = await new_caller(
        gateway,
        admin_headers,
        scopes=["funds:read"],
        areas=[places.children_at(DISTRICT, "commune")[4]],
        org_type="government",
    )
    cursor = await feed_end(gateway, worker, "funds")
    child = await register(gateway, worker, village_code=None, commune_code=commune)
    fund = await make_fund(gateway, worker, commune)
    r = await eventually(
        lambda: gateway.post(
            "/v1/funds/grants", json=grant_body(fund["id"], child["id"]), headers=worker.headers
        ),
        201,
    )
    grant = r.json()
    items, _ = await follow_until(gateway, worker, "funds", cursor, (grant["id"], 1))
    assert [(i["type"], i["id"], i["version"]) for i in items] == [
        ("funds.grant.requested.v1", grant["id"], grant["version"])
    ]
    items, _ = await follow(gateway, elsewhere, "funds", cursor)
    assert items == []


async def test_cursors_are_checked_and_a_purged_one_answers_410(
    platform: Platform, gateway: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    reader = await new_caller(
        gateway, admin_headers, scopes=["registry:read", "referrals:read"], areas=[DISTRICT]
    )
    for bad in ("nope", "x" * 101, await feed_end(gateway, reader, "referrals")):
        r = await gateway.get("/v1/registry/changes", params={"after": bad}, headers=reader.headers)
        assert r.status_code == 422, r.text
        assert "after" in r.text
    r = await gateway.get("/v1/registry/changes", params={"limit": 0}, headers=reader.headers)
    assert r.status_code == 422

    # a cursor at position 0 once the feed's first rows are gone: 410, saying what to do
    conn = await asyncpg.connect(platform.env["DATABASE_URL"])
    try:
        first = await conn.fetchval("SELECT min(position) FROM registry.outbox")
        await conn.execute("DELETE FROM registry.outbox WHERE position = $1", first)
    finally:
        await conn.close()
    r = await gateway.get(
        "/v1/registry/changes",
        params={"after": encode_cursor("registry", first - 1)},
        headers=reader.headers,
    )
    assert r.status_code == 410, r.text
    assert "updated_since" in r.json()["detail"]
    r = await gateway.get("/v1/registry/changes", headers=reader.headers)
    assert r.status_code == 200  # no cursor: from the oldest change kept
