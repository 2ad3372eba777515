"""A commune user from start to finish, and a second user who approves: search a child, open
the record, refer them, find the referral in the queue, request a grant; another person
approves it (never the requester), and the first sees the approval. Then a session that ends
while a form is being filled in: signing in again brings the form back as it was typed."""

from __future__ import annotations

import re

from deploy.local.infra import free_port
from tests.dashboard.conftest import Pages, World, sign_in
from tests.e2e.conftest import Platform


async def test_a_commune_user_refers_and_requests_and_a_second_user_approves(
    pages: Pages, world: World
) -> None:
    maker = await pages.signed_in(world, "maker")
    await maker.goto(world.dashboard + "/children")
    await maker.fill("input[name=q]", "Sreymom")
    await maker.click("form.search button[type=submit]")
    await maker.click("#children a:has-text('Sreymom Keo')")
    child_url = maker.url
    child_id = child_url.rsplit("/", 1)[1]
    assert child_id == world.children["sreymom"]

    # Refer the child to a health service; Komar routes it to the clinic.
    await maker.click(f"a[href='/referrals/new?child_id={child_id}']")
    await maker.select_option("#service_type", "health")
    await maker.fill("#reason", "Fever for a week; the family cannot pay the clinic.")
    await maker.click("#refer-submit")
    await maker.wait_for_load_state()
    match = re.search(r"/referrals/([0-9a-f-]{36})$", maker.url)
    assert match, maker.url
    referral_id = match.group(1)
    assert await maker.is_visible(".flash")
    assert await maker.get_attribute("#referral-status", "data-status") == "pending"

    # It is in the queue of the referrals this commune made.
    await maker.goto(world.dashboard + "/referrals?side=made")
    assert await maker.is_visible(f"#referral-{referral_id}")

    # The clinic finds it in the referrals it has to answer, and accepts it.
    clinic = await pages.signed_in(world, "provider")
    await clinic.goto(world.dashboard + "/referrals?side=to_answer")
    await clinic.click(f"#referral-{referral_id} a >> nth=0")
    await clinic.click("#accept-button")
    await clinic.wait_for_load_state()
    assert await clinic.get_attribute("#referral-status", "data-status") == "accepted"
    await maker.goto(f"{world.dashboard}/referrals/{referral_id}")
    assert await maker.get_attribute("#referral-status", "data-status") == "accepted"

    # Request a grant for the child from the commune's fund.
    await maker.goto(child_url)
    await maker.click(f"a[href='/grants/new?child_id={child_id}']")
    await maker.select_option("select[name=fund_id]", world.fund_id)
    await maker.select_option("select[name=category]", "education_support")
    await maker.fill("input[name=amount_khr]", "150000")
    await maker.fill("textarea[name=justification]", "School uniform and books for the year.")
    await maker.click("#grant-submit")
    await maker.wait_for_load_state()
    match = re.search(r"/grants/([0-9a-f-]{36})$", maker.url)
    assert match, maker.url
    grant_id = match.group(1)
    assert await maker.get_attribute("#grant-status", "data-status") == "requested"

    # The requester sees their own request in the approval queue, without an approve button.
    await maker.goto(world.dashboard + "/funds/approvals")
    assert await maker.is_visible(f"#grant-{grant_id}")
    assert await maker.is_visible(f"#maker-note-{grant_id}")
    assert await maker.locator(f"#approve-{grant_id}").count() == 0

    # A second person approves it.
    checker = await pages.signed_in(world, "checker")
    await checker.goto(world.dashboard + "/funds/approvals")
    await checker.click(f"#approve-{grant_id}")
    await checker.wait_for_load_state()
    assert await checker.is_visible(".flash")

    # The first user sees the approval.
    await maker.goto(f"{world.dashboard}/grants/{grant_id}")
    assert await maker.get_attribute("#grant-status", "data-status") == "approved"
    await maker.goto(child_url)
    assert "Approved" in await maker.inner_text("#grants")


async def test_a_session_that_ends_keeps_what_was_typed(
    pages: Pages, world: World, platform: Platform
) -> None:
    # A dashboard of its own whose sessions end after 2 idle seconds (KOMAR_DASHBOARD_IDLE_S).
    port = free_port()
    env = {
        **platform.env,
        "KOMAR_DASHBOARD_PORT": str(port),
        "KOMAR_DASHBOARD_IDLE_S": "2",
    }
    platform.supervisor.start("dashboard-short", "dashboard", env=env, port=port)
    try:
        short = World(f"http://127.0.0.1:{port}", world.gateway, world.admin_headers, world.users)
        page = await pages.page()
        await sign_in(page, short, world.users["maker"])
        child_id = world.children["sreymom"]
        await page.goto(f"{short.dashboard}/referrals/new?child_id={child_id}")
        await page.select_option("#service_type", "psychosocial")
        typed = "Withdrawn at school since the flood; needs someone to talk to."
        await page.fill("#reason", typed)
        await page.wait_for_timeout(3000)  # the session ends while the user types
        await page.click("#refer-submit")
        await page.wait_for_load_state()
        assert "/sign-in" in page.url
        assert await page.is_visible("text=Your session ended")
        await page.fill("input[name=username]", world.users["maker"])
        await page.fill("input[name=password]", "a long pass phrase for tests")
        await page.click("form[action='/sign-in'] button[type=submit]")
        await page.wait_for_load_state()
        assert f"/referrals/new?child_id={child_id}" in page.url
        assert await page.input_value("#reason") == typed
        assert await page.input_value("#service_type") == "psychosocial"
        assert await page.is_visible(".flash")
        # Another user signing in on that browser would not see it: the draft was the
        # maker's and is now spent.
        await page.goto(f"{short.dashboard}/referrals/new?child_id={child_id}")
        assert await page.input_value("#reason") == ""
    finally:
        platform.supervisor.stop("dashboard-short")
