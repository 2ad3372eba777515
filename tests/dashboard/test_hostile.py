"""The dashboard used carelessly and attacked: where `next` may send a browser, names that
are markup, forms that are too much or malformed, query strings with control characters,
sessions and CSRF tokens that are not the browser's own, methods no page has, the headers of
every kind of answer, PDFs and CSVs asked for with hostile values and many at once, a form
sent twice, and the gateway gone for a moment.

Every answer is a page in the user's language or a redirect to a page of the dashboard:
never a 500, never problem+json, never a traceback. The records these tests make are in a
commune of their own (Siem Reap), so that the counts the other tests check do not move.
"""

from __future__ import annotations

import asyncio
import html
import re
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.routing import APIRoute
from playwright.async_api import Dialog

from dashboard.i18n import translator
from dashboard.pages import ROUTERS
from dashboard.web import CONTENT_SECURITY_POLICY
from tests.dashboard.conftest import (
    LOGIN_FAILURE_BURST,
    PASSWORD,
    STAFF_SCOPES,
    Pages,
    World,
    fresh_admin,
    make_user,
    register,
    sign_in,
    user_headers,
)
from tests.e2e.conftest import Platform

HERE = "170101"  # Siem Reap's first commune: no other test counts anything there
SCRIPT = "<script>alert(1)</script>"
IMAGE = '"><img src=x onerror=alert(1)>'
KHMER_GIVEN = "ស្រី\u200dមុំ"  # a zero-width joiner inside
KHMER_FAMILY = "កែ\u200cវ"  # a zero-width non-joiner inside
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
ONCE = re.compile(r'name="_once" value="([^"]+)"')
MIB = 1024 * 1024
EN, KM = translator("en"), translator("km")


@dataclass
class Careless:
    """A commune user of their own, and the children they registered."""

    username: str
    script: str  # a child whose names are markup
    khmer: str  # a child whose names hold zero-width joiners
    spare: str  # a child for forms that are refused
    twice: str  # a child referred by forms sent twice


@pytest.fixture(scope="module")
async def careless(platform: Platform, world: World) -> Careless:
    async with httpx.AsyncClient(base_url=world.gateway, timeout=60) as client:
        admin = await fresh_admin(client, platform)
        username = await make_user(
            client,
            admin,
            name="Kanha Careless",
            org=f"ccwc-{HERE}",
            areas=[HERE],
            scopes=STAFF_SCOPES,
        )
        manager = await make_user(
            client,
            admin,
            name="Setup Siemreap",
            org="dosvy-17",
            areas=[HERE[:2]],
            scopes=["referrals:write", "referrals:read"],
        )
        r = await client.post(
            "/v1/referrals/providers",
            json={
                "name": "Siem Reap Health Post",
                "org": "ngo-siemreap",
                "service_types": ["health"],
                "areas": [HERE[:2]],
                "capacity": 50,
            },
            headers={**await user_headers(client, manager), "Idempotency-Key": uuid.uuid4().hex},
        )
        assert r.status_code == 201, r.text
        headers = await user_headers(client, username)
        village = f"{HERE}01"
        found = Careless(
            username=username,
            script=await register(client, headers, village, SCRIPT, IMAGE),
            khmer=await register(client, headers, village, KHMER_GIVEN, KHMER_FAMILY),
            spare=await register(client, headers, village, "Careless", "Clicker"),
            twice=await register(client, headers, village, "Double", "Click"),
        )
        # The visit form reads the child's case: casework learns a child a moment after.
        for _ in range(120):
            r = await client.get(f"/v1/casework/children/{found.spare}", headers=headers)
            if r.status_code == 200:
                return found
            await asyncio.sleep(0.25)
        raise AssertionError("casework never learnt the child")


# ---------------------------------------------------------------------------- helpers


@asynccontextmanager
async def browser_like(
    world: World, username: str | None = None, password: str = PASSWORD
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client that signs in as a browser does: the form's CSRF token, then POST."""
    async with httpx.AsyncClient(base_url=world.dashboard, timeout=120) as client:
        if username is not None:
            r = await client.get("/sign-in")
            r = await client.post(
                "/sign-in",
                data={"csrf": csrf_of(r.text), "username": username, "password": password},
            )
            assert r.status_code == 303, r.text
            assert r.headers["location"] == "/"
        yield client


def csrf_of(page: str) -> str:
    match = CSRF.search(page)
    assert match, "no CSRF token on the page"
    return match.group(1)


def assert_page(r: httpx.Response, status: int | None = None) -> str:
    """The answer is an HTML page (of `status`), safe headers on, no trace of a failure."""
    kind = r.headers.get("content-type", "")
    assert kind.startswith("text/html"), (r.status_code, kind, r.text[:300])
    assert r.status_code != 500, r.text[:300]
    if status is not None:
        assert r.status_code == status, (r.status_code, r.text[:300])
    assert "Traceback" not in r.text
    assert "problem+json" not in r.text
    assert_safe_headers(r)
    return r.text


def assert_safe_headers(r: httpx.Response, *, cacheable: bool = False) -> None:
    assert r.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    if cacheable:
        assert r.headers["cache-control"].startswith("public")
    else:
        assert r.headers["cache-control"] == "no-store"
    assert not re.search(r"\d", r.headers.get("server", "")), "a server version"


def assert_local_redirect(r: httpx.Response) -> str:
    assert r.status_code in (302, 303), (r.status_code, r.text[:300])
    location = r.headers["location"]
    parts = urlsplit(location)
    assert not parts.scheme, location
    assert not parts.netloc, location
    assert location.startswith("/"), location
    assert not location.startswith("//"), location
    assert "\\" not in location, location
    return location


def has_error(page: str, message: str) -> bool:
    return html.escape(message) in page


def title_of(page: str) -> str:
    match = re.search(r"<h1>([^<]*)</h1>", page)
    return html.unescape(match.group(1)) if match else ""


# ---------------------------------------------------------------------------- redirects

OFF_SITE = [
    "//evil.example",
    "https://evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "%2F%2Fevil.example",
    "/%2F%2Fevil.example",
    "///evil.example",
    "/\t/evil.example",
    " //evil.example",
    "http:evil.example",
    "javascript:alert(1)",
    "/\x00/evil",
    "/\r\nSet-Cookie: x=1",
]


async def test_next_never_leads_off_the_dashboard(world: World, careless: Careless) -> None:
    for hostile in OFF_SITE:
        async with browser_like(world) as client:
            r = await client.get("/sign-in")
            r = await client.post(
                "/sign-in",
                data={
                    "csrf": csrf_of(r.text),
                    "username": careless.username,
                    "password": PASSWORD,
                    "next": hostile,
                },
            )
            assert assert_local_redirect(r) in ("/", "/%2F%2Fevil.example"), hostile
            r = await client.post(
                "/language",
                data={"csrf": csrf_of((await client.get("/")).text), "lang": "en", "next": hostile},
            )
            assert assert_local_redirect(r) in ("/", "/%2F%2Fevil.example"), hostile
            # Already signed in, the sign-in page sends them on: to the dashboard.
            r = await client.get("/sign-in", params={"next": hostile})
            if r.status_code == 422:  # a control character in the query: refused, as a page
                assert_page(r, 422)
            else:
                assert_local_redirect(r)


async def test_signing_in_with_a_hostile_next_lands_on_the_dashboard(
    pages: Pages, world: World, careless: Careless
) -> None:
    for hostile in ("//evil.example", "https://evil.example/x", "/\\evil.example"):
        page = await pages.page()
        await page.goto(f"{world.dashboard}/sign-in?next={hostile}")
        await page.fill("input[name=username]", careless.username)
        await page.fill("input[name=password]", PASSWORD)
        await page.click("form[action='/sign-in'] button[type=submit]")
        await page.wait_for_load_state()
        assert page.url.startswith(world.dashboard + "/"), page.url
        assert await page.is_visible("h1:has-text('Overview')")


# ---------------------------------------------------------------------------- markup in names


async def test_names_that_are_markup_are_shown_as_text(
    pages: Pages, world: World, careless: Careless
) -> None:
    page = await pages.page()
    dialogs: list[str] = []

    async def dismiss(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        await dialog.dismiss()

    page.on("dialog", dismiss)
    await sign_in(page, world, careless.username)
    child = careless.script
    await page.goto(world.dashboard + "/children?q=script")
    assert SCRIPT in await page.inner_text("#children")
    for path in (
        f"/children/{child}",
        f"/children/{child}/history",
        f"/referrals/new?child_id={child}",
        f"/grants/new?child_id={child}",
    ):
        response = await page.goto(world.dashboard + path)
        assert response is not None, path
        assert response.status == 200, path
        text = await page.inner_text("main")
        assert SCRIPT in text, path
        assert IMAGE in text, path
        assert await page.locator("main img").count() == 0, path
        assert await page.locator("main script").count() == 0, path
    await page.goto(f"{world.dashboard}/children/{careless.khmer}")
    assert f"{KHMER_GIVEN} {KHMER_FAMILY}" in await page.inner_text("h1")
    await page.goto(f"{world.dashboard}/children?q={SCRIPT}")
    assert await page.input_value("input[name=q]") == SCRIPT
    assert dialogs == []


# ---------------------------------------------------------------------------- forms


async def test_forms_too_big_or_malformed_get_a_page(world: World, careless: Careless) -> None:
    child = careless.spare
    form_path = f"/referrals/new?child_id={child}"
    async with browser_like(world, careless.username) as client:
        csrf = csrf_of((await client.get(form_path)).text)
        base = {"csrf": csrf, "child_id": child, "_from": form_path, "urgency": "normal"}

        # 100 KB in a text area: the form again, with what is wrong.
        r = await client.post(
            "/referrals", data={**base, "service_type": "x", "reason": "x" * 100_000}
        )
        page = assert_page(r, 200)
        assert has_error(page, EN("referrals.too_long", max=1000))
        # Over the 1 MiB limit: a page saying so.
        r = await client.post("/referrals", data={**base, "reason": "x" * (MIB + 10)})
        assert "too large" in assert_page(r, 413)
        # Control characters and NUL: the API's word, beside the form.
        r = await client.post(
            "/referrals", data={**base, "service_type": "health", "reason": "a\x00b\x1b[31m"}
        )
        page = assert_page(r, 200)
        assert 'id="form-problem"' in page
        # Bytes that are not UTF-8, raw and percent-encoded (and a service not in the list).
        for reason in (b"\xff\xfe", b"%ff%fe"):
            body = f"csrf={csrf}&child_id={child}&service_type=weapon&reason=".encode() + reason
            r = await client.post(
                "/referrals",
                content=body,
                headers={"content-type": "application/x-www-form-urlencoded"},
            )
            assert has_error(assert_page(r, 200), EN("referrals.pick_service"))
        # 10,000 fields.
        many = "&".join(f"f{i}=1" for i in range(10_000)) + f"&csrf={csrf}"
        r = await client.post(
            "/referrals",
            content=many.encode(),
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert_page(r, 400)
        # A file, and a multipart body that is not one.
        r = await client.post("/referrals", data=base, files={"f": ("a.txt", b"x" * 100)})
        assert_page(r, 400)
        r = await client.post(
            "/referrals",
            content=b"garbage",
            headers={"content-type": "multipart/form-data; boundary=zz"},
        )
        assert_page(r, 400)
        # Missing fields: no child to refer.
        assert_page(await client.post("/referrals", data={"csrf": csrf}), 404)
        # Duplicate fields: never a success.
        duplicated = (
            f"csrf={csrf}&child_id={child}&child_id={world.children['elsewhere']}"
            "&service_type=health&service_type=weapon&reason=r"
        )
        r = await client.post(
            "/referrals",
            content=duplicated.encode(),
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert r.status_code in (200, 404)
        assert_page(r)
        # Still signed in, nothing referred.
        assert_page(await client.get("/"), 200)
        assert await referrals_of(world, careless, child) == []

    # A visitor's body over the limit is refused in their language too.
    async with browser_like(world) as client:
        client.cookies.set("komar_lang", "km")
        r = await client.post("/sign-in", data={"username": "x" * (MIB + 10), "password": "x"})
        page = assert_page(r, 413)
        assert html.escape(KM("error.too_large")) in page
        assert '<html lang="km">' in page


async def referrals_of(world: World, careless: Careless, child: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=world.gateway, timeout=30) as client:
        r = await client.get(
            "/v1/referrals",
            params={"child_id": child},
            headers=await user_headers(client, careless.username),
        )
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def test_values_not_in_a_list_and_numbers_people_type(
    world: World, careless: Careless
) -> None:
    child = careless.spare
    async with browser_like(world, careless.username) as client:
        csrf = csrf_of((await client.get("/")).text)
        # A grant without a fund: the form again, whatever the amount; the amount's error
        # only for what is not a whole number of riel above zero.
        grant = {"csrf": csrf, "child_id": child, "category": "education_support", "fund_id": ""}
        for amount in ("1e9", "-5", "٣٠٠", "9" * 40, "0", "1.5", "１００", "0x10"):
            r = await client.post("/grants", data={**grant, "amount_khr": amount})
            page = assert_page(r, 200)
            assert has_error(page, EN("grants.pick_fund")), amount
            assert has_error(page, EN("grants.whole_riel")), amount
        for amount in ("១៥០០០០", "150,000", "150 000"):
            r = await client.post("/grants", data={**grant, "amount_khr": amount})
            page = assert_page(r, 200)
            assert not has_error(page, EN("grants.whole_riel")), amount
        r = await client.post("/grants", data={**grant, "category": "weapon", "amount_khr": "5"})
        assert has_error(assert_page(r, 200), EN("grants.pick_category"))

        referral = {"csrf": csrf, "child_id": child, "reason": "r"}
        r = await client.post("/referrals", data={**referral, "service_type": "weapon"})
        assert has_error(assert_page(r, 200), EN("referrals.pick_service"))
        r = await client.post(
            "/referrals", data={**referral, "service_type": "health", "urgency": "panic"}
        )
        assert has_error(assert_page(r, 200), EN("referrals.pick_urgency"))

        visit = {"csrf": csrf, "child_id": child, "kind": "home_visit", "outcome": "met"}
        for day in ("2026-02-30", "0000-01-01", "២០២៦-០១-០១", "2026-1-1", "yesterday"):
            r = await client.post("/casework/visits", data={**visit, "date": day})
            assert has_error(assert_page(r, 200), EN("casework.bad_date")), day
        r = await client.post(
            "/casework/visits", data={**visit, "date": "2026-01-01", "kind": "weapon"}
        )
        assert has_error(assert_page(r, 200), EN("casework.pick_kind"))
    assert await referrals_of(world, careless, child) == []


async def test_in_the_browser_a_form_too_large_or_an_address_refused_is_a_page(
    pages: Pages, world: World, careless: Careless
) -> None:
    pages.watch.expected += ["413", "422"]  # the pages' own status, as the console reports it
    page = await pages.page()
    await sign_in(page, world, careless.username)
    await page.goto(f"{world.dashboard}/referrals/new?child_id={careless.spare}")
    await page.select_option("#service_type", "health")
    # A text area without its limit (another browser, a page kept open across a release).
    await page.evaluate("document.querySelector('#reason').removeAttribute('maxlength')")
    await page.fill("#reason", "x" * (MIB + 100))
    await page.click("#refer-submit")
    await page.wait_for_load_state()
    assert await page.inner_text("h1") == EN("error.bad_request.title")
    assert EN("error.too_large") in await page.inner_text("main")
    response = await page.goto(f"{world.dashboard}/children?q=%00")
    assert response is not None
    assert response.status == 422
    assert EN("error.bad_address") in await page.inner_text("main")
    await page.click("text=" + EN("error.home"))
    assert await page.is_visible("h1:has-text('Overview')")  # still signed in


async def test_a_child_of_another_commune_cannot_be_posted(
    world: World, careless: Careless
) -> None:
    elsewhere = world.children["elsewhere"]
    async with browser_like(world, world.users["maker"]) as client:
        csrf = csrf_of((await client.get("/")).text)
        for path, form in (
            ("/referrals", {"service_type": "health", "reason": "r"}),
            ("/grants", {"fund_id": world.fund_id, "category": "education_support"}),
            ("/casework/visits", {"date": "2026-01-01", "kind": "home_visit", "outcome": "met"}),
        ):
            r = await client.post(
                path, data={"csrf": csrf, "child_id": elsewhere, "amount_khr": "1000", **form}
            )
            assert title_of(assert_page(r, 404)) == EN("error.not_found.title"), path
        for path in (
            f"/referrals/new?child_id={elsewhere}",
            f"/grants/new?child_id={elsewhere}",
            f"/casework/visits/new?child_id={elsewhere}",
        ):
            assert_page(await client.get(path), 404)
    async with httpx.AsyncClient(base_url=world.gateway, timeout=30) as client:
        headers = await user_headers(client, world.users["other"])
        r = await client.get("/v1/referrals", params={"child_id": elsewhere}, headers=headers)
        assert r.json()["items"] == []
        r = await client.get("/v1/funds/grants", params={"child_id": elsewhere}, headers=headers)
        assert r.json()["items"] == []


async def test_a_form_sent_twice_is_done_once(
    pages: Pages, world: World, careless: Careless
) -> None:
    child = careless.twice
    form_path = f"/referrals/new?child_id={child}"
    async with browser_like(world, careless.username) as client:
        made: set[str] = set()
        for _ in range(60):  # the referrals service learns a new child a moment after
            shown = (await client.get(form_path)).text
            match = ONCE.search(shown)
            assert match, "no page token on the form"
            form = {
                "csrf": csrf_of(shown),
                "_once": match.group(1),
                "_from": form_path,
                "child_id": child,
                "service_type": "health",
                "urgency": "normal",
                "reason": "Sent three times at once, then once more.",
            }
            answers = await asyncio.gather(
                *(client.post("/referrals", data=form) for _ in range(3))
            )
            made = {assert_local_redirect(r) for r in answers if r.status_code == 303}
            if made:
                made.add(assert_local_redirect(await client.post("/referrals", data=form)))
                break
            for r in answers:
                assert_page(r, 200)  # not known to referrals yet: the form, with a problem
            await asyncio.sleep(0.5)
        assert len(made) == 1, made
        assert len(await referrals_of(world, careless, child)) == 1

    # In the browser: a double click on the button.
    page = await pages.page()
    await sign_in(page, world, careless.username)
    await page.goto(world.dashboard + form_path)
    await page.select_option("#service_type", "health")
    await page.fill("#reason", "Another referral, double-clicked.")
    await page.dblclick("#refer-submit")
    await page.wait_for_url(re.compile(r"/referrals/[0-9a-f-]{36}$"))
    assert len(await referrals_of(world, careless, child)) == 2


# ---------------------------------------------------------------------------- query strings


async def test_query_strings_with_control_characters_or_nonsense_get_a_page(
    world: World, careless: Careless
) -> None:
    async with browser_like(world, careless.username) as client:
        for path in (
            "/children?q=%00",
            "/children?q=a%0ab",
            "/children?cursor=%1b",
            "/referrals?status=%7f",
            "/indicators?area=%00",
            "/reports/progress?quarter=%0d%0a",
            "/sign-in?next=%00",
            "/children?q=%ff%fe",
            "/children?%ff=1",
            "/children?%00=1",
        ):
            page = assert_page(await client.get(path), 422)
            assert title_of(page) == EN("error.bad_request.title"), path
            assert html.escape(EN("error.bad_address")) in page
        for path in ("/children%00", "/children/%0a", "/static/%00.css"):
            assert_page(await client.get(path), 404)
        # The same page in Khmer for a Khmer reader.
        async with browser_like(world) as visitor:
            visitor.cookies.set("komar_lang", "km")
            page = assert_page(await visitor.get("/children?q=%00"), 422)
            assert title_of(page) == KM("error.bad_request.title")

        here = careless.spare
        for path in (
            "/children?q=" + "a" * 60_000,
            "/children?cursor=not-a-cursor",
            "/children?cursor=" + "A" * 5000,
            f"/children/{here}/history?cursor=%E1%9F%A1",
            "/referrals?cursor=..%2F..&status=pending&status=bogus",
            "/funds?cursor=x&cursor=y",
            "/casework?tab=workers&cursor=zzz&role=weapon",
            "/indicators?indicator=../../x&period=999999&level=village",
            "/indicators?indicator=CP_CHILD_REG&period=190001&area=999999",
            "/indicators?period=2026Q9&area=12345678901234567890",
            "/reports/progress?area=<script>&quarter=9999Q9",
            "/children?status=open&status=closed&q=a&q=b&risk_level=extreme",
        ):
            assert_page(await client.get(path), 200)
        # Another area's figures: the API's answer (not allowed), as a page.
        for path in ("/indicators?area=KH", "/indicators.csv?area=12", "/reports/progress?area=12"):
            page = assert_page(await client.get(path), 403)
            assert title_of(page) == EN("error.forbidden.title"), path

    # Signed out, a long address comes back after signing in as its path alone: a redirect
    # that quotes it whole again would outgrow what the server reads.
    async with browser_like(world) as client:
        r = await client.get("/children", params={"q": "é" * 8000})
        assert assert_local_redirect(r) == "/sign-in?next=%2Fchildren"


# ---------------------------------------------------------------------------- sessions


async def test_sessions_cannot_be_fixed_forged_or_reused(world: World, careless: Careless) -> None:
    fixed = "chosen-by-an-attacker-0123456789abcdefghijk"
    async with browser_like(world) as client:
        client.cookies.set("komar_session", fixed)
        r = await client.get("/")
        assert assert_local_redirect(r).startswith("/sign-in")
        r = await client.get("/sign-in")
        r = await client.post(
            "/sign-in",
            data={"csrf": csrf_of(r.text), "username": careless.username, "password": PASSWORD},
        )
        assert r.status_code == 303
        first = r.cookies["komar_session"]
        assert first != fixed
        assert len(first) >= 43  # 256 random bits
        assert re.fullmatch(r"[A-Za-z0-9_-]+", first)
        # Signing in again (another tab) gives another id and ends the first.
        client.cookies.clear()
        client.cookies.set("komar_session", first)
        r = await client.get("/sign-in")
        assert assert_local_redirect(r) == "/"  # already signed in
        r = await client.post(
            "/sign-in",
            data={
                "csrf": csrf_of((await client.get("/")).text),
                "username": careless.username,
                "password": PASSWORD,
            },
        )
        second = r.cookies["komar_session"]
        assert second != first
    for stale in (first, fixed, "x" * 43, "", "\u00e9" * 10, "a" * 5000):
        async with httpx.AsyncClient(base_url=world.dashboard, timeout=30) as client:
            r = await client.get(
                "/children", headers=[(b"cookie", b"komar_session=" + stale.encode())]
            )
            assert assert_local_redirect(r).startswith("/sign-in?next=%2Fchildren")
    # Signed out, the old cookie signs nothing in.
    async with browser_like(world, careless.username) as client:
        signed_out = client.cookies["komar_session"]
        r = await client.post("/sign-out", data={"csrf": csrf_of((await client.get("/")).text)})
        assert assert_local_redirect(r).startswith("/sign-in")
    async with httpx.AsyncClient(base_url=world.dashboard, timeout=30) as client:
        client.cookies.set("komar_session", signed_out)
        assert assert_local_redirect(await client.get("/")).startswith("/sign-in")


async def test_another_session_s_csrf_token_is_refused(world: World, careless: Careless) -> None:
    async with (
        browser_like(world, careless.username) as a,
        browser_like(world, world.users["maker"]) as b,
        browser_like(world) as visitor,
    ):
        token_a = csrf_of((await a.get("/")).text)
        token_visitor = csrf_of((await visitor.get("/sign-in")).text)
        b.cookies.set("komar_visitor", visitor.cookies["komar_visitor"])
        for token_ in (token_a, token_visitor):
            for path, form in (
                ("/language", {"lang": "km", "next": "/"}),
                ("/sign-out", {}),
                ("/referrals", {"child_id": world.children["sreymom"], "reason": "r"}),
            ):
                r = await b.post(path, data={"csrf": token_, **form})
                assert title_of(assert_page(r, 403)) == EN("error.bad_request.title"), path
        # B is still signed in, still in English.
        page = assert_page(await b.get("/"), 200)
        assert '<html lang="en">' in page
        # A session's token on the sign-in form of a browser without one.
        async with browser_like(world) as fresh:
            await fresh.get("/sign-in")
            r = await fresh.post(
                "/sign-in", data={"csrf": token_a, "username": careless.username, "password": "x"}
            )
            assert_page(r, 403)


def post_routes() -> list[str]:
    """Every POST route of the dashboard, with a plain id and a known action in its path."""
    found = []
    for router in ROUTERS:
        for route in router.routes:
            if not isinstance(route, APIRoute) or "POST" not in (route.methods or ()):
                continue
            actions = getattr(sys.modules[route.endpoint.__module__], "ACTIONS", ("x",))
            path = re.sub(r"\{action\}", actions[0], route.path)
            found.append(re.sub(r"\{[a-z_]+\}", str(uuid.uuid4()), path))
    return found


async def test_every_post_route_refuses_a_form_without_its_token(
    world: World, careless: Careless
) -> None:
    routes = post_routes()
    assert {"/sign-in", "/sign-out", "/language", "/referrals", "/grants"} <= set(routes)
    assert len(routes) >= 8
    async with browser_like(world, careless.username) as client:
        for path in routes:
            for kind in ("none", "forged", "json"):
                if kind == "json":
                    token_ = csrf_of((await client.get("/")).text)
                    r = await client.post(path, json={"csrf": token_, "lang": "km"})
                else:
                    form = {"lang": "km", "reason": "r"}
                    if kind == "forged":
                        form["csrf"] = "forged" * 8
                    r = await client.post(path, data=form)
                assert_page(r, 403)
        assert '<html lang="en">' in assert_page(await client.get("/"), 200)


# ---------------------------------------------------------------------------- methods, headers


async def test_methods_no_page_has_get_a_page(world: World, careless: Careless) -> None:
    async with browser_like(world, careless.username) as client:
        for path in ("/", "/children", f"/children/{careless.spare}", "/sign-in", "/referrals"):
            for method in ("PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"):
                r = await client.request(method, path)
                assert_page(r, 405)
                assert "GET" in r.headers["allow"], (method, path)
            r = await client.head(path)
            assert r.status_code in (200, 405), (path, r.status_code)
            assert r.status_code == 200 or "GET" in r.headers["allow"]
            assert_safe_headers(r)
        assert_page(await client.request("PUT", "/static/komar.css"), 405)
        assert_page(await client.request("DELETE", "/nowhere"), 404)


async def test_every_kind_of_answer_carries_the_safe_headers(
    world: World, careless: Careless
) -> None:
    async with browser_like(world, careless.username) as client:
        assert_page(await client.get("/"), 200)
        assert_page(await client.get(f"/children/{careless.spare}"), 200)
        assert_page(await client.get("/children/not-here"), 404)
        assert_page(await client.get("/indicators?area=KH"), 403)
        assert_page(await client.get("/children?q=%00"), 422)
        assert_page(await client.post("/language", data={}), 403)
        csv = await client.get("/indicators.csv")
        assert csv.status_code == 200
        assert_safe_headers(csv)
        r = await client.post("/sign-out", data={"csrf": csrf_of((await client.get("/")).text)})
        assert_safe_headers(r)
        assert_local_redirect(r)
        r = await client.get("/")
        assert_safe_headers(r)
        assert_local_redirect(r)
        # Static files may be kept; a page under /static/ (not found) never, it names the user.
        for path in ("/static/komar.css", "/fonts/fonts.css"):
            r = await client.get(path)
            assert r.status_code == 200, path
            assert_safe_headers(r, cacheable=True)
    async with browser_like(world, careless.username) as client:
        assert_page(await client.get("/static/nothing.css"), 404)
        assert_page(await client.get("/fonts/nothing.ttf"), 404)


# ---------------------------------------------------------------------------- PDF and CSV

PDF_NAME = re.compile(r'^attachment; filename="komar-progress-[0-9]{2,6}-[0-9]{4}Q[1-4]\.pdf"$')
CSV_NAME = re.compile(r'^attachment; filename="[A-Za-z0-9_-]+\.csv"$')


async def test_pdfs_asked_for_with_hostile_values_and_many_at_once_all_end(
    world: World,
) -> None:
    asked = [
        ("12", "2026Q1"),
        ("1201", "1999Q4"),
        ("<x>", "9999Q1"),
        ("KH", "2026Q5"),
        ("99", "x" * 100),
        ('12"', ""),
        ("1201'; --", "2026q1"),
        ("120101", "2000Q1"),
    ]
    async with browser_like(world, world.users["province"]) as client:

        async def one(area: str, quarter: str) -> httpx.Response:
            return await client.get(
                "/reports/progress.pdf", params={"area": area, "quarter": quarter}
            )

        answers = await asyncio.gather(*(one(a, q) for a, q in asked))
    for (area, quarter), r in zip(asked, answers, strict=True):
        assert_safe_headers(r)
        if r.status_code == 200:
            assert r.headers["content-type"] == "application/pdf", (area, quarter)
            assert r.content.startswith(b"%PDF"), (area, quarter)
            assert PDF_NAME.match(r.headers["content-disposition"]), r.headers
        else:  # too busy, no Chromium, or a place that is not theirs: a page
            assert_page(r)
            assert r.status_code in (403, 503), (area, quarter, r.status_code)


async def test_csv_file_names_hold_no_characters_of_the_user(world: World) -> None:
    async with browser_like(world, world.users["province"]) as client:
        for params in (
            {"indicator": 'CP_CHILD_REG";\r\nX-Evil: 1', "area": "12"},
            {"indicator": "CP_CHILD_REG", "area": '12"; filename="evil.exe'},
            {"indicator": "../../etc/passwd", "area": "1201", "period": '2026"Q1'},
            {"indicator": "CP_CHILD_REG", "area": "1201", "level": 'commune";x=', "period": "2026"},
        ):
            r = await client.get("/indicators.csv", params=params)
            if r.status_code == 422:  # a control character: refused, as a page
                assert_page(r, 422)
                continue
            assert r.status_code == 200, (params, r.status_code)
            assert CSV_NAME.match(r.headers["content-disposition"]), r.headers
            assert "x-evil" not in r.headers
            assert_safe_headers(r)


# ---------------------------------------------------------------------------- the gateway gone


async def test_a_gateway_gone_for_a_moment_is_a_page_and_the_session_survives(
    platform: Platform, world: World, careless: Careless
) -> None:
    unavailable = EN("error.unavailable.title")
    async with (
        browser_like(world, careless.username) as client,
        browser_like(world) as visitor,
    ):
        csrf = csrf_of((await client.get("/")).text)
        sign_in_form = (await visitor.get("/sign-in")).text
        await asyncio.to_thread(platform.supervisor.stop, "gateway")
        try:
            for path in (
                "/children",
                f"/children/{careless.spare}",
                "/referrals",
                "/funds",
                "/casework",
                "/indicators",
                "/reports/progress",
                "/indicators.csv",
            ):
                page = assert_page(await client.get(path), 503)
                assert title_of(page) == unavailable, path
            assert_page(await client.get("/"), 200)  # the overview's tiles say so themselves
            r = await client.post(
                "/referrals",
                data={
                    "csrf": csrf,
                    "child_id": careless.spare,
                    "service_type": "health",
                    "reason": "r",
                },
            )
            assert title_of(assert_page(r, 503)) == unavailable
            # The language still switches, for this session.
            r = await client.post("/language", data={"csrf": csrf, "lang": "km", "next": "/"})
            assert assert_local_redirect(r) == "/"
            r = await client.post("/language", data={"csrf": csrf, "lang": "en", "next": "/"})
            assert assert_local_redirect(r) == "/"
            # Signing in waits for Komar.
            r = await visitor.post(
                "/sign-in",
                data={
                    "csrf": csrf_of(sign_in_form),
                    "username": careless.username,
                    "password": PASSWORD,
                },
            )
            assert title_of(assert_page(r, 503)) == unavailable
        finally:
            await asyncio.to_thread(platform.supervisor.restart, "gateway")
        page = assert_page(await client.get("/children"), 200)
        assert "Careless Clicker" in page
        r = await visitor.post(
            "/sign-in",
            data={
                "csrf": csrf_of(sign_in_form),
                "username": careless.username,
                "password": PASSWORD,
            },
        )
        assert assert_local_redirect(r) == "/"


# ---------------------------------------------------------------------------- passwords


async def test_a_long_password_or_a_control_character_at_sign_in(
    platform: Platform, world: World
) -> None:
    long_password = "correct horse battery staple " * 8 + "!"  # 233 characters
    async with httpx.AsyncClient(base_url=world.gateway, timeout=60) as client:
        admin = await fresh_admin(client, platform)
        username = f"long-{uuid.uuid4().hex[:6]}"
        r = await client.post(
            "/v1/admin/users",
            json={
                "name": "Long Password",
                "org": f"ccwc-{HERE}",
                "org_type": "government",
                "scopes": ["registry:read"],
                "areas": [HERE],
                "username": username,
                "password": long_password,
            },
            headers=admin,
        )
        assert r.status_code == 201, r.text
    async with browser_like(world, username, long_password) as client:
        assert_page(await client.get("/"), 200)
    # A password cut short is another password; a control character is no account's.
    for name, password in (
        (username, long_password[:200]),
        ("a\x00b", "x"),
        (world.users["other"] + "\x00", PASSWORD),
        (username, long_password + "x" * 40),
    ):
        async with browser_like(world) as client:
            form = (await client.get("/sign-in")).text
            r = await client.post(
                "/sign-in", data={"csrf": csrf_of(form), "username": name, "password": password}
            )
            page = assert_page(r, 200)
            assert html.escape(EN("signin.invalid")) in page, (name, r.status_code)


async def test_the_sign_in_form_takes_a_password_as_long_as_the_api_does(world: World) -> None:
    async with browser_like(world) as client:
        page = (await client.get("/sign-in")).text
    field = re.search(r'<input name="password"[^>]*>', page)
    assert field is not None
    assert 'maxlength="256"' in field.group(0)


async def test_failed_sign_ins_count_against_the_browser_s_address_not_the_dashboard_s(
    world: World,
) -> None:
    """Every staff member reaches the gateway through the dashboard: one address. Someone
    guessing passwords from one browser runs out of tries at that browser's address (as the
    proxy in front of the dashboard reports it), and staff elsewhere still sign in."""

    async def attempt(address: str, username: str, password: str) -> httpx.Response:
        headers = {"X-Forwarded-For": address}
        async with httpx.AsyncClient(base_url=world.dashboard, headers=headers) as browser:
            form = (await browser.get("/sign-in")).text
            return await browser.post(
                "/sign-in",
                data={"csrf": csrf_of(form), "username": username, "password": password},
            )

    guesser = "203.0.113.7"
    busy = html.escape(EN("signin.busy", seconds="60").split(".")[0])
    tries = 0
    while True:  # the bucket refills as it is spent: a few more than it holds
        page = assert_page(await attempt(guesser, f"nobody-{uuid.uuid4().hex[:6]}", "guess"), 200)
        tries += 1
        if busy in page:
            break
        assert tries <= 2 * LOGIN_FAILURE_BURST, "the guesses were never slowed down"
    assert tries > LOGIN_FAILURE_BURST - 5  # (and not another address's tries spent)
    r = await attempt("198.51.100.20", world.users["checker"], PASSWORD)
    assert_local_redirect(r)  # a colleague elsewhere still signs in
