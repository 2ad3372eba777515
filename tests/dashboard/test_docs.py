"""The API docs the README sends newcomers to: Swagger UI from the project itself, which
loads and shows the operations with no request leaving the machine."""

from __future__ import annotations

from tests.dashboard.conftest import Pages, World


async def test_api_docs_load_offline_without_console_errors(pages: Pages, world: World) -> None:
    page = await pages.page()
    response = await page.goto(world.gateway + "/docs")
    assert response is not None
    assert response.ok
    await page.wait_for_selector(".swagger-ui .opblock", timeout=30_000)
    text = await page.inner_text("body")
    assert "/v1/registry/children" in text
    assert "Komar API" in text
