"""Webhooks against a running platform of their own (every service and the gateway as real
processes), with receivers on 127.0.0.1 (KOMAR_WEBHOOKS_ALLOW_LOOPBACK=1, set by
deploy/local for the webhooks component) that verify every delivery with the Standard
Webhooks reference library, as a partner's receiver would.

Retries are made quick (KOMAR_WEBHOOKS_RETRY_BASE_S=0.2, cap 1 s) and the answer timeout
short (2 s) so that failures, time-outs and recoveries take seconds.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from libs.common import places
from tests.e2e.conftest import Platform, running_platform, token
from tests.support import migration_drift
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

TIMEOUT_S = 2.0
SETTINGS = {
    "KOMAR_WEBHOOKS_RETRY_BASE_S": "0.2",
    "KOMAR_WEBHOOKS_RETRY_CAP_S": "1",
    "KOMAR_WEBHOOKS_TIMEOUT_S": str(TIMEOUT_S),
    "KOMAR_WEBHOOKS_POLL_S": "0.1",
}
DISTRICT = "0102"  # Banteay Meanchey: no other module of this platform writes there
COMMUNES = places.children_at(DISTRICT, "commune")
CHILD_TYPES = [
    "registry.child.registered.v1",
    "registry.child.updated.v1",
    "registry.child.closed.v1",
    "registry.child.reopened.v1",
]
REFERRAL_TYPES = [
    "referrals.referral.created.v1",
    "referrals.referral.accepted.v1",
    "referrals.referral.cancelled.v1",
]
HOOK_SCOPES = ["webhooks:manage", *PROVIDER_SCOPES]


# ---------------------------------------------------------------- the platform


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with running_platform(tmp_path_factory.mktemp("webhooks"), settings=SETTINGS) as p:
        yield p


@pytest.fixture
async def gateway(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=platform.gateway, timeout=60) as client:
        yield client


@pytest.fixture
async def admin_headers(platform: Platform, gateway: httpx.AsyncClient) -> dict[str, str]:
    return {"Authorization": f"Bearer {await token(gateway, 'admin', platform.admin_secret)}"}


# ---------------------------------------------------------------- receivers


@dataclass
class Got:
    """One request a receiver got: its webhook-id, body, and the status it answered."""

    id: str
    body: dict[str, Any]
    status: int
    signatures: int


@dataclass
class Receiver:
    """A partner's receiver: verifies every request with standardwebhooks and answers as
    `answer(n)` says for its n-th request (a status, or `hang` for longer than the
    timeout, then 200)."""

    path: str
    answer: Callable[[int], int | str] = lambda n: 200
    secrets: list[str] = field(default_factory=list)
    got: list[Got] = field(default_factory=list)
    unverified: int = 0

    def ids_of(self, type_: str) -> list[str]:
        return [g.id for g in self.got if g.body["type"] == type_]

    def delivered(self) -> list[Got]:
        return [g for g in self.got if 200 <= g.status < 300]

    def about(self, record_id: str) -> list[Got]:
        return [g for g in self.got if record_id in json.dumps(g.body["data"])]


class Receivers:
    def __init__(self, base: str) -> None:
        self.base = base
        self.by_path: dict[str, Receiver] = {}

    def new(self, answer: Callable[[int], int | str] = lambda n: 200) -> Receiver:
        receiver = Receiver(f"/hook/{secrets.token_hex(6)}", answer)
        self.by_path[receiver.path] = receiver
        return receiver

    def url(self, receiver: Receiver) -> str:
        return f"{self.base}{receiver.path}"

    async def handle(self, request: web.Request) -> web.Response:
        receiver = self.by_path.get(request.path)
        if receiver is None:
            return web.Response(status=404)
        body = await request.text()
        headers = dict(request.headers)
        verified = False
        for secret in receiver.secrets:
            try:
                Webhook(secret).verify(body, headers)
                verified = True
            except WebhookVerificationError:
                pass
        if not verified:
            receiver.unverified += 1
        answer = receiver.answer(len(receiver.got))
        status = 0 if answer == "hang" else int(answer)  # 0: answered too late to count
        signatures = len(headers.get("webhook-signature", "").split(" "))
        receiver.got.append(Got(headers["webhook-id"], json.loads(body), status, signatures))
        if answer == "hang":
            await asyncio.sleep(TIMEOUT_S + 2)
            return web.Response(status=200)
        return web.Response(status=status)


@pytest.fixture(scope="module")
async def receivers() -> AsyncIterator[Receivers]:
    found: list[Receivers] = []

    async def handle(request: web.Request) -> web.Response:
        return await found[0].handle(request)

    app = web.Application()
    app.router.add_post("/hook/{name}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    found.append(Receivers(f"http://127.0.0.1:{port}"))
    try:
        yield found[0]
    finally:
        await runner.cleanup()


async def hook(
    gateway: httpx.AsyncClient,
    who: Caller,
    receivers: Receivers,
    receiver: Receiver,
    types: list[str],
) -> dict[str, Any]:
    r = await gateway.post(
        "/v1/webhooks",
        json={"url": receivers.url(receiver), "event_types": types, "description": "test"},
        headers=who.headers,
    )
    assert r.status_code == 201, r.text
    receiver.secrets.append(r.json()["secret"])
    return dict(r.json())


async def until(check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("not within the time")
        await asyncio.sleep(0.1)


async def deliveries(
    gateway: httpx.AsyncClient, who: Caller, endpoint_id: str, **params: Any
) -> list[dict[str, Any]]:
    r = await gateway.get(
        f"/v1/webhooks/{endpoint_id}/deliveries",
        params={"limit": 500, **params},
        headers=who.headers,
    )
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


async def with_status(
    gateway: httpx.AsyncClient, who: Caller, endpoint_id: str, status: str, count: int = 1
) -> list[dict[str, Any]]:
    """The endpoint's deliveries once `count` of them have `status`: a receiver has its answer
    before the delivery worker records the outcome, so a partner reads it a moment later."""
    deadline = asyncio.get_running_loop().time() + 30
    while len(found := await deliveries(gateway, who, endpoint_id, status=status)) < count:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{len(found)} of {count} deliveries are {status}")
        await asyncio.sleep(0.1)
    return found


async def hook_caller(
    gateway: httpx.AsyncClient,
    admin_headers: dict[str, str],
    commune: str,
    org_type: str = "partner",
    scopes: list[str] | None = None,
) -> Caller:
    return await new_caller(
        gateway, admin_headers, scopes=scopes or HOOK_SCOPES, areas=[commune], org_type=org_type
    )


# ---------------------------------------------------------------- the API


async def test_endpoints_belong_to_their_organisation(
    gateway: httpx.AsyncClient, admin_headers: dict[str, str], receivers: Receivers
) -> None:
    commune = COMMUNES[0]
    mine = await hook_caller(gateway, admin_headers, commune)
    other = await hook_caller(gateway, admin_headers, commune)
    receiver = receivers.new()
    body = {"url": receivers.url(receiver), "event_types": CHILD_TYPES, "description": "CMS"}
    key = {"Idempotency-Key": secrets.token_hex(8)}
    r = await gateway.post("/v1/webhooks", json=body, headers={**mine.headers, **key})
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["secret"].startswith("whsec_")
    assert len(created["secret"]) > 40
    assert r.headers["location"] == f"/v1/webhooks/{created['id']}"
    assert r.headers["etag"] == '"1"'
    assert created["enabled"] is True
    assert created["event_types"] == CHILD_TYPES
    again = await gateway.post("/v1/webhooks", json=body, headers={**mine.headers, **key})
    assert again.status_code == 201
    assert again.json()["id"] == created["id"]
    assert again.json()["secret"] is None

    url = f"/v1/webhooks/{created['id']}"
    r = await gateway.get(url, headers=mine.headers)
    assert r.status_code == 200
    assert "secret" not in r.json()
    listed = (await gateway.get("/v1/webhooks", headers=mine.headers)).json()["items"]
    assert [e["id"] for e in listed] == [created["id"]]
    assert (await gateway.get("/v1/webhooks", headers=other.headers)).json()["items"] == []

    calls = [
        gateway.get(url, headers=other.headers),
        gateway.patch(
            url,
            content=b'{"description": "mine now"}',
            headers={**other.headers, "Content-Type": MERGE_PATCH, "If-Match": '"1"'},
        ),
        gateway.delete(url, headers=other.headers),
        gateway.post(f"{url}/rotate-secret", headers=other.headers),
        gateway.post(f"{url}/test", headers=other.headers),
        gateway.get(f"{url}/deliveries", headers=other.headers),
        gateway.post(f"{url}/deliveries/{created['id']}/retry", headers=other.headers),
    ]
    for call in calls:
        r = await call
        assert r.status_code == 404, r.text
        assert r.headers["content-type"] == "application/problem+json"

    r = await gateway.patch(
        url,
        content=b'{"description": "ours"}',
        headers={**mine.headers, "Content-Type": MERGE_PATCH},
    )
    assert r.status_code == 428
    r = await gateway.patch(
        url,
        content=b'{"description": "ours", "enabled": false}',
        headers={**mine.headers, "Content-Type": MERGE_PATCH, "If-Match": '"1"'},
    )
    assert r.status_code == 200, r.text
    assert (r.json()["enabled"], r.json()["disabled_reason"], r.json()["version"]) == (
        False,
        "manual",
        2,
    )
    r = await gateway.post(f"{url}/test", headers=mine.headers)
    assert r.status_code == 409  # disabled

    r = await gateway.post(
        "/v1/webhooks",
        json={**body, "event_types": ["registry.child.eaten.v1"]},
        headers=mine.headers,
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"].startswith("event_types")
    no_scope = await hook_caller(gateway, admin_headers, commune, scopes=["registry:read"])
    r = await gateway.post("/v1/webhooks", json=body, headers=no_scope.headers)
    assert r.status_code == 403
    blind = await hook_caller(gateway, admin_headers, commune, scopes=["webhooks:manage"])
    r = await gateway.post("/v1/webhooks", json=body, headers=blind.headers)
    assert r.status_code == 403
    assert "registry:read" in r.json()["detail"]

    r = await gateway.delete(url, headers=mine.headers)
    assert r.status_code == 204
    assert (await gateway.get(url, headers=mine.headers)).status_code == 404


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://example.org/hook", "https://"),
        ("https://10.0.0.1/hook", "private"),
        ("https://169.254.169.254/latest/meta-data/", "link-local"),
        ("https://[::ffff:10.0.0.1]/", "private"),
        ("https://user:secret@example.org/", "user information"),
        ("https://example.org/" + "a" * 2000, "2000"),
    ],
)
async def test_urls_that_could_reach_inside_are_refused_naming_why(
    gateway: httpx.AsyncClient, admin_headers: dict[str, str], url: str, why: str
) -> None:
    who = await hook_caller(gateway, admin_headers, COMMUNES[0])
    r = await gateway.post(
        "/v1/webhooks", json={"url": url, "event_types": CHILD_TYPES}, headers=who.headers
    )
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["errors"][0]["field"] == "url"
    assert why in problem["detail"] + problem["errors"][0]["message"]


# ---------------------------------------------------------------- deliveries


async def test_deliveries_are_signed_ids_and_codes_only_and_rotation_signs_twice(
    gateway: httpx.AsyncClient, admin_headers: dict[str, str], receivers: Receivers
) -> None:
    commune = COMMUNES[1]
    partner = await hook_caller(gateway, admin_headers, commune)
    receiver = receivers.new()
    endpoint = await hook(gateway, partner, receivers, receiver, CHILD_TYPES)
    r = await gateway.post(f"/v1/webhooks/{endpoint['id']}/test", headers=partner.headers)
    assert r.status_code == 202, r.text
    test_id = r.json()["id"]
    await until(lambda: receiver.ids_of("webhook.test") == [test_id])

    child = await register(
        gateway, partner, village_code=None, commune_code=commune, given_name="Sokha"
    )
    await until(lambda: len(receiver.about(child["id"])) == 1)
    (got,) = receiver.about(child["id"])
    assert got.body["type"] == "registry.child.registered.v1"
    assert got.body["data"] == {
        "child_id": child["id"],
        "commune_code": commune,
        "village_code": None,
        "status": "open",
        "version": 1,
    }
    assert "Sokha" not in json.dumps(got.body)
    assert receiver.unverified == 0
    assert got.signatures == 1

    r = await gateway.post(f"/v1/webhooks/{endpoint['id']}/rotate-secret", headers=partner.headers)
    assert r.status_code == 200, r.text
    rotated = r.json()
    assert rotated["secret"].startswith("whsec_")
    assert rotated["previous_secret_expires_at"]
    old = receiver.secrets.pop()
    receiver.secrets.append(rotated["secret"])
    r = await gateway.patch(
        f"/v1/registry/children/{child['id']}",
        content=b'{"risk_level": "high"}',
        headers={**partner.headers, "Content-Type": MERGE_PATCH, "If-Match": '"1"'},
    )
    assert r.status_code == 200, r.text
    await until(lambda: len(receiver.about(child["id"])) == 2)
    latest = receiver.about(child["id"])[-1]
    assert latest.body["data"]["changed"] == ["risk_level"]
    assert latest.signatures == 2
    assert receiver.unverified == 0
    receiver.secrets[:] = [old]  # the old secret alone still verifies it: counted below
    await gateway.post(f"/v1/webhooks/{endpoint['id']}/test", headers=partner.headers)
    await until(lambda: len(receiver.ids_of("webhook.test")) == 2)
    assert receiver.unverified == 0

    listed = await with_status(gateway, partner, endpoint["id"], "delivered", 4)
    assert len(listed) == 4
    for d in listed:
        assert d["status"] == "delivered"
        (attempt,) = d["attempts"]
        assert attempt["status_code"] == 200
        assert attempt["latency_ms"] >= 0
        assert set(attempt) == {"at", "outcome", "status_code", "latency_ms", "error"}


async def test_a_failing_receiver_gets_the_event_once_more_after_recovering(
    gateway: httpx.AsyncClient, admin_headers: dict[str, str], receivers: Receivers
) -> None:
    commune = COMMUNES[2]
    partner = await hook_caller(gateway, admin_headers, commune)
    receiver = receivers.new(lambda n: 500 if n < 5 else 200)
    endpoint = await hook(gateway, partner, receivers, receiver, CHILD_TYPES)
    child = await register(gateway, partner, village_code=None, commune_code=commune)
    await until(lambda: len(receiver.delivered()) == 1, timeout=60)
    await asyncio.sleep(3)  # and nothing more comes
    assert [g.status for g in receiver.got] == [500] * 5 + [200]
    assert len({g.id for g in receiver.got}) == 1
    assert receiver.got[0].body["data"]["child_id"] == child["id"]
    (d,) = await with_status(gateway, partner, endpoint["id"], "delivered")
    assert d["id"] == receiver.got[0].id
    assert d["status"] == "delivered"
    assert [a["status_code"] for a in d["attempts"]] == [500] * 5 + [200]
    r = await gateway.get(f"/v1/webhooks/{endpoint['id']}", headers=partner.headers)
    assert r.json()["enabled"] is True

    # a delivered one may be sent again by hand, with the same webhook-id
    r = await gateway.post(
        f"/v1/webhooks/{endpoint['id']}/deliveries/{d['id']}/retry", headers=partner.headers
    )
    assert r.status_code == 202, r.text
    await until(lambda: len(receiver.delivered()) == 2)
    assert receiver.got[-1].id == d["id"]


async def test_a_receiver_that_times_out_is_retried(
    gateway: httpx.AsyncClient, admin_headers: dict[str, str], receivers: Receivers
) -> None:
    commune = COMMUNES[3]
    partner = await hook_caller(gateway, admin_headers, commune)
    receiver = receivers.new(lambda n: "hang" if n == 0 else 204)
    endpoint = await hook(gateway, partner, receivers, receiver, CHILD_TYPES)
    await register(gateway, partner, village_code=None, commune_code=commune)
    await until(lambda: len(receiver.got) >= 2 and receiver.got[-1].status == 204, timeout=60)
    assert len({g.id for g in receiver.got}) == 1
    (d,) = await with_status(gateway, partner, endpoint["id"], "delivered")
    first, *_, last = d["attempts"]
    assert (first["status_code"], first["error"]) == (None, "timeout")
    assert first["latency_ms"] >= TIMEOUT_S * 1000 * 0.9
    assert last["status_code"] == 204


async def test_410_disables_the_endpoint_until_it_is_enabled_again(
    gateway: httpx.AsyncClient, admin_headers: dict[str, str], receivers: Receivers
) -> None:
    commune = COMMUNES[4]
    partner = await hook_caller(gateway, admin_headers, commune)
    gone = [True]
    receiver = receivers.new(lambda n: 410 if gone[0] else 200)
    endpoint = await hook(gateway, partner, receivers, receiver, CHILD_TYPES)
    url = f"/v1/webhooks/{endpoint['id']}"
    first = await register(gateway, partner, village_code=None, commune_code=commune)

    async def disabled() -> bool:
        return (await gateway.get(url, headers=partner.headers)).json()["enabled"] is False

    for _ in range(100):
        if await disabled():
            break
        await asyncio.sleep(0.2)
    r = await gateway.get(url, headers=partner.headers)
    assert (r.json()["enabled"], r.json()["disabled_reason"]) == (False, "gone")
    assert len(receiver.got) == 1
    (d,) = await deliveries(gateway, partner, endpoint["id"])
    assert d["status"] == "failed"
    assert d["attempts"][0]["status_code"] == 410

    await register(gateway, partner, village_code=None, commune_code=commune)
    await asyncio.sleep(2)
    assert len(receiver.got) == 1  # nothing to a disabled endpoint

    gone[0] = False
    r = await gateway.patch(
        url,
        content=b'{"enabled": true}',
        headers={**partner.headers, "Content-Type": MERGE_PATCH, "If-Match": r.headers["etag"]},
    )
    assert r.status_code == 200, r.text
    assert (r.json()["enabled"], r.json()["disabled_reason"]) == (True, None)
    r = await gateway.post(f"{url}/deliveries/{d['id']}/retry", headers=partner.headers)
    assert r.status_code == 202
    await until(lambda: len(receiver.delivered()) == 1)
    assert receiver.delivered()[0].body["data"]["child_id"] == first["id"]


async def test_a_delivery_gives_up_after_3_days_and_an_endpoint_failing_5_days_is_disabled(
    platform: Platform,
    gateway: httpx.AsyncClient,
    admin_headers: dict[str, str],
    receivers: Receivers,
) -> None:
    commune = COMMUNES[11]
    partner = await hook_caller(gateway, admin_headers, commune)
    receiver = receivers.new(lambda n: 503)
    endpoint = await hook(gateway, partner, receivers, receiver, CHILD_TYPES)
    await register(gateway, partner, village_code=None, commune_code=commune)
    await until(lambda: len(receiver.got) >= 2)  # failing, retried
    conn = await asyncpg.connect(platform.env["DATABASE_URL"])
    try:
        # the round began 3 days and a little more ago: the next failure is the last
        await conn.execute(
            "UPDATE webhooks.deliveries SET round_started_at = now() - interval '3 days 2 hours'"
            " WHERE endpoint_id = $1",
            uuid.UUID(endpoint["id"]),
        )
        (d,) = await with_status(gateway, partner, endpoint["id"], "failed")
        assert {a["status_code"] for a in d["attempts"]} == {503}
        r = await gateway.get(f"/v1/webhooks/{endpoint['id']}", headers=partner.headers)
        assert r.json()["enabled"] is True  # failing for moments only

        # failing for 5 days: the next failure disables the endpoint
        await conn.execute(
            "UPDATE webhooks.endpoints SET failing_since = now() - interval '5 days 1 minute'"
            " WHERE id = $1",
            uuid.UUID(endpoint["id"]),
        )
    finally:
        await conn.close()
    r = await gateway.post(
        f"/v1/webhooks/{endpoint['id']}/deliveries/{d['id']}/retry", headers=partner.headers
    )
    assert r.status_code == 202, r.text
    for _ in range(100):
        r = await gateway.get(f"/v1/webhooks/{endpoint['id']}", headers=partner.headers)
        if not r.json()["enabled"]:
            break
        await asyncio.sleep(0.2)
    assert (r.json()["enabled"], r.json()["disabled_reason"]) == (False, "failing")


# ---------------------------------------------------------------- access


async def test_an_endpoint_receives_only_what_its_owner_may_see(
    gateway: httpx.AsyncClient, admin_headers: dict[str, str], receivers: Receivers
) -> None:
    commune, other = COMMUNES[5], COMMUNES[6]
    owner = await hook_caller(gateway, admin_headers, commune)
    clinic = await hook_caller(gateway, admin_headers, DISTRICT)
    rival = await hook_caller(gateway, admin_headers, commune)
    elsewhere = await hook_caller(gateway, admin_headers, other, org_type="government")
    types = [*CHILD_TYPES, *REFERRAL_TYPES]
    got = {name: receivers.new() for name in ("owner", "clinic", "rival", "elsewhere")}
    hooks = {}
    for name, who in (
        ("owner", owner),
        ("clinic", clinic),
        ("rival", rival),
        ("elsewhere", elsewhere),
    ):
        hooks[name] = await hook(gateway, who, receivers, got[name], types)
    # the clinic's failing receiver: a delivery that waits while access ends is dropped
    failing = receivers.new(lambda n: 500)
    failing_hook = await hook(gateway, clinic, receivers, failing, CHILD_TYPES)

    child = await register(gateway, owner, village_code=None, commune_code=commune)
    provider = await provider_of(gateway, clinic, [commune])
    referral = await refer(gateway, owner, child["id"], provider)
    await until(lambda: len(got["owner"].about(child["id"])) == 2)  # registered, created
    await until(lambda: len(got["clinic"].about(child["id"])) == 1)
    assert [g.body["type"] for g in got["clinic"].about(child["id"])] == [
        "referrals.referral.created.v1"  # the clinic sees its referral, not yet the child
    ]

    await act(gateway, clinic, referral["id"], "accept")
    await until(lambda: len(got["clinic"].about(child["id"])) == 2)  # accepted
    url = f"/v1/registry/children/{child['id']}"
    await eventually(lambda: gateway.get(url, headers=clinic.headers), 200)
    r = await gateway.patch(
        url,
        content=b'{"risk_level": "high"}',
        headers={**owner.headers, "Content-Type": MERGE_PATCH, "If-Match": '"1"'},
    )
    assert r.status_code == 200, r.text
    await until(lambda: len(got["clinic"].about(child["id"])) == 3)
    assert got["clinic"].about(child["id"])[-1].body["type"] == "registry.child.updated.v1"
    await until(lambda: len(failing.got) >= 2)  # failing, retried

    await act(gateway, owner, referral["id"], "cancel")
    await until(lambda: len(got["clinic"].about(child["id"])) == 4)  # cancelled
    await eventually(lambda: gateway.get(url, headers=clinic.headers), 404)
    r = await gateway.patch(
        url,
        content=b'{"risk_level": "low"}',
        headers={**owner.headers, "Content-Type": MERGE_PATCH, "If-Match": '"2"'},
    )
    assert r.status_code == 200, r.text
    await until(lambda: len(got["owner"].about(child["id"])) == 6)
    await asyncio.sleep(2)
    assert [g.body["type"] for g in got["clinic"].about(child["id"])] == [
        "referrals.referral.created.v1",
        "referrals.referral.accepted.v1",
        "registry.child.updated.v1",
        "referrals.referral.cancelled.v1",
    ]
    assert got["rival"].got == []
    assert got["elsewhere"].got == []

    async def dropped() -> list[dict[str, Any]]:
        return await deliveries(gateway, clinic, failing_hook["id"], status="dropped")

    for _ in range(100):
        if await dropped():
            break
        await asyncio.sleep(0.2)
    (d,) = await dropped()
    assert d["record_id"] == child["id"]
    assert d["attempts"][-1]["outcome"] == "dropped"
    sent = len(failing.got)
    await asyncio.sleep(2)
    assert len(failing.got) == sent  # no more attempts once dropped
    for who, name in ((owner, "owner"), (clinic, "clinic")):
        assert receivers.by_path[got[name].path].unverified == 0
        assert len(await deliveries(gateway, who, hooks[name]["id"])) == len(got[name].got)


async def test_grants_reach_whoever_may_see_them(
    gateway: httpx.AsyncClient, admin_headers: dict[str, str], receivers: Receivers
) -> None:
    commune, other = COMMUNES[7], COMMUNES[8]
    worker = await new_caller(
        gateway,
        admin_headers,
        scopes=[*CHILD_SCOPES, "funds:read", "funds:request", "funds:manage", "webhooks:manage"],
        areas=[commune],
        org_type="government",
    )
    elsewhere = await hook_caller(gateway, admin_headers, other, org_type="government")
    mine, theirs = receivers.new(), receivers.new()
    types = ["funds.grant.requested.v1"]
    await hook(gateway, worker, receivers, mine, types)
    await hook(gateway, elsewhere, receivers, theirs, types)
    child = await register(gateway, worker, village_code=None, commune_code=commune)
    fund = await make_fund(gateway, worker, commune)
    r = await eventually(
        lambda: gateway.post(
            "/v1/funds/grants", json=grant_body(fund["id"], child["id"]), headers=worker.headers
        ),
        201,
    )
    grant = r.json()
    await until(lambda: len(mine.got) == 1)
    assert mine.got[0].body["data"] == {
        "grant_id": grant["id"],
        "child_id": child["id"],
        "fund_id": fund["id"],
        "category": "medical_transport",
        "status": "requested",
        "commune_code": commune,
        "version": 1,
    }
    await asyncio.sleep(1)
    assert theirs.got == []


# ---------------------------------------------------------------- a crash mid-delivery


async def test_a_childs_casework_reaches_whoever_may_see_the_child(
    gateway: httpx.AsyncClient, admin_headers: dict[str, str], receivers: Receivers
) -> None:
    commune = COMMUNES[9]
    casework = ["casework:read"]
    owner = await hook_caller(gateway, admin_headers, commune, scopes=[*HOOK_SCOPES, *casework])
    rival = await hook_caller(gateway, admin_headers, commune, scopes=[*HOOK_SCOPES, *casework])
    staff = await new_caller(
        gateway,
        admin_headers,
        scopes=["registry:read", "casework:read", "casework:write"],
        areas=[commune],
        org_type="government",
    )
    types = ["casework.assignment.started.v1", "casework.visit.recorded.v1"]
    # the types of a child's casework need casework:read
    without = await hook_caller(gateway, admin_headers, commune)
    r = await gateway.post(
        "/v1/webhooks",
        json={"url": receivers.url(receivers.new()), "event_types": types},
        headers=without.headers,
    )
    assert r.status_code == 403, r.text
    got = {name: receivers.new() for name in ("owner", "rival")}
    for name, who in (("owner", owner), ("rival", rival)):
        await hook(gateway, who, receivers, got[name], types)

    child = await register(gateway, owner, village_code=None, commune_code=commune)
    worker = await gateway.post(
        "/v1/casework/workers",
        json={
            "org": staff.org,
            "role": "community_support_worker",
            "given_name": "Sreymom",
            "family_name": "Keo",
            "sex": "female",
            "areas": [commune],
            "trainings": [{"course": "child_protection_basics", "completed_on": "2025-03-01"}],
            "contracts": [{"org": staff.org, "start_on": "2025-01-01", "monthly_fee_khr": 1}],
        },
        headers=staff.headers,
    )
    assert worker.status_code == 201, worker.text
    assigned = await eventually(
        lambda: gateway.post(
            "/v1/casework/assignments",
            json={"child_id": child["id"], "worker_id": worker.json()["id"]},
            headers=staff.headers,
        ),
        201,
    )
    assert assigned.status_code == 201, assigned.text
    visit = await gateway.post(
        "/v1/casework/visits",
        json={
            "child_id": child["id"],
            "date": "2026-01-05",
            "kind": "home_visit",
            "outcome": "met",
            "notes": "Planted-note-7f3a: the mother asked for school fees",
        },
        headers=staff.headers,
    )
    assert visit.status_code == 201, visit.text

    await until(lambda: len(got["owner"].about(child["id"])) == 2)
    first, second = got["owner"].about(child["id"])
    assert [first.body["type"], second.body["type"]] == types  # in the order they happened
    assert first.body["data"]["worker_id"] == worker.json()["id"]
    assert second.body["data"]["visit_id"] == visit.json()["id"]
    assert second.body["data"]["kind"] == "home_visit"
    for g in (first, second):
        assert "Planted-note" not in json.dumps(g.body)
        assert "Sreymom" not in json.dumps(g.body)
    await asyncio.sleep(2)
    assert got["rival"].got == []  # another partner of the commune never hears of the child
    assert receivers.by_path[got["owner"].path].unverified == 0


async def test_sigkill_mid_delivery_loses_nothing_and_keeps_each_webhook_id(
    platform: Platform,
    gateway: httpx.AsyncClient,
    admin_headers: dict[str, str],
    receivers: Receivers,
) -> None:
    commune = COMMUNES[9]
    partner = await hook_caller(gateway, admin_headers, commune)
    slow: list[bool] = [True]
    receiver = receivers.new(lambda n: "hang" if slow[0] else 200)
    endpoint = await hook(gateway, partner, receivers, receiver, CHILD_TYPES)
    children = [
        (await register(gateway, partner, village_code=None, commune_code=commune))["id"]
        for _ in range(20)
    ]
    await until(lambda: len(receiver.got) >= 3)  # deliveries under way, answers held back
    await asyncio.to_thread(platform.supervisor.kill, "webhooks")
    slow[0] = False
    more = [
        (await register(gateway, partner, village_code=None, commune_code=commune))["id"]
        for _ in range(5)
    ]  # events while the service is down wait in the stream
    await asyncio.to_thread(platform.supervisor.restart, "webhooks")
    wanted = set(children + more)

    def all_delivered() -> bool:
        return {g.body["data"]["child_id"] for g in receiver.delivered()} >= wanted

    await until(all_delivered, timeout=120)
    ids: dict[str, set[str]] = {}
    for g in receiver.got:
        ids.setdefault(g.body["data"]["child_id"], set()).add(g.id)
    assert set(ids) == wanted
    assert all(len(v) == 1 for v in ids.values()), "an event was sent under two webhook-ids"
    for _ in range(100):
        listed = await deliveries(gateway, partner, endpoint["id"])
        if {d["status"] for d in listed} == {"delivered"}:
            break
        await asyncio.sleep(0.3)
    assert len(listed) == len(wanted)
    assert {d["status"] for d in listed} == {"delivered"}
    assert {d["id"] for d in listed} == {i for v in ids.values() for i in v}
    assert receiver.unverified == 0


# ---------------------------------------------------------------- the schema


async def test_the_migration_makes_what_the_models_declare(platform: Platform) -> None:
    from services.webhooks import models

    drift = await migration_drift(platform.env["DATABASE_URL"], models.SCHEMA, models.metadata)
    assert drift == []
