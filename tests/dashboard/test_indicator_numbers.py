"""The indicator pages' own arithmetic, without a platform: the protected-marker rule on
published cells and their totals, changes between quarters, periods, the CSV value, and
the PDF's URL fetcher that loads nothing but the dashboard's own files."""

from __future__ import annotations

import datetime as dt

import pytest

from dashboard import pdf
from dashboard.pages.indicators import Cell, Period, change, csv_value, series
from dashboard.pages.report import default_area, signed


@pytest.mark.parametrize(
    ("cell", "protected"),
    [
        (Cell(0, True), True),
        (Cell(5, True), True),
        (Cell(10, True), False),
        (Cell(0, False), False),  # exact (indicators:read:detail): a number
        (Cell(3, False), False),
        (Cell(None, False), True),
    ],
)
def test_a_rounded_small_count_is_protected(cell: Cell, protected: bool) -> None:
    assert cell.protected is protected


def test_a_total_of_rounded_cells_follows_the_rule_in_turn() -> None:
    assert Cell.total([Cell(5, True), Cell(0, True)]) == Cell(5, True)
    assert Cell.total([Cell(5, True), Cell(0, True)]).protected
    assert not Cell.total([Cell(5, True), Cell(5, True)]).protected  # 10, as the API sums
    assert not Cell.total([Cell(3, False), Cell(1, False)]).protected
    assert Cell.total([Cell(None), Cell(20, True)]).value is None


def test_a_change_with_a_protected_count_is_not_given() -> None:
    assert change(Cell(20, True), Cell(5, True)) is None  # would tell the 5
    assert change(Cell(5, True), Cell(20, True)) is None
    assert change(Cell(25, True), Cell(10, True)) == 15
    assert change(Cell(3, False), Cell(1, False)) == 2
    assert signed(15) == "+15"
    assert signed(-1250000) == "−1,250,000"
    assert signed(None) == "–"


def test_the_csv_value_is_the_marker_for_a_protected_cell() -> None:
    assert csv_value(Cell(5, True), "<10") == "<10"
    assert csv_value(Cell(0, True), "<10") == "<10"
    assert csv_value(Cell(15, True), "<10") == "15"
    assert csv_value(Cell(2, False), "<10") == "2"
    assert csv_value(Cell(1250000.0, False), "<10") == "1250000"


def test_periods_parse_shift_and_stay_within_the_api_s_range() -> None:
    assert Period.parse("202603") == Period("month", 2026 * 12 + 2)
    assert Period.parse("2026Q1").code == "2026Q1"  # type: ignore[union-attr]
    assert Period.parse("2026").code == "2026"  # type: ignore[union-attr]
    for bad in ("202613", "2026Q5", "26", "", "2026-03", "202603x"):
        assert Period.parse(bad) is None
    q = Period.parse("2026Q1")
    assert q is not None
    assert q.shift(-1).code == "2025Q4"
    assert q.shift(-4).code == "2025Q1"
    today = dt.date(2026, 12, 3)
    assert Period.current("quarter", today).code == "2026Q4"
    assert not Period.parse("2027Q1").usable(today)  # type: ignore[union-attr]
    assert not Period.parse("1999").usable(today)  # type: ignore[union-attr]
    months = series(Period.parse("200003"), 12)  # type: ignore[arg-type]
    assert [p.code for p in months] == ["200001", "200002", "200003"]


def test_the_report_s_default_area() -> None:
    assert default_area(["KH"]) is None  # the country picks a province
    assert default_area(["02"]) == "02"
    assert default_area(["020101"]) == "020101"  # its district is not theirs
    assert default_area(["020101", "0201"]) == "0201"


def test_the_pdf_loads_the_dashboard_s_files_and_nothing_else() -> None:
    body, kind = pdf.resource("/static/report.css")
    assert kind == "text/css"
    assert b"@page" in body
    css, _ = pdf.resource("/fonts/fonts.css")
    assert b"http" not in css  # the font face points at the installed file, if at all
    page = pdf.self_contained('<link rel="stylesheet" href="/static/report.css"><p>x</p>')
    assert "<link" not in page
    assert "@page" in page
    for url in (
        "http://example.com/x.css",
        "//example.com/static/report.css",
        "file:///etc/passwd",
        "/static/../pdf.py",
        "/static/%2e%2e/pdf.py",
        "/v1/registry/children",
        "/static/report.css?x=1",
        "data:text/css,body{}",
    ):
        with pytest.raises(pdf.Refused):
            pdf.resource(url)
    with pytest.raises(pdf.Refused):
        pdf.self_contained('<link rel="stylesheet" href="https://example.com/x.css">')


async def test_without_chromium_a_pdf_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KOMAR_DASHBOARD_CHROMIUM", "/nonexistent/chromium")
    with pytest.raises(pdf.PdfUnavailable):
        await pdf.render_pdf("<p>x</p>")
