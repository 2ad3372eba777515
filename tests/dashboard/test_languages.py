"""Khmer and English: switched by the user, remembered with their account, place names from
the gazetteer in both scripts, and screenshots of both kept under var/."""

from __future__ import annotations

from tests.dashboard.conftest import Pages, World, artefact, not_blank, sign_in


async def test_switching_to_khmer_shows_khmer_labels_and_place_names_and_is_remembered(
    pages: Pages, world: World
) -> None:
    page = await pages.signed_in(world, "checker")
    png = await page.screenshot(path=str(artefact("overview-en.png")), full_page=True)
    assert not_blank(png)
    await page.click("button[name=lang][value=km]")
    await page.wait_for_load_state()
    assert await page.get_attribute("html", "lang") == "km"
    main = await page.inner_text("body")
    assert "ទិដ្ឋភាពទូទៅ" in main  # Overview
    assert "ទន្លេបាសាក់" in main  # Tonle Basak, the user's commune, in Khmer
    png = await page.screenshot(path=str(artefact("overview-km.png")), full_page=True)
    assert not_blank(png)
    await page.goto(f"{world.dashboard}/children/{world.children['sreymom']}")
    record = await page.inner_text("main")
    assert "ទន្លេបាសាក់" in record
    assert "ស្រី" in record

    # Another browser, the same user: Khmer, because the account remembers it.
    again = await pages.page()
    await sign_in(again, world, world.users["checker"])
    assert await again.get_attribute("html", "lang") == "km"
    await again.click("button[name=lang][value=en]")
    await again.wait_for_load_state()
    assert await again.is_visible("h1:has-text('Overview')")


async def test_the_khmer_font_is_served_for_khmer_text_only(pages: Pages, world: World) -> None:
    page = await pages.page()
    css = await page.request.get(world.dashboard + "/fonts/fonts.css")
    assert "Komar Khmer" in await css.text()
    assert "unicode-range: U+1780-17FF" in await css.text()
    font = await page.request.get(world.dashboard + "/fonts/khmer.ttf")
    assert font.ok
    assert font.headers["content-type"] == "font/ttf"
    # An English page does not fetch it; a Khmer one does (no Khmer font on this machine's
    # Chromium profile is assumed: the face is asked for only when Khmer text is shown).
    fetched: list[str] = []
    page.on("request", lambda r: fetched.append(r.url) if r.url.endswith(".ttf") else None)
    await page.goto(world.dashboard + "/sign-in")
    assert not fetched
