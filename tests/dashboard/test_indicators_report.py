"""The indicators explorer and the progress report, as a provincial manager and an analyst
see them: a commune with 1 to 4 children shows the protected marker, never the number, in
the page, the chart, the CSV and the report; the report prints to a PDF whose text carries
the province's name in both scripts and the quarter's figures as the API gives them."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import subprocess

import httpx

from libs.common import clock
from tests.dashboard.conftest import (
    COMMUNE,
    PROVINCE,
    Pages,
    World,
    artefact,
    not_blank,
    user_headers,
)

MARKER = "small"


def this_month() -> str:
    return dt.datetime.now(clock.CAMBODIA).strftime("%Y%m")


def this_quarter() -> str:
    today = dt.datetime.now(clock.CAMBODIA)
    return f"{today.year}Q{(today.month - 1) // 3 + 1}"


async def exact_total(world: World, indicator: str, period: str, area: str) -> int:
    """The indicator's exact total (all disaggregations), as the analyst's API gives it."""
    async with httpx.AsyncClient(base_url=world.gateway, timeout=30) as client:
        headers = await user_headers(client, world.users["analyst"])
        r = await client.get(
            "/v1/indicators/values",
            params={"indicator": indicator, "period": period, "area": area},
            headers=headers,
        )
    assert r.status_code == 200, r.text
    return sum(row["value"] or 0 for row in r.json()["items"])


async def counted(world: World) -> int:
    """The commune's registrations this month once indicators have applied them (1 to 4)."""
    for _ in range(120):
        n = await exact_total(world, "CP_CHILD_REG", this_month(), COMMUNE)
        if n >= 1:
            return n
        await asyncio.sleep(0.5)
    raise AssertionError("indicators never counted the commune's children")


async def test_a_commune_with_1_to_4_children_shows_the_marker_never_the_number(
    pages: Pages, world: World
) -> None:
    true = await counted(world)
    assert 1 <= true <= 4
    page = await pages.signed_in(world, "province")
    url = (
        f"{world.dashboard}/indicators?indicator=CP_CHILD_REG&area={COMMUNE[:4]}"
        f"&period={this_month()}&level=commune"
    )
    await page.goto(url)
    row = page.locator(f"#by-place tr[data-place='{COMMUNE}']")
    cells = await row.locator("td").all_inner_texts()
    assert MARKER in " ".join(cells)
    assert not any(c.strip() == str(true) for c in cells), cells
    assert await page.is_visible("#protected-legend")
    assert await page.is_visible("#chart-over-time-svg")

    # The CSV of the same table: the marker in the value column, never the number.
    href = await page.get_attribute("#csv-link", "href")
    assert href is not None
    answer = await page.request.get(world.dashboard + href)
    assert answer.ok
    assert "attachment" in answer.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO((await answer.body()).decode("utf-8-sig"))))
    ours = [r for r in rows[1:] if r[0] == COMMUNE]
    assert ours
    assert all(MARKER in r or str(true) not in r[-1] for r in ours)
    assert any(MARKER in r for r in ours)

    # The analyst, with the exact counts, sees the number.
    analyst = await pages.signed_in(world, "analyst")
    await analyst.goto(url)
    cells = await analyst.locator(f"#by-place tr[data-place='{COMMUNE}'] td").all_inner_texts()
    assert str(true) in [c.strip() for c in cells]


async def test_the_progress_report_prints_to_a_pdf_with_the_api_s_figures(
    pages: Pages, world: World
) -> None:
    await counted(world)
    quarter = this_quarter()
    province = await pages.signed_in(world, "province")
    await province.goto(f"{world.dashboard}/reports/progress?area={PROVINCE}&quarter={quarter}")
    key = await province.inner_text("#key-CP_CHILD_REG td.now")
    assert MARKER in key  # a province with a handful of children this quarter: protected
    assert await province.is_visible("#service-gaps")
    png = await province.screenshot(path=str(artefact("report-en.png")), full_page=True)
    assert not_blank(png)
    await province.click("button[name=lang][value=km]")
    await province.wait_for_load_state()
    assert "ភ្នំពេញ" in await province.inner_text("#report-title")
    png = await province.screenshot(path=str(artefact("report-km.png")), full_page=True)
    assert not_blank(png)

    # The analyst's report as a PDF: one page or more, both names, the API's figures.
    analyst = await pages.signed_in(world, "analyst")
    await analyst.goto(f"{world.dashboard}/reports/progress?area={PROVINCE}&quarter={quarter}")
    href = await analyst.get_attribute("#pdf-link", "href")
    assert href is not None
    answer = await analyst.request.get(world.dashboard + href, timeout=120_000)
    assert answer.ok
    assert answer.headers["content-type"] == "application/pdf"
    path = artefact("report.pdf")
    path.write_bytes(await answer.body())
    info = subprocess.run(["pdfinfo", str(path)], capture_output=True, text=True, check=True)
    pages_line = next(line for line in info.stdout.splitlines() if line.startswith("Pages:"))
    assert int(pages_line.split()[1]) >= 1
    text = subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert "Phnom Penh" in text
    assert "ភ្នំពេញ" in text
    for indicator in ("CP_CHILD_REG", "CP_CASE_OPEN", "CP_REF_MADE"):
        figure = await exact_total(world, indicator, quarter, PROVINCE)
        row = next((line for line in text.splitlines() if indicator_label(indicator) in line), "")
        assert f"{figure:,}" in row.split(), (indicator, figure, row)


def indicator_label(code: str) -> str:
    from dashboard.i18n import translator

    return translator("en")(f"indicators.name.{code}")
