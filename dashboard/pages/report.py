"""The progress report: a province's or district's key indicators for a quarter against
the quarter before and the same quarter a year before, their trend, and the service gaps
(referrals that found no provider, referrals overdue) by district and service type; as a
page that prints on A4, and as a PDF.

A fixed number of `values` calls, made at once; every number is what the API gives the
user, a protected small count shown as the protected marker (pages.indicators).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from markupsafe import Markup

from dashboard import charts, i18n, pdf
from dashboard.pages.indicators import (
    Cell,
    Period,
    change,
    combo_label,
    countable,
    fetch_values,
    indicator_name,
    inside,
    load_catalogue,
    user_areas,
)
from dashboard.web import TEMPLATES, View, quietly, view_of
from libs.common import clock, places
from libs.common.logging import get_logger

log = get_logger(__name__)
router = APIRouter(include_in_schema=False)

# The report's indicators, in its order; those the catalogue lacks are left out.
KEY_INDICATORS = (
    "CP_CHILD_REG",
    "CP_CASE_OPEN",
    "CP_CASE_HIGH_RISK",
    "CP_REF_MADE",
    "CP_REF_COMPLETED",
    "CP_REF_OVERDUE",
    "CP_GRANT_DISBURSED",
    "CP_GRANT_DISBURSED_KHR",
    "CP_VISITS",
    "CP_REINTEGRATED",
)
TREND_INDICATORS = ("CP_CHILD_REG", "CP_CASE_OPEN", "CP_REF_MADE")
TREND_QUARTERS = 8
GAP_INDICATORS = ("CP_REF_UNMATCHED", "CP_REF_OVERDUE")
QUARTERS_OFFERED = 12
REPORT_AREA = re.compile(r"^([0-9]{2}|[0-9]{4}|[0-9]{6})$")
QUARTER = re.compile(r"^[0-9]{4}Q[1-4]$")
# PDFs rendered at once; more wait their turn (each takes a thread and some CPU).
PDF_RENDERS = asyncio.Semaphore(2)


# ---------------------------------------------------------------- what to report on


def default_area(areas: list[str]) -> str | None:
    """The user's first area at province or district level: a commune's (or village's)
    district when the user's areas cover it, else the commune; none for the country."""
    for area in areas:
        if area == places.COUNTRY:
            continue
        if len(area) in (2, 4):
            return area
        district, commune = area[:4], area[:6]
        if any(inside(district, a) for a in areas):
            return district
        return commune
    return None


def area_options(view: View, areas: list[str], chosen: str | None) -> list[tuple[str, str]]:
    """Provinces and districts of the user's areas (the provinces alone for the country),
    or a commune's district (or the commune, when the district is not theirs); and the
    place chosen."""
    codes: list[str] = [chosen] if chosen else []
    for area in areas:
        if area == places.COUNTRY:
            codes += places.children_at(area, "province")
        elif len(area) == 2:
            codes += [area, *places.children_at(area, "district")]
        elif len(area) == 4:
            codes.append(area)
        else:
            own = default_area([area, *areas])
            codes.append(own or area[:6])
    seen = sorted(set(codes))
    return [(c, ("\u2003" if len(c) > 2 else "") + view.place_label(c)) for c in seen]


def choose_area(view: View, query: Mapping[str, str]) -> str | None:
    area = query.get("area", "")[:8]
    if REPORT_AREA.match(area) and countable(area):
        return area
    return default_area(user_areas(view))


def choose_quarter(query: Mapping[str, str]) -> Period:
    raw = query.get("quarter", "")[:6]
    quarter = Period.parse(raw) if QUARTER.match(raw) else None
    if quarter is None or not quarter.usable():
        return Period.current("quarter").shift(-1)  # the last complete quarter
    return quarter


def both_names(code: str, lang: str) -> str:
    """The place in the user's language, then in the other script: `Battambang · បាត់ដំបង`."""
    first = i18n.place_name(code, lang)
    other = i18n.place_name(code, "en" if lang == "km" else "km")
    return first if other == first else f"{first} · {other}"


# ---------------------------------------------------------------- the report


@dataclass
class KeyRow:
    code: str
    name: str
    now: Cell
    previous: Cell
    year_ago: Cell
    change_previous: float | int | None
    change_year: float | int | None
    chart: Markup


@dataclass
class GapTable:
    code: str
    name: str
    available: bool
    columns: list[tuple[str, str]] = field(default_factory=list)
    rows: list[tuple[str, str, list[Cell], Cell]] = field(default_factory=list)
    footer: tuple[list[Cell], Cell] | None = None

    @property
    def protected(self) -> bool:
        cells = [c for _, _, cs, total in self.rows for c in [*cs, total]]
        if self.footer:
            cells += [*self.footer[0], self.footer[1]]
        return any(c.protected for c in cells)


def signed(value: float | int | None) -> str:
    """A change with its sign: +5, −3, 0; an en dash when it may not be shown."""
    if value is None:
        return "–"
    text = i18n.format_number(abs(value))
    return f"+{text}" if value > 0 else (f"−{text}" if value < 0 else "0")


def total_of(rows: list[dict[str, Any]]) -> Cell:
    return Cell.total(Cell.of(r) for r in rows)


async def build(view: View, query: Mapping[str, str]) -> dict[str, Any]:
    """Everything the report's template needs, from one catalogue and at most
    len(KEY_INDICATORS) × 3 + len(TREND_INDICATORS) × 5 + len(GAP_INDICATORS) `values` calls,
    made at once."""
    t, lang = view.t, view.lang
    areas = user_areas(view)
    area = choose_area(view, query)
    quarter = choose_quarter(query)
    now = Period.current("quarter")
    context: dict[str, Any] = {
        "area": area,
        "quarter": quarter,
        "quarter_label": quarter.label(t, lang),
        "running": quarter.running(),
        "today": clock.today(),
        "area_options": area_options(view, areas, area),
        "quarter_options": [
            (
                p.code,
                t("indicators.so_far", period=p.label(t, lang)) if p == now else p.label(t, lang),
            )
            for p in sorted({quarter, *(now.shift(-k) for k in range(QUARTERS_OFFERED))})[::-1]
            if p.year >= 2000
        ],
    }
    if area is None:
        return context
    catalogue = await load_catalogue(view)
    keys = [c for c in KEY_INDICATORS if c in catalogue]
    trends = [c for c in TREND_INDICATORS if c in catalogue]
    previous, year_ago = quarter.shift(-1), quarter.shift(-4)
    trend_quarters = [
        p for p in (quarter.shift(-k) for k in reversed(range(TREND_QUARTERS))) if p.year >= 2000
    ]

    wanted: dict[tuple[str, Period], Awaitable[list[dict[str, Any]]]] = {}
    for code in keys:
        for p in (quarter, previous, year_ago):
            if p.year >= 2000:
                wanted[(code, p)] = fetch_values(view, code, p, area)
    for code in trends:
        for p in trend_quarters:
            if (code, p) not in wanted:
                wanted[(code, p)] = fetch_values(view, code, p, area)
    gap_level = "district" if len(area) <= 4 else "commune"
    gaps_wanted = {
        code: quietly(fetch_values(view, code, quarter, area, gap_level))
        for code in GAP_INDICATORS
        if code in catalogue
    }
    started = time.perf_counter()
    found = await asyncio.gather(*wanted.values(), *gaps_wanted.values())
    log.info(
        "progress_report_values",
        calls=len(found),
        ms=round((time.perf_counter() - started) * 1000),
    )
    answers = dict(zip(wanted, found[: len(wanted)], strict=True))
    gap_answers = dict(zip(gaps_wanted, found[len(wanted) :], strict=True))

    def cell(code: str, p: Period) -> Cell:
        rows = answers.get((code, p))
        return Cell(None) if rows is None else total_of(rows)

    marker = t("protected.marker")
    key_rows = []
    for code in keys:
        name = indicator_name(t, catalogue, code)
        now_c, prev_c, year_c = cell(code, quarter), cell(code, previous), cell(code, year_ago)
        bars = [
            (year_ago.short_label(t, lang), year_c.value, year_c.protected),
            (previous.short_label(t, lang), prev_c.value, prev_c.protected),
            (quarter.short_label(t, lang), now_c.value, now_c.protected),
        ]
        chart = charts.bar_chart(
            bars,
            title=f"{name}, {quarter.label(t, lang)}",
            marker=marker,
            width=300,
            height=170,
            highlight=2,
            chart_id=f"quarters-{code}",
        )
        key_rows.append(
            KeyRow(
                code,
                name,
                now_c,
                prev_c,
                year_c,
                change(now_c, prev_c),
                change(now_c, year_c),
                Markup(chart),
            )
        )

    trend_charts = []
    for code in trends:
        cells = [cell(code, p) for p in trend_quarters]
        name = indicator_name(t, catalogue, code)
        svg = charts.line_chart(
            [
                (p.short_label(t, lang), c.value, c.protected)
                for p, c in zip(trend_quarters, cells, strict=True)
            ],
            title=t("report.trend_of", indicator=name, count=len(trend_quarters)),
            marker=marker,
            width=640,
            height=200,
            chart_id=f"trend-{code}",
        )
        trend_charts.append((code, name, Markup(svg), any(c.protected for c in cells)))

    gaps = []
    for code in GAP_INDICATORS:
        name = indicator_name(t, catalogue, code)
        rows = gap_answers.get(code)
        if code not in catalogue or rows is None:
            gaps.append(GapTable(code, name, available=False))
            continue
        combos = catalogue.combos(code)
        combo_codes = [str(c.get("code")) for c in combos]
        by_place: dict[str, dict[str, Cell]] = {}
        for row in rows:
            by_place.setdefault(str(row.get("area")), {})[str(row.get("disaggregation"))] = Cell.of(
                row
            )
        table = GapTable(code, name, available=True)
        table.columns = [(str(c.get("code")), combo_label(t, c)) for c in combos]
        for place in sorted(by_place):
            cells = [by_place[place].get(c, Cell(None)) for c in combo_codes]
            table.rows.append((place, view.place(place), cells, Cell.total(cells)))
        if len(table.rows) > 1:
            columns = [Cell.total(r[2][i] for r in table.rows) for i in range(len(combo_codes))]
            table.footer = (columns, Cell.total(columns))
        gaps.append(table)

    context.update(
        title=both_names(area, lang),
        name_en=i18n.place_name(area, "en"),
        name_km=i18n.place_name(area, "km"),
        level=t(f"level.{places.LEVEL_BY_LENGTH[len(area)]}"),
        previous_label=previous.label(t, lang),
        year_ago_label=year_ago.label(t, lang),
        key_rows=key_rows,
        key_protected=any(c.protected for r in key_rows for c in (r.now, r.previous, r.year_ago)),
        trend_charts=trend_charts,
        trend_label=t("report.trend", count=len(trend_quarters)),
        gaps=gaps,
        gap_level=t(f"level.{gap_level}"),
        gaps_by=t(f"report.gaps_by.{gap_level}"),
        signed=signed,
        pdf_url=view.url("/reports/progress.pdf", area=area, quarter=quarter.code),
    )
    return context


# ---------------------------------------------------------------- the routes


@router.get("/reports/progress")
async def progress(request: Request) -> Response:
    view = view_of(request)
    context = await build(view, request.query_params)
    return view.render("report/progress.html", active="report", pdf=False, **context)


@router.get("/reports/progress.pdf")
async def progress_pdf(request: Request) -> Response:
    view = view_of(request)
    context = await build(view, request.query_params)
    area, quarter = context["area"], context["quarter"]
    if area is None:
        return view.redirect("/reports/progress")
    page = TEMPLATES.get_template("report/progress.html")
    html = page.render(v=view, t=view.t, lang=view.lang, active="report", pdf=True, **context)
    started = time.perf_counter()
    try:
        async with PDF_RENDERS:
            document = await pdf.render_pdf(html)
    except pdf.PdfUnavailable:
        return view.render(
            "error.html",
            status=503,
            title_key="report.pdf_unavailable.title",
            body_key="report.pdf_unavailable.body",
        )
    log.info(
        "progress_report_pdf",
        bytes=len(document),
        ms=round((time.perf_counter() - started) * 1000),
    )
    response = Response(
        document,
        media_type="application/pdf",
        headers={
            "Content-Disposition": (
                f'attachment; filename="komar-progress-{area}-{quarter.code}.pdf"'
            )
        },
    )
    view.set_cookies(response)
    return response
