"""A child coming home from an institution, through the gateway of a running platform: the
registry's move of its care setting, the casework follow-ups it opens, and the ministry's
numbers of residential care and reintegration, each at the month's end."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import httpx

from libs.common import clock
from services.indicators import dates
from tests.registry.conftest import child_body
from tests.trust.conftest import Caller, new_caller

COMMUNE = "080302"  # in Kandal: no other test registers children there
SCOPES = ["registry:read", "registry:write", "casework:read", "casework:write"]
PASSWORD = "Tonle Sap in the rainy season 2026"


async def value(gateway: httpx.AsyncClient, detail: Caller, indicator: str, area: str) -> int:
    """This month's exact value of the indicator at the area, summed over its combos."""
    period = dates.month_code(dates.current_month())
    r = await gateway.get(
        "/v1/indicators/values",
        params={"indicator": indicator, "period": period, "area": area},
        headers=detail.headers,
    )
    assert r.status_code == 200, r.text
    return sum(int(row["value"] or 0) for row in r.json()["items"])


async def settles(
    gateway: httpx.AsyncClient, detail: Caller, want: dict[str, int], area: str = COMMUNE
) -> dict[str, int]:
    """The indicators' values once they equal `want` (events take a moment), else the last."""
    got: dict[str, int] = {}
    for _ in range(150):
        got = {i: await value(gateway, detail, i, area) for i in want}
        if got == want:
            break
        await asyncio.sleep(0.2)
    return got


async def test_a_child_home_from_an_institution_is_counted_and_followed(
    gateway: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    staff = await new_caller(
        gateway, admin_headers, scopes=SCOPES, areas=[COMMUNE], org_type="government"
    )
    detail = await new_caller(
        gateway,
        admin_headers,
        scopes=["indicators:read", "indicators:read:detail"],
        areas=["KH"],
        org_type="government",
    )
    body: dict[str, Any] = child_body(
        village_code=None, commune_code=COMMUNE, care_setting="residential_institution"
    )
    r = await gateway.post("/v1/registry/children", json=body, headers=staff.headers)
    assert r.status_code == 201, r.text
    child = r.json()
    residential = {"CP_CHILD_RESIDENTIAL": 1, "CP_REINTEGRATED": 0, "CP_REINTEGRATION_FOLLOWED": 0}
    assert await settles(gateway, detail, residential) == residential

    url = f"/v1/registry/children/{child['id']}"
    r = await gateway.patch(
        url,
        json={"care_setting": "kinship"},
        headers={**staff.headers, "If-Match": r.headers["etag"]},
    )
    assert r.status_code == 200, r.text
    home = {"CP_CHILD_RESIDENTIAL": 0, "CP_REINTEGRATED": 1, "CP_REINTEGRATION_FOLLOWED": 0}
    assert await settles(gateway, detail, home) == home
    # the district and the province count it too
    assert await settles(gateway, detail, home, area=COMMUNE[:4]) == home
    assert await settles(gateway, detail, home, area=COMMUNE[:2]) == home

    # casework has opened its four follow-ups, the first due a month after the move
    case: dict[str, Any] = {}
    for _ in range(150):
        r = await gateway.get(f"/v1/casework/children/{child['id']}", headers=staff.headers)
        case = r.json() if r.status_code == 200 else {}
        if len(case.get("followups") or []) == 4:
            break
        await asyncio.sleep(0.2)
    assert [f["made_on"] for f in case["followups"]] == [None] * 4
    today = clock.today()
    assert case["reintegrated_on"] == today.isoformat()

    # a visit in which the child was seen makes the first follow-up: now it counts as followed
    r = await gateway.post(
        "/v1/casework/visits",
        json={
            "child_id": child["id"],
            "date": today.isoformat(),
            "kind": "follow_up",
            "outcome": "met",
            "notes": "Settled with the aunt's family",
        },
        headers=staff.headers,
    )
    assert r.status_code == 201, r.text
    assert r.json()["followups_made"] == [1]
    followed = {"CP_CHILD_RESIDENTIAL": 0, "CP_REINTEGRATED": 1, "CP_REINTEGRATION_FOLLOWED": 1}
    assert await settles(gateway, detail, followed) == followed
    assert await settles(gateway, detail, {"CP_VISITS": 1}) == {"CP_VISITS": 1}


async def test_a_worker_who_signs_in_follows_the_children_assigned_to_them(
    gateway: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    """A community support worker of an NGO signs in with a password (as the dashboard
    does): the children assigned to them, and only those, in the registry and casework."""
    commune = "080303"
    staff = await new_caller(
        gateway, admin_headers, scopes=SCOPES, areas=[commune], org_type="government"
    )
    ngo = f"ngo-{secrets.token_hex(4)}"
    names = [f"csw-{secrets.token_hex(3)}" for _ in range(2)]
    workers, tokens = [], []
    for name in names:
        r = await gateway.post(
            "/v1/admin/users",
            json={
                "name": "Community support worker",
                "org": ngo,
                "org_type": "partner",
                "scopes": ["registry:read", "casework:read", "casework:write"],
                "areas": [commune],
                "username": name,
                "password": PASSWORD,
            },
            headers=admin_headers,
        )
        assert r.status_code == 201, r.text
        r = await gateway.post(
            "/oauth/token",
            data={
                "grant_type": "password",
                "username": name,
                "password": PASSWORD,
            },
        )
        assert r.status_code == 200, r.text
        tokens.append({"Authorization": f"Bearer {r.json()['access_token']}"})
        r = await gateway.post(
            "/v1/casework/workers",
            json={
                "org": ngo,
                "role": "community_support_worker",
                "given_name": "Srey",
                "family_name": "Pov",
                "sex": "female",
                "areas": [commune],
                "username": name,
                "trainings": [{"course": "child_protection_basics", "completed_on": "2025-03-01"}],
                "contracts": [{"org": ngo, "start_on": "2025-01-01", "monthly_fee_khr": 1}],
            },
            headers=staff.headers,
        )
        assert r.status_code == 201, r.text
        workers.append(r.json()["id"])
    children = []
    for _ in range(2):
        body = child_body(village_code=None, commune_code=commune)
        r = await gateway.post("/v1/registry/children", json=body, headers=staff.headers)
        assert r.status_code == 201, r.text
        children.append(r.json()["id"])

    async def assign(child: str, worker: str) -> None:
        for _ in range(150):
            r = await gateway.post(
                "/v1/casework/assignments",
                json={"child_id": child, "worker_id": worker},
                headers=staff.headers,
            )
            if r.status_code != 404:  # casework learns the child from the registry's events
                break
            await asyncio.sleep(0.2)
        assert r.status_code == 201, r.text

    async def sees(who: dict[str, str], child: str, want: int) -> int:
        code = 0
        for _ in range(150):
            code = (await gateway.get(f"/v1/registry/children/{child}", headers=who)).status_code
            if code == want:
                break
            await asyncio.sleep(0.2)
        return code

    await assign(children[0], workers[0])
    assert await sees(tokens[0], children[0], 200) == 200
    assert await sees(tokens[0], children[1], 404) == 404  # not theirs
    assert await sees(tokens[1], children[0], 404) == 404  # a colleague's
    r = await gateway.get(f"/v1/casework/children/{children[0]}", headers=tokens[0])
    assert r.status_code == 200, r.text
    r = await gateway.patch(
        f"/v1/registry/children/{children[0]}",
        json={"risk_level": "high"},
        headers={**tokens[0], "If-Match": '"1"'},
    )
    assert r.status_code == 403  # read-only: the NGO did not register the child

    await assign(children[0], workers[1])  # reassigned
    assert await sees(tokens[1], children[0], 200) == 200
    assert await sees(tokens[0], children[0], 404) == 404
