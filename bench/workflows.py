"""The two workflows `make bench` measures through the gateway, and their set-up.

(d) referral (docs/api-guide.md#referrals): POST /v1/referrals as a government client, then
    POST /v1/referrals/{id}/accept as the provider organisation the referral was routed to.
(e) grant (docs/api-guide.md#funds): POST /v1/funds/grants as a requester,
    POST …/{id}/approve as another principal, POST …/{id}/disburse as a disburser.

The set-up goes through the gateway's public API only: clients through the admin API, one
`health` provider (its own partner organisation and client) and one fund per province,
children registered in batches and then awaited until the referrals and funds services have
learnt them from the registry's events.

Validity of the load (a good run has no errors):
- referrals: nothing refuses a second open referral of the same child for the same service,
  so children are shared by every worker; capacities are far above what a run can fill.
- grants: a child holds at most one open (requested or approved) grant per category, so the
  children are split between the workers (`partition_items`) and a worker finishes one
  child's grant (disbursed, no longer open) before it returns to that child. A repeat within
  30 days of a disbursed grant needs a justification: every request carries one. The amount
  is under the fund's approval threshold (one approval), the budget covers any run, and each
  disbursement has its own payment reference.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

GRANT_AMOUNT_KHR = 50_000
MAX_GRANT_KHR = 1_000_000
APPROVAL_THRESHOLD_KHR = 10_000_000
FUND_BUDGET_KHR = 10**12  # 20 million grants of GRANT_AMOUNT_KHR
PROVIDER_CAPACITY = 1_000_000
RATE_LIMIT = 100_000  # per client and second: the gateway's limiter never refuses the bench

REFERRAL_STEPS: list[dict[str, Any]] = [
    {
        "name": "create",
        "method": "POST",
        "path": "/v1/referrals",
        "body": {
            "child_id": "{child_id}",
            "service_type": "health",
            "urgency": "normal",
            "reason": "bench",
        },
        "auth": "government",
        "expect": [201],
    },
    {
        "name": "accept",
        "method": "POST",
        "path": "/v1/referrals/{id}/accept",
        "auth": "provider:{create.provider_id}",
        "expect": [200],
    },
]

GRANT_STEPS: list[dict[str, Any]] = [
    {
        "name": "request",
        "method": "POST",
        "path": "/v1/funds/grants",
        "body": {
            "child_id": "{child_id}",
            "fund_id": "{fund_id}",
            "category": "education_support",
            "amount_khr": GRANT_AMOUNT_KHR,
            "justification": "bench",
        },
        "auth": "requester",
        "expect": [201],
    },
    {
        "name": "approve",
        "method": "POST",
        "path": "/v1/funds/grants/{id}/approve",
        "auth": "approver",
        "expect": [200],
    },
    {
        "name": "disburse",
        "method": "POST",
        "path": "/v1/funds/grants/{id}/disburse",
        "body": {"method": "mobile_money", "reference": "bench-{uuid}"},
        "auth": "disburser",
        "expect": [200],
    },
]

# A community support worker's visit: one step, by the government principal that assigned
# the children (its casework:write covers every place), on children assigned at set-up.
VISIT_STEPS: list[dict[str, Any]] = [
    {
        "name": "visit",
        "method": "POST",
        "path": "/v1/casework/visits",
        "body": {
            "child_id": "{child_id}",
            "date": "{date}",
            "kind": "home_visit",
            "outcome": "met",
            "notes": "bench",
            "next_visit_on": "{next_visit_on}",
        },
        "auth": "government",
        "expect": [201],
    },
]
WORKER_CASELOAD = 1000  # the most a worker may take: room for every bench child

GRANT_ROLES = {
    "requester": "funds:request",
    "approver": "funds:approve",
    "disburser": "funds:disburse",
}

# The durable consumers that must have caught up before a workflow is measured:
# (stream, durable) as services/*/app.py and handlers.py declare them.
CHILD_CONSUMERS = [("REGISTRY", "referrals-children"), ("REGISTRY", "funds-children")]
REFERRAL_CONSUMERS = [
    ("REFERRALS", "registry-referral-access"),
    ("REFERRALS", "funds-referral-shares"),
]


def check(response: httpx.Response, what: str) -> Any:
    """The JSON answer of a set-up call that must succeed; fail with the answer otherwise."""
    if response.status_code >= 300:
        raise RuntimeError(f"{what}: HTTP {response.status_code}: {response.text[:500]}")
    return response.json()


def token(http: httpx.Client, client_id: str, secret: str) -> str:
    """An access token for a client (RFC 6749 client_credentials, secret in the form)."""
    response = http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    )
    value: str = check(response, f"token for {client_id}")["access_token"]
    return value


def create_client(
    http: httpx.Client,
    admin: str,
    name: str,
    org: str,
    org_type: str,
    scopes: list[str],
    areas: list[str],
    rate_limit_per_second: float,
) -> Any:
    """Create an API client through the admin API (`admin`: an admin's token); the answer,
    with its id and its secret."""
    return check(
        http.post(
            "/v1/admin/clients",
            headers={"Authorization": f"Bearer {admin}"},
            json={
                "name": name,
                "org": org,
                "org_type": org_type,
                "scopes": scopes,
                "areas": areas,
                "rate_limit_per_second": rate_limit_per_second,
            },
        ),
        f"creating the client {name}",
    )


def provinces() -> list[str]:
    """Every province code of the gazetteer."""
    from libs.common.places import all_communes

    return sorted({code[:2] for code in all_communes()})


@dataclass
class Setup:
    """Everything the two workflow jobs need: tokens by name and the items to act on."""

    referral_tokens: dict[str, str] = field(default_factory=dict)
    grant_tokens: dict[str, str] = field(default_factory=dict)
    visit_tokens: dict[str, str] = field(default_factory=dict)
    referral_items: list[dict[str, Any]] = field(default_factory=list)
    grant_items: list[dict[str, Any]] = field(default_factory=list)
    visit_items: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    # (client id, secret) of every token above, to get fresh ones (tokens live 15 minutes).
    credentials: dict[str, tuple[str, str]] = field(default_factory=dict)

    def refreshed(self, gateway: str) -> tuple[dict[str, str], dict[str, str]]:
        """New tokens for (referral_tokens, grant_tokens), same names."""
        with httpx.Client(base_url=gateway, timeout=60.0) as http:

            def renew(tokens: dict[str, str]) -> dict[str, str]:
                return {name: token(http, *self.credentials[old]) for name, old in tokens.items()}

            return renew(self.referral_tokens), renew(self.grant_tokens)


class Platform:
    """Set-up calls through the gateway, as an admin and then as the bench's clients."""

    def __init__(self, gateway: str, admin_secret: str) -> None:
        self.http = httpx.Client(base_url=gateway, timeout=60.0)
        self.admin = token(self.http, "admin", admin_secret)
        self.credentials: dict[str, tuple[str, str]] = {}  # token -> (client id, secret)

    def close(self) -> None:
        self.http.close()

    def client(
        self, name: str, org: str, org_type: str, scopes: list[str], areas: list[str]
    ) -> str:
        """Create an API client through the admin API; return a token of it."""
        created = create_client(
            self.http, self.admin, name, org, org_type, scopes, areas, RATE_LIMIT
        )
        pair = (created["client_id"], created["client_secret"])
        value = token(self.http, *pair)
        self.credentials[value] = pair
        return value

    def post(self, path: str, bearer: str, body: Any, what: str) -> Any:
        response = self.http.post(path, headers={"Authorization": f"Bearer {bearer}"}, json=body)
        return check(response, what)

    def probe(self, path: str, bearer: str, body: Any) -> int:
        """The status of a call whose success is not expected (set-up probes)."""
        response = self.http.post(path, headers={"Authorization": f"Bearer {bearer}"}, json=body)
        return response.status_code


def set_up(
    gateway: str,
    admin_secret: str,
    children: list[dict[str, Any]],
    caught_up: Callable[[], bool],
    timeout: float,
    say: Callable[[str], None],
) -> Setup:
    """Clients, providers, funds and children for both workflows; wait until the referrals
    and funds services know every child (`caught_up`: their consumers have no backlog)."""
    started = time.monotonic()
    out = Setup()
    platform = Platform(gateway, admin_secret)
    try:
        areas = provinces()
        government = platform.client(
            "bench-referrer",
            "bench-moswvy",
            "government",
            ["registry:read", "registry:write", "referrals:read", "referrals:write"],
            ["KH"],
        )
        out.referral_tokens["government"] = government
        for code in areas:
            org = f"bench-ngo-{code}"
            provider = platform.post(
                "/v1/referrals/providers",
                government,
                {
                    "name": f"Bench health provider {code}",
                    "org": org,
                    "service_types": ["health"],
                    "areas": [code],
                    "capacity": PROVIDER_CAPACITY,
                },
                f"creating the provider of province {code}",
            )
            out.referral_tokens[f"provider:{provider['id']}"] = platform.client(
                f"bench-provider-{code}",
                org,
                "partner",
                ["referrals:read", "referrals:respond"],
                [code],
            )

        manager = platform.client(
            "bench-fund-manager",
            "bench-moswvy",
            "government",
            ["funds:manage", "funds:read"],
            ["KH"],
        )
        # Three principals: the approver is never the requester (maker-checker).
        for role, scope in GRANT_ROLES.items():
            out.grant_tokens[role] = platform.client(
                f"bench-{role}", "bench-moswvy", "government", [scope, "funds:read"], ["KH"]
            )
        year = dt.date.today().year
        fund_of: dict[str, str] = {}
        for code in areas:
            fund = platform.post(
                "/v1/funds/funds",
                manager,
                {
                    "commune_code": code,
                    "fiscal_year": year,
                    "name": f"Bench fund {code}",
                    "budget_khr": FUND_BUDGET_KHR,
                    "max_grant_khr": MAX_GRANT_KHR,
                    "approval_threshold_khr": APPROVAL_THRESHOLD_KHR,
                },
                f"creating the fund of province {code}",
            )
            fund_of[code] = fund["id"]

        say(f"{len(areas)} providers and funds, {len(areas) + 5} clients: {_since(started)}")
        ids = register(platform, government, children)
        say(f"{len(ids)} children registered: {_since(started)}")
        for child_id, body in zip(ids, children, strict=True):
            out.referral_items.append({"child_id": child_id})
            out.grant_items.append(
                {"child_id": child_id, "fund_id": fund_of[body["commune_code"][:2]]}
            )
        last = out.grant_items[-1]
        await_children(platform, government, out.grant_tokens["requester"], last, timeout)
        say(f"the referrals and funds services know them: {_since(started)}")
        wait_until(caught_up, timeout, "the referrals and funds services catching up")
        placed = [(i, body["commune_code"][:2]) for i, body in zip(ids, children, strict=True)]
        out.visit_tokens["government"], out.visit_items = assign_workers(platform, areas, placed)
        say(f"{len(ids)} children assigned to {len(areas)} workers: {_since(started)}")
        out.credentials = dict(platform.credentials)
    finally:
        platform.close()
    out.seconds = round(time.monotonic() - started, 1)
    return out


def assign_workers(
    platform: Platform, areas: list[str], children: list[tuple[str, str]]
) -> tuple[str, list[dict[str, Any]]]:
    """A trained, contracted community support worker per province, each child assigned to
    its province's worker (the casework service knows the children once the consumers have
    caught up); `children` are (id, province) pairs. A casework token and the visit
    workflow's items."""
    casework = platform.client(
        "bench-casework", "bench-moswvy", "government", ["casework:read", "casework:write"], ["KH"]
    )
    today = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=7)).date()  # Cambodia's date
    worker_of: dict[str, str] = {}
    for code in areas:
        worker = platform.post(
            "/v1/casework/workers",
            casework,
            {
                "org": "bench-moswvy",
                "role": "community_support_worker",
                "given_name": "Bench",
                "family_name": f"Worker {code}",
                "sex": "female",
                "areas": [code],
                "max_caseload": WORKER_CASELOAD,
                "trainings": [
                    {"course": "child_protection_basics", "completed_on": f"{today.year - 1}-01-15"}
                ],
                "contracts": [
                    {
                        "org": "bench-moswvy",
                        "start_on": f"{today.year - 1}-01-01",
                        "monthly_fee_khr": 400_000,
                    }
                ],
            },
            f"creating the worker of province {code}",
        )
        worker_of[code] = worker["id"]
    items = []
    for child_id, province in children:
        platform.post(
            "/v1/casework/assignments",
            casework,
            {"child_id": child_id, "worker_id": worker_of[province]},
            "assigning a child",
        )
        items.append(
            {
                "child_id": child_id,
                "date": today.isoformat(),
                "next_visit_on": (today + dt.timedelta(days=30)).isoformat(),
            }
        )
    return casework, items


def fresh_token(gateway: str, credentials: tuple[str, str]) -> str:
    """A new token of a client (tokens live 15 minutes; a long run asks again)."""
    with httpx.Client(base_url=gateway, timeout=60.0) as http:
        return token(http, *credentials)


def _since(started: float) -> str:
    return f"{time.monotonic() - started:.1f} s"


def register(platform: Platform, bearer: str, children: list[dict[str, Any]]) -> list[str]:
    """Register children through the batch endpoint; their ids, in order."""
    ids: list[str] = []
    for start in range(0, len(children), 1000):
        answer = platform.post(
            "/v1/registry/children:batch",
            bearer,
            {"items": children[start : start + 1000]},
            "registering the workflow children",
        )
        for result in answer["results"]:
            if result["status"] != "created":
                raise RuntimeError(f"registering the workflow children: {result}")
            ids.append(result["id"])
    return ids


def await_children(
    platform: Platform, referrer: str, requester: str, item: dict[str, Any], timeout: float
) -> None:
    """Wait until both services know the last child registered (events arrive in order).

    Probes that change nothing: a referral for a service no provider offers (404 while the
    child is unknown, then 422 "no provider"), a grant above the fund's maximum (404, then
    422 "exceeds the maximum")."""
    referral = {"child_id": item["child_id"], "service_type": "livelihood", "reason": "probe"}
    grant = {
        "child_id": item["child_id"],
        "fund_id": item["fund_id"],
        "category": "education_support",
        "amount_khr": MAX_GRANT_KHR + 1,
        "justification": "probe",
    }
    probes = [
        ("referrals", "/v1/referrals", referrer, referral),
        ("funds", "/v1/funds/grants", requester, grant),
    ]
    deadline = time.monotonic() + timeout
    for service, path, bearer, body in probes:
        while True:
            status = platform.probe(path, bearer, body)
            if status == 422:
                break
            if status != 404:
                raise RuntimeError(f"probing the {service} service for a child: HTTP {status}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the {service} service did not learn the children in time")
            time.sleep(0.25)


def wait_until(ready: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `ready` until it holds twice in a row, half a second apart."""
    deadline = time.monotonic() + timeout
    streak = 0
    while streak < 2:
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        streak = streak + 1 if ready() else 0
        time.sleep(0.5)


def consumer_backlog(nats_url: str, consumers: list[tuple[str, str]]) -> int | None:
    """Messages the durable consumers have not yet acknowledged; None when one is missing."""
    import nats
    from nats.js.errors import NotFoundError

    async def backlog() -> int | None:
        nc = await nats.connect(nats_url, connect_timeout=5, max_reconnect_attempts=0)
        try:
            js = nc.jetstream()
            total = 0
            for stream, durable in consumers:
                try:
                    info = await js.consumer_info(stream, durable)
                except NotFoundError:
                    return None
                total += (info.num_pending or 0) + (info.num_ack_pending or 0)
            return total
        finally:
            await nc.close()

    return asyncio.run(backlog())
