"""Who may see and change a child, attacked through the gateway of a running platform.

- Access through a referral is read-only, and ends at decline, at cancel, and 30 days
  after completion; it is the same in the registry, referrals and funds.
- A fund's ledger and reconciliation are only for principals covering its whole area.
- The commune the gazetteer lists a village under owns it, for every rule.
- Maker-checker is by person (`sub`): a second token of the requester does not approve.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import pytest

from libs.common import places
from tests.e2e.conftest import Platform
from tests.registry.conftest import child_body
from tests.trust.conftest import Caller, new_caller

COMMUNE, VILLAGE = "120101", "12010101"  # Tonle Basak, Chamkar Mon (1201), Phnom Penh
OTHER_COMMUNE = "120109"
CHILD_SCOPES = ["registry:read", "registry:write", "referrals:read", "referrals:write"]
PROVIDER_SCOPES = [*CHILD_SCOPES, "referrals:respond", "funds:read", "funds:request"]
MERGE_PATCH = "application/merge-patch+json"


async def eventually(
    call: Callable[[], Awaitable[httpx.Response]], want: int, timeout: float = 30
) -> httpx.Response:
    """The first answer with the wanted status (events take a moment), else the last one."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        r = await call()
        if r.status_code == want or asyncio.get_running_loop().time() > deadline:
            return r
        await asyncio.sleep(0.2)


async def register(gateway: httpx.AsyncClient, who: Caller, **body: Any) -> dict[str, Any]:
    r = await gateway.post("/v1/registry/children", json=child_body(**body), headers=who.headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def provider_of(gateway: httpx.AsyncClient, clinic: Caller, areas: list[str]) -> str:
    """A health provider of the clinic's organisation serving the areas."""
    r = await gateway.post(
        "/v1/referrals/providers",
        json={
            "name": "Trust test clinic",
            "org": clinic.org,
            "service_types": ["health"],
            "areas": areas,
            "capacity": 50,
        },
        headers=clinic.headers,
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def refer(
    gateway: httpx.AsyncClient, who: Caller, child_id: str, provider_id: str
) -> dict[str, Any]:
    """A referral of the child to the provider (once the child has reached referrals)."""
    body = {
        "child_id": child_id,
        "service_type": "health",
        "reason": "needs a health check",
        "provider_id": provider_id,
    }
    r = await eventually(lambda: gateway.post("/v1/referrals", json=body, headers=who.headers), 201)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def act(gateway: httpx.AsyncClient, who: Caller, referral_id: str, action: str) -> None:
    bodies: dict[str, Any] = {
        "accept": None,
        "decline": {"reason": "no room"},
        "cancel": {"reason": "no longer needed"},
        "complete": {"outcome": {"code": "service_provided"}},
    }
    r = await gateway.post(
        f"/v1/referrals/{referral_id}/{action}", json=bodies[action], headers=who.headers
    )
    assert r.status_code == 200, r.text


def patch(gateway: httpx.AsyncClient, child: dict[str, Any], who: Caller) -> Any:
    """A PATCH of the child's risk level, against the version given."""
    return gateway.patch(
        f"/v1/registry/children/{child['id']}",
        content=b'{"risk_level": "high"}',
        headers={**who.headers, "Content-Type": MERGE_PATCH, "If-Match": f'"{child["version"]}"'},
    )


def changes(gateway: httpx.AsyncClient, child: dict[str, Any], who: Caller) -> list[Any]:
    """PATCH, close and reopen of the child, as the caller."""
    url = f"/v1/registry/children/{child['id']}"
    return [
        patch(gateway, child, who),
        gateway.post(f"{url}/close", json={"reason": "moved away"}, headers=who.headers),
        gateway.post(f"{url}/reopen", json={}, headers=who.headers),
    ]


def reads(gateway: httpx.AsyncClient, child_id: str, who: Caller) -> list[Any]:
    url = f"/v1/registry/children/{child_id}"
    return [
        gateway.get(url, headers=who.headers),
        gateway.get(f"{url}/history", headers=who.headers),
        gateway.get(f"{url}/duplicates", headers=who.headers),
    ]


async def statuses(calls: list[Any]) -> list[int]:
    return [(await c).status_code for c in calls]


async def backdate_completion(platform: Platform, referral_id: str, days: int) -> None:
    """Move a referral's completion `days` back in every service that keeps it."""
    rid = uuid.UUID(referral_id)
    conn = await asyncpg.connect(platform.env["DATABASE_URL"])
    try:
        back = f"interval '{days} days'"
        await conn.execute(
            f"UPDATE referrals.referrals SET closed_at = closed_at - {back} WHERE id = $1", rid
        )
        for table in ("registry.referral_access", "funds.referral_shares"):
            await conn.execute(
                f"UPDATE {table} SET completed_at = completed_at - {back} WHERE referral_id = $1",
                rid,
            )
    finally:
        await conn.close()


async def completed_everywhere(platform: Platform, referral_id: str) -> None:
    """Until registry and funds both hold the referral's completion."""
    rid = uuid.UUID(referral_id)
    conn = await asyncpg.connect(platform.env["DATABASE_URL"])
    try:
        for _ in range(150):
            found = [
                await conn.fetchval(f"SELECT completed_at FROM {t} WHERE referral_id = $1", rid)
                for t in ("registry.referral_access", "funds.referral_shares")
            ]
            if all(found):
                return
            await asyncio.sleep(0.2)
        raise AssertionError("the completion did not reach registry and funds")
    finally:
        await conn.close()


def grant_body(fund_id: str, child_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "child_id": child_id,
        "fund_id": fund_id,
        "category": "medical_transport",
        "amount_khr": 50_000,
        "justification": "transport to the provincial hospital",
        **extra,
    }


async def make_fund(
    gateway: httpx.AsyncClient, manager: Caller, code: str, **extra: Any
) -> dict[str, Any]:
    r = await gateway.post(
        "/v1/funds/funds",
        json={
            "commune_code": code,
            "fiscal_year": 2026,
            "name": f"Trust test fund {secrets.token_hex(4)}",
            "budget_khr": 5_000_000,
            "max_grant_khr": 1_000_000,
            "approval_threshold_khr": 200_000,
            **extra,
        },
        headers=manager.headers,
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


# ---------------------------------------------------------------- referrals: read-only


async def test_a_referral_gives_read_only_access_that_ends_30_days_after_completion(
    platform: Platform, gateway: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    owner = await new_caller(gateway, admin_headers, scopes=CHILD_SCOPES, areas=[COMMUNE])
    clinic = await new_caller(gateway, admin_headers, scopes=PROVIDER_SCOPES, areas=["1201"])
    stranger = await new_caller(gateway, admin_headers, scopes=PROVIDER_SCOPES, areas=["1201"])
    elsewhere = await new_caller(
        gateway, admin_headers, scopes=CHILD_SCOPES, areas=[OTHER_COMMUNE], org_type="government"
    )
    manager = await new_caller(
        gateway,
        admin_headers,
        scopes=["funds:read", "funds:manage"],
        areas=["12"],
        org_type="government",
    )
    child = await register(gateway, owner)
    fund = await make_fund(gateway, manager, COMMUNE)
    provider = await provider_of(gateway, clinic, [COMMUNE])
    referral = await refer(gateway, owner, child["id"], provider)
    url = f"/v1/registry/children/{child['id']}"

    assert await statuses(reads(gateway, child["id"], clinic)) == [404] * 3  # pending: nothing
    await act(gateway, clinic, referral["id"], "accept")
    assert (
        await eventually(lambda: gateway.get(url, headers=clinic.headers), 200)
    ).status_code == 200
    assert await statuses(reads(gateway, child["id"], clinic)) == [200] * 3
    listed = await gateway.get("/v1/registry/children", headers=clinic.headers)
    assert [c["id"] for c in listed.json()["items"]] == [child["id"]]

    # read-only: the provider may not change, close or reopen the child
    assert await statuses(changes(gateway, child, clinic)) == [403, 403, 403]
    unchanged = (await gateway.get(url, headers=owner.headers)).json()
    assert (unchanged["version"], unchanged["risk_level"]) == (child["version"], "medium")
    # whoever cannot read the child does not learn it exists
    for who in (stranger, elsewhere):
        assert await statuses(reads(gateway, child["id"], who)) == [404] * 3
        assert await statuses(changes(gateway, child, who)) == [404] * 3
        r = await gateway.get(f"/v1/referrals/{referral['id']}", headers=who.headers)
        assert r.status_code == 404
    # the registering organisation still may
    assert (await patch(gateway, child, owner)).status_code == 200

    # the same rule in funds: the provider with an active referral may ask for a grant
    asked = await eventually(
        lambda: gateway.post(
            "/v1/funds/grants", json=grant_body(fund["id"], child["id"]), headers=clinic.headers
        ),
        201,
    )
    assert asked.status_code == 201, asked.text
    refused = await gateway.post(
        "/v1/funds/grants",
        json=grant_body(fund["id"], child["id"], category="education_support"),
        headers=stranger.headers,
    )
    assert refused.status_code == 404

    # completed: still readable for 30 days, then not, in every service
    await act(gateway, clinic, referral["id"], "complete")
    await completed_everywhere(platform, referral["id"])
    assert (await gateway.get(url, headers=clinic.headers)).status_code == 200
    await backdate_completion(platform, referral["id"], 29)
    assert (await gateway.get(url, headers=clinic.headers)).status_code == 200
    await backdate_completion(platform, referral["id"], 2)  # 31 days ago now
    assert await statuses(reads(gateway, child["id"], clinic)) == [404] * 3
    assert await statuses(changes(gateway, child, clinic)) == [404] * 3
    listed = await gateway.get("/v1/registry/children", headers=clinic.headers)
    assert listed.json()["items"] == []
    late = await gateway.post(
        "/v1/funds/grants",
        json=grant_body(fund["id"], child["id"], category="education_support"),
        headers=clinic.headers,
    )
    assert late.status_code == 404, late.text
    onward = await gateway.post(
        "/v1/referrals",
        json={"child_id": child["id"], "service_type": "health", "reason": "follow-up"},
        headers=clinic.headers,
    )
    assert onward.status_code == 404, onward.text
    # the referral itself stays the provider's to read
    assert (
        await gateway.get(f"/v1/referrals/{referral['id']}", headers=clinic.headers)
    ).status_code == 200


@pytest.mark.parametrize("ending", ["decline", "cancel"])
async def test_access_ends_when_the_referral_is_declined_or_cancelled(
    gateway: httpx.AsyncClient, admin_headers: dict[str, str], ending: str
) -> None:
    owner = await new_caller(gateway, admin_headers, scopes=CHILD_SCOPES, areas=[COMMUNE])
    clinic = await new_caller(gateway, admin_headers, scopes=PROVIDER_SCOPES, areas=["1201"])
    child = await register(gateway, owner)
    provider = await provider_of(gateway, clinic, [COMMUNE])
    referral = await refer(gateway, owner, child["id"], provider)
    url = f"/v1/registry/children/{child['id']}"
    if ending == "cancel":
        await act(gateway, clinic, referral["id"], "accept")
        r = await eventually(lambda: gateway.get(url, headers=clinic.headers), 200)
        assert r.status_code == 200
        await act(gateway, owner, referral["id"], "cancel")
    else:
        await act(gateway, clinic, referral["id"], "decline")
    r = await eventually(lambda: gateway.get(url, headers=clinic.headers), 404)
    assert r.status_code == 404
    assert await statuses(reads(gateway, child["id"], clinic)) == [404] * 3
    assert await statuses(changes(gateway, child, clinic)) == [404] * 3


# ---------------------------------------------------------------- funds: the books


async def test_a_funds_books_are_only_for_principals_covering_its_whole_area(
    gateway: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    gov, read = "government", ["funds:read"]
    manager = await new_caller(
        gateway, admin_headers, scopes=["funds:read", "funds:manage"], areas=["12"], org_type=gov
    )
    district_fund = await make_fund(gateway, manager, "1201")
    commune_fund = await make_fund(gateway, manager, COMMUNE)
    r = await gateway.post(
        f"/v1/funds/funds/{district_fund['id']}/top-ups",
        json={"amount_khr": 100_000, "reference": f"TT-{secrets.token_hex(3)}"},
        headers=manager.headers,
    )
    assert r.status_code == 200, r.text

    commune_staff = await new_caller(
        gateway, admin_headers, scopes=read, areas=[COMMUNE], org_type=gov
    )
    partner_inside = await new_caller(gateway, admin_headers, scopes=read, areas=[COMMUNE])
    district_partner = await new_caller(gateway, admin_headers, scopes=read, areas=["1201"])
    district_staff = await new_caller(
        gateway, admin_headers, scopes=read, areas=["1201"], org_type=gov
    )
    other_district = await new_caller(
        gateway, admin_headers, scopes=read, areas=["1202"], org_type=gov
    )

    def books(fund_id: str, who: Caller) -> list[Any]:
        return [
            gateway.get(f"/v1/funds/funds/{fund_id}/ledger", headers=who.headers),
            gateway.get(f"/v1/funds/reconciliation?fund_id={fund_id}", headers=who.headers),
        ]

    for inside in (commune_staff, partner_inside):
        # the district fund stays visible (they may request from it), its books do not
        fund = await gateway.get(f"/v1/funds/funds/{district_fund['id']}", headers=inside.headers)
        assert fund.status_code == 200
        answers = [await c for c in books(district_fund["id"], inside)]
        assert [a.status_code for a in answers] == [403, 403]
        assert all(a.headers["content-type"] == "application/problem+json" for a in answers)
        assert all("TT-" not in a.text for a in answers)
        assert await statuses(books(commune_fund["id"], inside)) == [200, 200]
    for whole in (district_staff, district_partner, manager):
        assert await statuses(books(district_fund["id"], whole)) == [200, 200]
    ledger = await gateway.get(
        f"/v1/funds/funds/{district_fund['id']}/ledger", headers=district_staff.headers
    )
    assert [e["kind"] for e in ledger.json()["items"]] == ["top_up"]
    assert await statuses(books(district_fund["id"], other_district)) == [404, 404]
    assert await statuses(books(str(uuid.uuid4()), district_staff)) == [404, 404]


# ---------------------------------------------------------------- the listed commune


def _single_listed() -> dict[str, str]:
    """The real village codes the 2025 gazetteer lists under one commune, not the one
    their code names: village -> listed commune."""
    return {v: cs[0] for v, cs in places.anomalous_villages().items() if len(cs) == 1}


async def test_the_listed_commune_owns_an_anomalous_village_in_the_registry(
    gateway: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    anomalous = _single_listed()
    assert len(anomalous) >= 20  # the 2025 gazetteer has 25
    # (seven codes, 04061500-04062100, name a commune 040615-040621 that does not exist)
    communes = sorted(
        c for c in {*anomalous.values(), *(v[:6] for v in anomalous)} if places.exists(c)
    )
    staff = dict(
        zip(
            communes,
            await asyncio.gather(
                *[
                    new_caller(
                        gateway,
                        admin_headers,
                        scopes=CHILD_SCOPES,
                        areas=[c],
                        org_type="government",
                    )
                    for c in communes
                ]
            ),
            strict=True,
        )
    )

    async def check(village: str, listed: str) -> list[str]:
        wrong: list[str] = []
        own, named = staff[listed], staff.get(village[:6])
        r = await gateway.post(
            "/v1/registry/children", json=child_body(village_code=village), headers=own.headers
        )
        if r.status_code != 201 or r.json()["commune_code"] != listed:
            return [f"{village}: the listed commune {listed} registers: {r.status_code}"]
        child = r.json()
        url = f"/v1/registry/children/{child['id']}"
        if (await gateway.get(url, headers=own.headers)).status_code != 200:
            wrong.append(f"{village}: {listed} cannot read")
        found = await gateway.get(
            f"/v1/registry/children?commune_code={listed}&q=Sokha", headers=own.headers
        )
        if child["id"] not in [c["id"] for c in found.json()["items"]]:
            wrong.append(f"{village}: {listed} does not find it")
        if named is None:
            return wrong
        if (await gateway.get(url, headers=named.headers)).status_code != 404:
            wrong.append(f"{village}: {village[:6]} reads it")
        listed_by_named = await gateway.get("/v1/registry/children", headers=named.headers)
        if child["id"] in [c["id"] for c in listed_by_named.json()["items"]]:
            wrong.append(f"{village}: {village[:6]} lists it")
        r = await gateway.post(
            "/v1/registry/children", json=child_body(village_code=village), headers=named.headers
        )
        if r.status_code != 403:
            wrong.append(f"{village}: {village[:6]} registers there: {r.status_code}")
        return wrong

    found = await asyncio.gather(*[check(v, c) for v, c in sorted(anomalous.items())])
    assert [w for ws in found for w in ws] == []


async def test_the_listed_commune_owns_an_anomalous_village_in_referrals_and_funds(
    gateway: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    village = "02140408"  # Chumnab Kokir: listed under 021405, its code names 021404
    listed, named = "021405", "021404"
    assert places.communes_of(village) == (listed,)
    gov = "government"
    scopes = [*CHILD_SCOPES, "referrals:respond", "funds:read", "funds:request"]
    own = await new_caller(gateway, admin_headers, scopes=scopes, areas=[listed], org_type=gov)
    neighbour = await new_caller(gateway, admin_headers, scopes=scopes, areas=[named], org_type=gov)
    manager = await new_caller(
        gateway,
        admin_headers,
        scopes=["funds:read", "funds:manage", "funds:request"],
        areas=["0214"],
        org_type=gov,
    )
    near = await new_caller(gateway, admin_headers, scopes=PROVIDER_SCOPES, areas=["0214"])
    far = await new_caller(gateway, admin_headers, scopes=PROVIDER_SCOPES, areas=["0214"])
    wrong_commune = await provider_of(gateway, near, [named])
    right_commune = await provider_of(gateway, far, [listed])
    child = await register(gateway, own, village_code=village)

    # referrals: routed to the listed commune's provider, never the named one's
    referral = await refer(gateway, own, child["id"], right_commune)
    assert referral["provider_id"] == right_commune
    named_provider = await gateway.post(
        "/v1/referrals",
        json={
            "child_id": child["id"],
            "service_type": "health",
            "reason": "second opinion",
            "provider_id": wrong_commune,
        },
        headers=own.headers,
    )
    assert named_provider.status_code == 422, named_provider.text
    for path in (f"/v1/referrals/{referral['id']}", f"/v1/registry/children/{child['id']}"):
        assert (await gateway.get(path, headers=own.headers)).status_code == 200
        assert (await gateway.get(path, headers=neighbour.headers)).status_code == 404
    refused = await gateway.post(
        "/v1/referrals",
        json={"child_id": child["id"], "service_type": "health", "reason": "check"},
        headers=neighbour.headers,
    )
    assert refused.status_code == 404

    # funds: the listed commune's fund pays for the child, its staff ask for it
    fund = await make_fund(gateway, manager, listed)
    neighbours_fund = await make_fund(gateway, manager, named)
    asked = await eventually(
        lambda: gateway.post(
            "/v1/funds/grants", json=grant_body(fund["id"], child["id"]), headers=own.headers
        ),
        201,
    )
    assert asked.status_code == 201, asked.text
    assert asked.json()["commune_code"] == listed
    elsewhere = await gateway.post(
        "/v1/funds/grants",
        json=grant_body(neighbours_fund["id"], child["id"], category="education_support"),
        headers=manager.headers,
    )
    assert elsewhere.status_code == 422  # outside that fund's area
    not_theirs = await gateway.post(
        "/v1/funds/grants",
        json=grant_body(neighbours_fund["id"], child["id"], category="education_support"),
        headers=neighbour.headers,
    )
    assert not_theirs.status_code == 404
    grant = f"/v1/funds/grants/{asked.json()['id']}"
    assert (await gateway.get(grant, headers=own.headers)).status_code == 200
    assert (await gateway.get(grant, headers=neighbour.headers)).status_code == 404


async def test_a_code_listed_under_two_communes_belongs_to_the_one_the_record_names(
    gateway: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    village = "02140401"  # Mukh Rea Pir of 021404, and Kaoh Thum of 021405
    assert places.communes_of(village) == ("021404", "021405")
    gov = "government"
    own = await new_caller(
        gateway, admin_headers, scopes=CHILD_SCOPES, areas=["021405"], org_type=gov
    )
    other = await new_caller(
        gateway, admin_headers, scopes=CHILD_SCOPES, areas=["021404"], org_type=gov
    )
    # the village alone means the commune its code names
    refused = await gateway.post(
        "/v1/registry/children", json=child_body(village_code=village), headers=own.headers
    )
    assert refused.status_code == 403
    # naming the other commune it is listed under places the child there
    child = await register(gateway, own, village_code=village, commune_code="021405")
    assert (child["commune_code"], child["village_code"]) == ("021405", village)
    url = f"/v1/registry/children/{child['id']}"
    assert (await gateway.get(url, headers=own.headers)).status_code == 200
    assert (await gateway.get(url, headers=other.headers)).status_code == 404


# ---------------------------------------------------------------- maker-checker


async def test_the_approver_must_be_another_person_not_another_token(
    gateway: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    gov = "government"
    org = f"ccwc-{secrets.token_hex(3)}"
    owner = await new_caller(
        gateway, admin_headers, scopes=CHILD_SCOPES, areas=[COMMUNE], org=org, org_type=gov
    )
    manager = await new_caller(
        gateway, admin_headers, scopes=["funds:read", "funds:manage"], areas=["12"], org_type=gov
    )
    district = await new_caller(
        gateway, admin_headers, scopes=["funds:read", "funds:approve"], areas=["1201"], org_type=gov
    )
    username, password = f"worker-{secrets.token_hex(4)}", secrets.token_urlsafe(24)
    r = await gateway.post(
        "/v1/admin/users",
        json={
            "name": "CCWC worker",
            "org": org,
            "org_type": gov,
            "scopes": ["funds:read", "funds:request", "funds:approve"],
            "areas": [COMMUNE],
            "username": username,
            "password": password,
        },
        headers=admin_headers,
    )
    assert r.status_code == 201, r.text

    async def session() -> dict[str, str]:
        """A token of the same user, as from another client (dashboard, phone)."""
        t = await gateway.post(
            "/oauth/token",
            data={"grant_type": "password", "username": username, "password": password},
        )
        assert t.status_code == 200, t.text
        return {"Authorization": f"Bearer {t.json()['access_token']}"}

    desk, phone = await session(), await session()
    assert desk != phone
    child = await register(gateway, owner)
    fund = await make_fund(gateway, manager, COMMUNE)
    small = await eventually(
        lambda: gateway.post(
            "/v1/funds/grants", json=grant_body(fund["id"], child["id"]), headers=desk
        ),
        201,
    )
    assert small.status_code == 201, small.text
    own = await gateway.post(f"/v1/funds/grants/{small.json()['id']}/approve", headers=phone)
    assert own.status_code == 403, own.text
    assert own.headers["content-type"] == "application/problem+json"

    # above the threshold two approvals are needed, and one person gives only one of them
    big = await gateway.post(
        "/v1/funds/grants",
        json=grant_body(fund["id"], child["id"], category="education_support", amount_khr=500_000),
        headers=desk,
    )
    assert big.status_code == 201, big.text
    approve = f"/v1/funds/grants/{big.json()['id']}/approve"
    colleague = await new_caller(
        gateway,
        admin_headers,
        scopes=["funds:read", "funds:approve"],
        areas=[COMMUNE],
        org=org,
        org_type=gov,
    )
    first = await gateway.post(approve, headers=colleague.headers)
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "requested"
    again = await gateway.post(
        approve,
        headers={"Authorization": f"Bearer {await _token(gateway, colleague)}"},
    )
    assert again.status_code in (403, 409), again.text
    still = await gateway.get(f"/v1/funds/grants/{big.json()['id']}", headers=district.headers)
    assert still.json()["status"] == "requested"
    second = await gateway.post(approve, headers=district.headers)
    assert second.status_code == 200, second.text
    assert second.json()["status"] == "approved"


async def _token(gateway: httpx.AsyncClient, caller: Caller) -> str:
    """A fresh token of the same client (same sub)."""
    r = await gateway.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": caller.client_id,
            "client_secret": caller.secret,
        },
    )
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])
