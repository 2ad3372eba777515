"""Indicators: the explorer (one indicator for an area over time, by place, as CSV).

Every number is one `GET /v1/indicators/values` gives the signed-in user, and a rounded
small count (a row with `rounded: true` and a value under 10: a published 0 or 5, which
stands for a true 0 to 9) is shown as the protected marker, never as the number: in the
tables, the charts and the CSV. A total is the sum of the published values it covers, as
the API itself sums them, and follows the same rule.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from markupsafe import Markup

from dashboard import charts, i18n
from dashboard.web import View, view_of
from libs.common import clock, places

router = APIRouter(include_in_schema=False)

FIRST_YEAR = 2000  # the API refuses periods before 2000
# Points of the chart over time, by the kind of the period chosen.
SERIES_LENGTH = {"month": 12, "quarter": 8, "year": 5}
# Periods offered in the form, back from the current one.
OFFERED = {"month": 24, "quarter": 8, "year": 5}
LEVELS = ("province", "district", "commune")
LEVEL_OF_LENGTH = {2: "province", 4: "district", 6: "commune"}
# The places offered in the area select; past it the communes of a wide area are left out
# (except around the place chosen), and the table's links lead down to them.
MAX_AREA_OPTIONS = 400
# Places the table by place shows on the page (the CSV has them all): a country's 1,661
# communes make a page too heavy to read or to load.
MAX_TABLE_PLACES = 250
DEFAULT_INDICATOR = "CP_CHILD_REG"
AREA_PATTERN = re.compile(r"^(KH|[0-9]{2}|[0-9]{4}|[0-9]{6})$")
PERIOD_PATTERN = re.compile(r"^([0-9]{4})(?:([0-9]{2})|Q([1-4]))?$")
INDENT = "\u2003"  # an em space per level in the area select
SAFE_NAME = re.compile(r"[^A-Za-z0-9_]")  # what a file name may hold of a code


# ---------------------------------------------------------------- periods


@dataclass(frozen=True, order=True)
class Period:
    """A DHIS2 period: a month (202603), a quarter (2026Q1) or a year (2026)."""

    kind: str  # "month", "quarter", "year"
    index: int  # months, quarters or years since year 0

    @classmethod
    def parse(cls, code: str | None) -> Period | None:
        match = PERIOD_PATTERN.match(code or "")
        if not match:
            return None
        year, month, quarter = match.groups()
        if month is not None:
            m = int(month)
            return cls("month", int(year) * 12 + m - 1) if 1 <= m <= 12 else None
        if quarter is not None:
            return cls("quarter", int(year) * 4 + int(quarter) - 1)
        return cls("year", int(year))

    @classmethod
    def current(cls, kind: str, today: dt.date | None = None) -> Period:
        day = today or clock.today()
        if kind == "month":
            return cls("month", day.year * 12 + day.month - 1)
        if kind == "quarter":
            return cls("quarter", day.year * 4 + (day.month - 1) // 3)
        return cls("year", day.year)

    @property
    def year(self) -> int:
        per_year = {"month": 12, "quarter": 4, "year": 1}[self.kind]
        return self.index // per_year

    @property
    def part(self) -> int:
        """The month (1–12) or quarter (1–4) in its year; 0 for a year."""
        per_year = {"month": 12, "quarter": 4, "year": 1}[self.kind]
        return self.index % per_year + 1 if per_year > 1 else 0

    @property
    def code(self) -> str:
        if self.kind == "month":
            return f"{self.year:04d}{self.part:02d}"
        if self.kind == "quarter":
            return f"{self.year:04d}Q{self.part}"
        return f"{self.year:04d}"

    def shift(self, n: int) -> Period:
        return Period(self.kind, self.index + n)

    def usable(self, today: dt.date | None = None) -> bool:
        """Whether the API answers for it: from 2000, not in the future."""
        return FIRST_YEAR <= self.year and self <= Period.current(self.kind, today)

    def running(self, today: dt.date | None = None) -> bool:
        return self == Period.current(self.kind, today)

    def label(self, t: i18n.Translate, lang: str) -> str:
        if self.kind == "month":
            return t("indicators.month", month=_month_name(self.part, lang), year=self.year)
        if self.kind == "quarter":
            return t("indicators.quarter", quarter=self.part, year=self.year)
        return str(self.year)

    def short_label(self, t: i18n.Translate, lang: str) -> str:
        """Two lines for a chart's axis."""
        if self.kind == "month":
            return f"{_month_name(self.part, lang)}\n{self.year}"
        if self.kind == "quarter":
            return f"{t('indicators.quarter_short', quarter=self.part)}\n{self.year}"
        return str(self.year)


def _month_name(month: int, lang: str) -> str:
    if lang == "km":
        return i18n.KHMER_MONTHS[month - 1]
    return dt.date(2000, month, 1).strftime("%b")


def series(end: Period, length: int) -> list[Period]:
    """The `length` periods ending with `end`, those before 2000 left out."""
    return [p for p in (end.shift(-k) for k in reversed(range(length))) if p.year >= FIRST_YEAR]


# ---------------------------------------------------------------- published values


@dataclass(frozen=True)
class Cell:
    """A published value: the number and whether the API rounded it."""

    value: float | int | None
    rounded: bool = False

    @property
    def protected(self) -> bool:
        """A rounded small count (a published 0 or 5 stands for a true 0 to 9), or none."""
        return self.value is None or (self.rounded and self.value < 10)

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> Cell:
        value = row.get("value")
        number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
        return cls(number, bool(row.get("rounded")))

    @classmethod
    def total(cls, cells: Iterable[Cell]) -> Cell:
        """The sum of published values, as the API sums its rounded cells: rounded when
        any part is, so a total under 10 of rounded cells is protected in turn."""
        found = list(cells)
        if not found or any(c.value is None for c in found):
            return cls(None, any(c.rounded for c in found))
        return cls(sum(c.value or 0 for c in found), any(c.rounded for c in found))


def change(now: Cell, before: Cell) -> float | int | None:
    """now − before, or None when either is protected: a difference with a protected
    count would give it away."""
    if now.protected or before.protected or now.value is None or before.value is None:
        return None
    return now.value - before.value


def csv_value(cell: Cell, marker: str) -> str:
    if cell.protected or cell.value is None:
        return marker
    value = cell.value
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


# ---------------------------------------------------------------- the catalogue


@dataclass
class Catalogue:
    """`GET /v1/indicators/catalog`, indexed by code (in the catalogue's order)."""

    entries: dict[str, dict[str, Any]]

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> Catalogue:
        entries = {}
        for entry in body.get("indicators") or []:
            if isinstance(entry, dict) and isinstance(entry.get("code"), str):
                entries[entry["code"]] = entry
        return cls(entries)

    def __contains__(self, code: object) -> bool:
        return code in self.entries

    def combos(self, code: str) -> list[dict[str, Any]]:
        return list(self.entries[code].get("category_option_combos") or [])

    def distinct(self, code: str) -> bool:
        return self.entries[code].get("roll_up") == "distinct"

    def disaggregation(self, code: str) -> str:
        return str((self.entries[code].get("disaggregation") or {}).get("code") or "")


async def load_catalogue(view: View) -> Catalogue:
    return Catalogue.of(await view.get("/v1/indicators/catalog"))


def known(key: str) -> bool:
    return key in i18n.catalogue()


def indicator_name(t: i18n.Translate, catalogue: Catalogue, code: str) -> str:
    key = f"indicators.name.{code}"
    if known(key):
        return t(key)
    return str(catalogue.entries.get(code, {}).get("name") or code)


# The messages naming each category's options (the API's coded values).
OPTION_KEYS = {
    "SERVICE_TYPE": "service.{}",
    "GRANT_CATEGORY": "category.{}",
    "VULNERABILITY": "vuln.{}",
    "WORKER_ROLE": "role.{}",
    "VISIT_KIND": "visit_kind.{}",
    "AGE_BAND": "indicators.age.{}",
}
SEX_KEYS = {"F": "sex.female", "M": "sex.male"}


def combo_label(t: i18n.Translate, combo: Mapping[str, Any]) -> str:
    """A category option combo in the user's language (`Female, 0–4 years`, `Health`)."""
    options = combo.get("options") or {}
    words = []
    for category, option in options.items():
        key = SEX_KEYS.get(option, "") if category == "SEX" else ""
        if category in OPTION_KEYS:
            key = OPTION_KEYS[category].format(option)
        words.append(t(key) if key and known(key) else str(option))
    if not words:
        return str(combo.get("name") or combo.get("code") or "")
    return ", ".join(words)


# ---------------------------------------------------------------- places


def countable(code: str) -> bool:
    """A code the indicators are counted at: KH, a province, district or commune."""
    return bool(AREA_PATTERN.match(code)) and places.exists(code)


def level_of(code: str) -> str:
    return "country" if code == places.COUNTRY else LEVEL_OF_LENGTH[len(code)]


def levels_below(code: str) -> list[str]:
    depth = 0 if code == places.COUNTRY else len(code)
    return [lv for lv in LEVELS if places.LENGTH_BY_LEVEL[lv] > depth]


def inside(code: str, area: str) -> bool:
    return area == places.COUNTRY or code.startswith(area)


def user_areas(view: View) -> list[str]:
    """The user's areas the indicators are counted at (a village area is not)."""
    return [a for a in view.user.profile.areas if countable(a)]


@dataclass(frozen=True)
class AreaOption:
    code: str
    label: str
    depth: int


def area_options(view: View, areas: Sequence[str], chosen: str | None) -> list[AreaOption]:
    """The user's areas and the places inside them down to commune; for a wide area only
    as deep as fits in MAX_AREA_OPTIONS, plus the places around the one chosen."""
    codes: set[str] = set(areas)
    for level in LEVELS:
        found = {
            c
            for a in areas
            if places.LENGTH_BY_LEVEL[level] > (0 if a == places.COUNTRY else len(a))
            for c in places.children_at(a, level)
        }
        if len(codes | found) > MAX_AREA_OPTIONS:
            break
        codes |= found
    if chosen and chosen != places.COUNTRY and any(inside(chosen, a) for a in areas):
        near = [chosen[:n] for n in (2, 4, 6) if n <= len(chosen)]  # it and above it
        below = levels_below(chosen)
        if below:
            near += places.children_at(chosen, below[0])
        if len(chosen) >= 4:  # its neighbours
            near += places.children_at(chosen[: len(chosen) - 2], level_of(chosen))
        codes.update(c for c in near if any(inside(c, a) for a in areas))
    ordered = sorted(codes, key=lambda c: "" if c == places.COUNTRY else c)
    depths = {c: 0 if c == places.COUNTRY else len(c) // 2 for c in ordered}
    top = min(depths.values(), default=0)
    return [
        AreaOption(
            c,
            INDENT * (depths[c] - top)
            + (view.place_label(c) if c != places.COUNTRY else view.place(c)),
            depths[c] - top,
        )
        for c in ordered
    ]


# ---------------------------------------------------------------- the API


async def fetch_values(
    view: View, indicator: str, period: Period, area: str, level: str | None = None
) -> list[dict[str, Any]]:
    body = await view.get(
        "/v1/indicators/values", indicator=indicator, period=period.code, area=area, level=level
    )
    return [r for r in (body or {}).get("items") or [] if isinstance(r, dict)]


def by_place(
    rows: Iterable[Mapping[str, Any]], combo_codes: Sequence[str]
) -> dict[str, dict[str, Cell]]:
    """Rows of `values` as place → combo → cell, places in code order."""
    table: dict[str, dict[str, Cell]] = {}
    for row in rows:
        place = str(row.get("area") or "")
        table.setdefault(place, {})[str(row.get("disaggregation") or "")] = Cell.of(row)
    return {
        p: {c: table[p].get(c, Cell(None)) for c in combo_codes}
        for p in sorted(table, key=lambda c: "" if c == places.COUNTRY else c)
    }


def legend_needed(cells: Iterable[Cell]) -> bool:
    return any(c.protected for c in cells)


# ---------------------------------------------------------------- the explorer


@dataclass
class Choice:
    """What the explorer shows, from the query, every part checked and bounded."""

    indicator: str
    area: str | None
    period: Period
    level: str | None  # None: the area itself (a commune)


def choose(view: View, query: Mapping[str, str], catalogue: Catalogue) -> Choice:
    codes = list(catalogue.entries)
    indicator = query.get("indicator", "")[:40]
    if indicator not in catalogue:
        indicator = DEFAULT_INDICATOR if DEFAULT_INDICATOR in catalogue else (codes or [""])[0]
    areas = user_areas(view)
    area: str | None = query.get("area", "")[:8]
    if not area or not countable(area):
        area = areas[0] if areas else None
    period = Period.parse(query.get("period", "")[:7])
    if period is None or not period.usable():
        period = Period.current("month")
    level: str | None = query.get("level", "")[:10]
    below = levels_below(area) if area else []
    if level not in below:
        level = below[0] if below else None
    return Choice(indicator, area, period, level)


def period_options(t: i18n.Translate, lang: str, chosen: Period) -> list[tuple[str, list[Any]]]:
    groups = []
    for kind, title in (
        ("month", "indicators.months"),
        ("quarter", "indicators.quarters"),
        ("year", "indicators.years"),
    ):
        now = Period.current(kind)
        found = series(now, OFFERED[kind])
        if chosen.kind == kind and chosen not in found:
            found.insert(0, chosen)
        options = [
            (
                p.code,
                t("indicators.so_far", period=p.label(t, lang)) if p == now else p.label(t, lang),
            )
            for p in reversed(found)
        ]
        groups.append((t(title), options))
    return groups


@dataclass
class PlaceRow:
    code: str
    name: str
    cells: list[Cell]
    total: Cell | None


def explorer_url(view: View, choice: Choice, path: str = "/indicators", **changes: Any) -> str:
    params: dict[str, Any] = {
        "indicator": choice.indicator,
        "area": choice.area,
        "period": choice.period.code,
        "level": choice.level,
    }
    params.update(changes)
    return view.url(path, **params)


@router.get("/indicators")
async def explorer(request: Request) -> Response:
    view = view_of(request)
    t, lang = view.t, view.lang
    catalogue = await load_catalogue(view)
    choice = choose(view, request.query_params, catalogue)
    context: dict[str, Any] = {
        "choice": choice,
        "indicators": [(c, indicator_name(t, catalogue, c)) for c in catalogue.entries],
        "periods": period_options(t, lang, choice.period),
        "levels": levels_below(choice.area) if choice.area else [],
    }
    if choice.area is None or not choice.indicator:
        return view.render("indicators/explorer.html", area_options=[], shown=False, **context)

    area, code = choice.area, choice.indicator
    combos = catalogue.combos(code)
    combo_codes = [str(c.get("code")) for c in combos]
    periods = series(choice.period, SERIES_LENGTH[choice.period.kind])
    calls = [fetch_values(view, code, p, area) for p in periods]
    place_count = len(places.children_at(area, choice.level)) if choice.level else 1
    too_many = place_count > MAX_TABLE_PLACES
    if choice.level is not None and not too_many:
        calls.append(fetch_values(view, code, choice.period, area, choice.level))
    answers = await asyncio.gather(*calls)
    over_time = answers[: len(periods)]
    table_rows = [] if too_many else answers[-1]

    totals = [Cell.total(Cell.of(r) for r in rows) for rows in over_time]
    distinct = catalogue.distinct(code)
    name = indicator_name(t, catalogue, code)
    points = [
        (p.short_label(t, lang), cell.value, cell.protected)
        for p, cell in zip(periods, totals, strict=True)
    ]
    chart = charts.line_chart(
        points,
        title=t("indicators.over_time", indicator=name, area=view.place(area)),
        desc=t(f"indicators.over_time_{choice.period.kind}s", count=len(periods)),
        marker=t("protected.marker"),
        chart_id="chart-over-time-svg",
    )

    table = by_place(table_rows, combo_codes)
    rows = [
        PlaceRow(
            place,
            view.place(place),
            list(cells.values()),
            None if distinct else Cell.total(cells.values()),
        )
        for place, cells in table.items()
    ]
    area_cells = by_place(over_time[-1], combo_codes).get(area, {})
    footer = PlaceRow(
        area,
        t("indicators.area_total", area=view.place(area)),
        [area_cells.get(c, Cell(None)) for c in combo_codes],
        None if distinct else Cell.total(area_cells.values()),
    )
    table_cells = [c for r in [*rows, footer] for c in [*r.cells, *([r.total] if r.total else [])]]
    return view.render(
        "indicators/explorer.html",
        shown=True,
        area_options=area_options(view, user_areas(view), area),
        name=name,
        entry=catalogue.entries[code],
        distinct=distinct,
        by=t(f"indicators.by.{catalogue.disaggregation(code)}"),
        chart=Markup(chart),
        chart_protected=any(c.protected for c in totals),
        over_time_title=t(f"indicators.over_time_{choice.period.kind}s", count=len(periods)),
        columns=[(str(c.get("code")), combo_label(t, c)) for c in combos],
        rows=rows,
        footer=footer if choice.level is not None else None,
        too_many=too_many,
        place_count=place_count,
        max_places=MAX_TABLE_PLACES,
        table_protected=legend_needed(table_cells),
        period_label=choice.period.label(t, lang),
        csv_url=explorer_url(view, choice, "/indicators.csv"),
        place_url=lambda place: explorer_url(view, choice, area=place, level=None),
        **context,
    )


@router.get("/indicators.csv")
async def explorer_csv(request: Request) -> Response:
    """The table by place: place code, place name, disaggregation, value (the protected
    marker for a protected cell). UTF-8 with a byte-order mark, for Excel and Khmer."""
    view = view_of(request)
    t = view.t
    catalogue = await load_catalogue(view)
    choice = choose(view, request.query_params, catalogue)
    if choice.area is None or not choice.indicator:
        return view.redirect("/indicators")
    combo_codes = [str(c.get("code")) for c in catalogue.combos(choice.indicator)]
    rows = await fetch_values(view, choice.indicator, choice.period, choice.area, choice.level)
    marker = t("protected.marker")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(
        [
            t("indicators.csv.place_code"),
            t("indicators.csv.place_name"),
            t("indicators.csv.disaggregation"),
            t("indicators.csv.value"),
        ]
    )
    for place, cells in by_place(rows, combo_codes).items():
        for combo, cell in cells.items():
            writer.writerow([place, view.place(place), combo, csv_value(cell, marker)])
    name = "-".join(
        SAFE_NAME.sub("", part)
        for part in ("komar", choice.indicator, choice.area, choice.period.code, choice.level)
        if part
    )
    body = ("\ufeff" + out.getvalue()).encode("utf-8")
    response = Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )
    view.set_cookies(response)
    return response
