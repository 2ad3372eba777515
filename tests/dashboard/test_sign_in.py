"""Signing in, and what keeps a session safe: the cookie, CSRF, the CSP, no token anywhere."""

from __future__ import annotations

import re

import httpx

from tests.dashboard.conftest import (
    COMMUNE,
    PASSWORD,
    Pages,
    World,
    fresh_admin,
    make_user,
    sign_in,
)
from tests.e2e.conftest import Platform

JWT = re.compile(r"eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}")


async def test_a_wrong_password_shows_an_error_and_the_right_one_the_overview(
    pages: Pages, world: World
) -> None:
    page = await pages.page()
    await page.goto(world.dashboard + "/")
    assert "/sign-in" in page.url  # not signed in: sent to sign in first
    await sign_in(page, world, world.users["maker"], "not the password")
    assert "/sign-in" in page.url
    assert "do not match" in (await page.text_content("#sign-in-error") or "")
    await sign_in(page, world, world.users["maker"])
    assert page.url == world.dashboard + "/"
    assert await page.is_visible("h1:has-text('Overview')")
    assert await page.is_visible("text=Sokha Maker")


async def test_the_session_cookie_is_httponly_and_strict_and_no_token_reaches_the_browser(
    pages: Pages, world: World
) -> None:
    page = await pages.signed_in(world, "maker")
    seen: list[str] = []
    page.on("request", lambda r: seen.append(r.url))
    page.on("response", lambda r: seen.append(" ".join(f"{k}: {v}" for k, v in r.headers.items())))
    for path in ("/", "/children", f"/children/{world.children['sreymom']}", "/static/komar.css"):
        response = await page.goto(world.dashboard + path)
        assert response is not None, path
        assert response.ok, path
        assert not JWT.search(await response.text()), f"a token in {path}"
        assert "content-security-policy" in response.headers or path.startswith("/static")
    cookies = await page.context.cookies()
    session = next(c for c in cookies if c["name"] == "komar_session")
    assert session["httpOnly"] is True
    assert session["sameSite"] == "Strict"
    for c in cookies:
        assert not JWT.search(c["value"]), c["name"]
    assert not any(JWT.search(s) for s in seen), "a token in a URL or header"
    assert not JWT.search(await page.evaluate("document.cookie + localStorage.length"))


async def test_every_page_sets_a_strict_content_security_policy(world: World) -> None:
    async with httpx.AsyncClient(base_url=world.dashboard) as client:
        r = await client.get("/sign-in")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["cache-control"] == "no-store"


async def test_a_form_posted_without_its_csrf_token_fails(pages: Pages, world: World) -> None:
    page = await pages.signed_in(world, "maker")
    # The browser's own session cookie, a form from elsewhere: no token, then a wrong one.
    for form in ({"lang": "km", "next": "/"}, {"lang": "km", "next": "/", "csrf": "forged"}):
        r = await page.request.post(world.dashboard + "/language", form=form, max_redirects=0)
        assert r.status == 403
    r = await page.request.post(world.dashboard + "/sign-out", form={}, max_redirects=0)
    assert r.status == 403
    await page.goto(world.dashboard + "/")
    assert await page.is_visible("h1:has-text('Overview')")  # still signed in, still English
    async with httpx.AsyncClient(base_url=world.dashboard) as client:
        r = await client.post(
            "/sign-in", data={"username": world.users["maker"], "password": "x" * 20}
        )
        assert r.status_code == 403


async def test_signing_out_ends_the_session(pages: Pages, world: World) -> None:
    page = await pages.signed_in(world, "maker")
    cookie = next(c for c in await page.context.cookies() if c["name"] == "komar_session")
    await page.click("form[action='/sign-out'] button")
    await page.wait_for_load_state()
    assert "/sign-in" in page.url
    async with httpx.AsyncClient(
        base_url=world.dashboard, cookies={"komar_session": cookie["value"]}
    ) as client:
        r = await client.get("/")
    assert r.status_code == 303
    assert r.headers["location"].startswith("/sign-in")


async def test_a_user_changes_their_password_and_stays_signed_in(
    pages: Pages, platform: Platform, world: World
) -> None:
    async with httpx.AsyncClient(base_url=world.gateway, timeout=60) as client:
        admin = await fresh_admin(client, platform)
        username = await make_user(
            client,
            admin,
            name="Dara Pich",
            org="ccwc-120101",
            areas=[COMMUNE],
            scopes=["registry:read"],
        )
    new = "four random words make a password"
    page = await pages.page()
    await sign_in(page, world, username)
    await page.click("#password-link")
    assert page.url == world.dashboard + "/account/password"

    async def submit(current: str, again: str) -> str:
        await page.fill("#current_password", current)
        await page.fill("#new_password", new)
        await page.fill("#new_password_again", again)
        await page.click("#password-submit")
        await page.wait_for_load_state()
        return await page.text_content("main") or ""

    assert "This is not your current password" in await submit("not what I have", new)
    assert "The two new passwords are not the same" in await submit(PASSWORD, new + "!")
    shown = await submit(PASSWORD, new)
    assert page.url == world.dashboard + "/"
    assert "Your password is changed." in shown
    await page.goto(world.dashboard + "/children")  # still signed in, on a new sign-in
    assert "/sign-in" not in page.url
    await page.click("form[action='/sign-out'] button[type=submit]")
    await sign_in(page, world, username)  # the old password
    assert "/sign-in" in page.url
    await sign_in(page, world, username, new)
    assert page.url == world.dashboard + "/"
