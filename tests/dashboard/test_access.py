"""The dashboard shows what the user's token may see, by the API's rules: a user of another
commune finds nothing, and a direct URL to a child outside their areas is the not-found page."""

from __future__ import annotations

from tests.dashboard.conftest import Pages, World


async def test_a_user_of_another_commune_finds_nothing_and_a_direct_url_is_not_found(
    pages: Pages, world: World
) -> None:
    pages.watch.expected.append("404")  # the not-found page answers 404, as the API does
    maker = await pages.signed_in(world, "maker")
    await maker.goto(world.dashboard + "/children?q=Sreymom")
    assert await maker.is_visible("#children >> text=Sreymom Keo")

    other = await pages.signed_in(world, "other")
    await other.goto(world.dashboard + "/children?q=Sreymom")
    assert await other.is_visible("#no-children")
    assert world.children["sreymom"] not in await other.content()
    response = await other.goto(f"{world.dashboard}/children/{world.children['sreymom']}")
    assert response is not None
    assert response.status == 404
    assert await other.is_visible("h1:has-text('Not found')")
    assert "Sreymom" not in await other.content()
    for path in ("/history",):
        response = await other.goto(f"{world.dashboard}/children/{world.children['sreymom']}{path}")
        assert response is not None
        assert response.status == 404
    # Their own child, yes; the maker's search does not find theirs.
    await maker.goto(world.dashboard + "/children?q=Bopha")
    assert await maker.is_visible("#no-children")


async def test_ids_that_are_not_ids_never_reach_the_api(pages: Pages, world: World) -> None:
    pages.watch.expected.append("404")
    page = await pages.signed_in(world, "maker")
    # (`..` and `%2e%2e` the browser resolves itself before asking)
    for bad in ("x" * 80, "a%2Fb", "1;select"):
        response = await page.goto(f"{world.dashboard}/children/{bad}")
        assert response is not None, bad
        assert response.status == 404, bad
