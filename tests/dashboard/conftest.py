"""The dashboard in a real browser: Debian's Chromium, driven by Playwright, against a whole
running platform (PostgreSQL, NATS, every service, the gateway and the dashboard as real
processes), with users and records made through the gateway's API.

Every page a test opens is watched: a console error, an uncaught script error or a request
to anything but this machine fails the test (the request is refused before it leaves).
"""

from __future__ import annotations

import datetime as dt
import secrets
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Route,
    async_playwright,
)

from tests.e2e.conftest import Platform, running_platform, token

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# As the machine's own probe starts it: no background traffic to Google's hosts.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
]
PASSWORD = "a long pass phrase for tests"
LOGIN_FAILURE_BURST = 40
ARTEFACTS = Path(__file__).resolve().parents[2] / "var" / "test-artefacts" / "dashboard"

COMMUNE = "120101"  # Tonle Basak, Chamkar Mon, Phnom Penh
OTHER_COMMUNE = "020101"  # Kantueu Muoy, Banan, Battambang
PROVINCE = "12"
STAFF_SCOPES = [
    "registry:read",
    "registry:write",
    "referrals:read",
    "referrals:write",
    "funds:read",
    "funds:request",
    "casework:read",
    "indicators:read",
]


@dataclass
class World:
    """What the tests find on the platform: users (by role) and the records made for them."""

    dashboard: str
    gateway: str
    admin_headers: dict[str, str]
    users: dict[str, str] = field(default_factory=dict)  # role -> username
    children: dict[str, str] = field(default_factory=dict)  # label -> child id
    fund_id: str = ""
    provider_id: str = ""


# The gateway trusts the dashboard as a production overlay's does (KOMAR_TRUSTED_PROXIES:
# the cluster's network there, loopback here), so it reads a browser's address from the
# dashboard's X-Forwarded-For; failed sign-ins per address are few enough to run out of in
# a test (tests/dashboard/test_hostile.py).
SETTINGS = {
    "KOMAR_TRUSTED_PROXIES": '["127.0.0.1/32"]',
    "KOMAR_LOGIN_FAILURES_PER_MINUTE": "40",
    "KOMAR_LOGIN_FAILURE_BURST": str(LOGIN_FAILURE_BURST),
}


@pytest.fixture(scope="package")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with running_platform(tmp_path_factory.mktemp("dashboard"), settings=SETTINGS) as p:
        yield p


async def fresh_admin(client: httpx.AsyncClient, platform: Platform) -> dict[str, str]:
    """The bootstrap admin's headers, with a token made now (a token lives 15 minutes)."""
    return {"Authorization": f"Bearer {await token(client, 'admin', platform.admin_secret)}"}


async def make_user(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    *,
    name: str,
    org: str,
    areas: list[str],
    scopes: list[str],
    org_type: str = "government",
) -> str:
    username = f"{name.split()[0].lower()}-{secrets.token_hex(3)}"
    r = await client.post(
        "/v1/admin/users",
        json={
            "name": name,
            "org": org,
            "org_type": org_type,
            "scopes": scopes,
            "areas": areas,
            "username": username,
            "password": PASSWORD,
            "rate_limit_per_second": 1000,
        },
        headers=admin,
    )
    assert r.status_code == 201, r.text
    return username


async def user_headers(client: httpx.AsyncClient, username: str) -> dict[str, str]:
    r = await client.post(
        "/oauth/token", data={"grant_type": "password", "username": username, "password": PASSWORD}
    )
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def register(
    client: httpx.AsyncClient, headers: dict[str, str], village: str, given: str, family: str
) -> str:
    r = await client.post(
        "/v1/registry/children",
        json={
            "given_name": given,
            "family_name": family,
            "sex": "female",
            "birth_date": "2015-04-12",
            "village_code": village,
            "vulnerabilities": ["out_of_school", "poor_household"],
            "risk_level": "high",
            "consent": {"data_sharing": True, "given_by": "mother", "date": "2026-11-01"},
        },
        headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


@pytest.fixture(scope="package")
async def world(platform: Platform) -> AsyncIterator[World]:
    """Users of one commune (a maker and a checker), a user of another commune, a provincial
    manager; a fund and a provider for the commune; children in both communes."""
    async with httpx.AsyncClient(base_url=platform.gateway, timeout=60) as client:
        admin = await fresh_admin(client, platform)
        w = World(platform.dashboard, platform.gateway, admin)
        org = f"ccwc-{COMMUNE}"
        w.users["maker"] = await make_user(
            client, admin, name="Sokha Maker", org=org, areas=[COMMUNE], scopes=STAFF_SCOPES
        )
        w.users["checker"] = await make_user(
            client,
            admin,
            name="Dara Checker",
            org=org,
            areas=[COMMUNE],
            scopes=[*STAFF_SCOPES, "funds:approve", "funds:disburse"],
        )
        w.users["other"] = await make_user(
            client,
            admin,
            name="Vuthy Elsewhere",
            org=f"ccwc-{OTHER_COMMUNE}",
            areas=[OTHER_COMMUNE],
            scopes=STAFF_SCOPES,
        )
        w.users["province"] = await make_user(
            client,
            admin,
            name="Channa Province",
            org=f"dosvy-{PROVINCE}",
            areas=[PROVINCE],
            scopes=["registry:read", "referrals:read", "funds:read", "indicators:read"],
        )
        w.users["analyst"] = await make_user(
            client,
            admin,
            name="Rith Analyst",
            org=f"dosvy-{PROVINCE}",
            areas=[PROVINCE],
            scopes=["indicators:read", "indicators:read:detail"],
        )
        w.users["provider"] = await make_user(
            client,
            admin,
            name="Malis Clinic",
            org="ngo-clinic",
            org_type="partner",
            areas=[PROVINCE],
            scopes=["registry:read", "referrals:read", "referrals:respond"],
        )
        manager = await make_user(
            client,
            admin,
            name="Setup Manager",
            org=f"dosvy-{PROVINCE}",
            areas=[PROVINCE],
            scopes=["funds:manage", "funds:read", "referrals:write", "referrals:read"],
        )
        mh = await user_headers(client, manager)
        r = await client.post(
            "/v1/funds/funds",
            json={
                "commune_code": COMMUNE,
                "fiscal_year": dt.date.today().year,
                "name": "Tonle Basak emergency fund",
                "budget_khr": 20_000_000,
                "max_grant_khr": 2_000_000,
                "approval_threshold_khr": 1_000_000,
            },
            headers={**mh, "Idempotency-Key": uuid.uuid4().hex},
        )
        assert r.status_code == 201, r.text
        w.fund_id = r.json()["id"]
        r = await client.post(
            f"/v1/funds/funds/{w.fund_id}/top-ups",
            json={"amount_khr": 20_000_000, "reference": "budget 2026"},
            headers={**mh, "Idempotency-Key": uuid.uuid4().hex},
        )
        assert r.status_code in (200, 201), r.text
        r = await client.post(
            "/v1/referrals/providers",
            json={
                "name": "Phnom Penh Children's Clinic",
                "org": "ngo-clinic",
                "service_types": ["health", "psychosocial"],
                "areas": [PROVINCE],
                "capacity": 50,
            },
            headers={**mh, "Idempotency-Key": uuid.uuid4().hex},
        )
        assert r.status_code == 201, r.text
        w.provider_id = r.json()["id"]
        maker = await user_headers(client, w.users["maker"])
        other = await user_headers(client, w.users["other"])
        w.children["sreymom"] = await register(client, maker, f"{COMMUNE}01", "Sreymom", "Keo")
        w.children["elsewhere"] = await register(
            client, other, f"{OTHER_COMMUNE}01", "Bopha", "Keo"
        )
        yield w


# ---------------------------------------------------------------------------- the browser


@pytest.fixture(scope="package")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        await b.close()


@dataclass
class Watch:
    """What went wrong on a page: console errors, script errors, refused requests."""

    errors: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    # Console errors a test expects (the answer to a not-found page is a 404).
    expected: list[str] = field(default_factory=list)

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(x in e for x in self.expected)]


class Pages:
    """New browser contexts (one per user), each of whose pages is watched."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.contexts: list[BrowserContext] = []
        self.watch = Watch()

    async def context(self) -> BrowserContext:
        context = await self.browser.new_context(viewport={"width": 1280, "height": 900})
        self.contexts.append(context)

        async def local_only(route: Route) -> None:
            host = urlsplit(route.request.url).hostname
            if route.request.url.startswith(("data:", "blob:")) or host in {
                "127.0.0.1",
                "localhost",
            }:
                await route.continue_()
            else:
                self.watch.refused.append(route.request.url)
                await route.abort()

        await context.route("**/*", local_only)
        context.on("page", self._watch_page)
        return context

    def _watch_page(self, page: Page) -> None:
        def console(message: ConsoleMessage) -> None:
            if message.type == "error":
                self.watch.errors.append(f"{page.url}: {message.text}")

        page.on("console", console)
        page.on("pageerror", lambda exc: self.watch.errors.append(f"{page.url}: {exc}"))

    async def page(self) -> Page:
        return await (await self.context()).new_page()

    async def signed_in(self, world: World, role: str) -> Page:
        page = await self.page()
        await sign_in(page, world, world.users[role])
        return page

    async def close(self) -> None:
        for context in self.contexts:
            await context.close()


async def sign_in(page: Page, world: World, username: str, password: str = PASSWORD) -> None:
    await page.goto(f"{world.dashboard}/sign-in")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", password)
    await page.click("form[action='/sign-in'] button[type=submit]")
    await page.wait_for_load_state()


@pytest.fixture
async def pages(browser: Browser) -> AsyncIterator[Pages]:
    p = Pages(browser)
    yield p
    await p.close()
    assert not p.watch.refused, f"requests that would have left the machine: {p.watch.refused}"
    assert not p.watch.unexpected(), f"browser console errors: {p.watch.unexpected()}"


def artefact(name: str) -> Path:
    """A file under var/test-artefacts/dashboard (kept after the run)."""
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    return ARTEFACTS / name


def not_blank(png: bytes) -> bool:
    """Whether a screenshot shows something: more than a handful of colours, and ink."""
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    small = image.resize((200, 150))
    colours = small.getcolors(maxcolors=200 * 150) or []
    return len(colours) > 20
