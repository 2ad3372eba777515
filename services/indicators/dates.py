"""Months and periods: months are integers (`year * 12 + month - 1`) so that age and ranges
are arithmetic; periods are DHIS2 period codes (`202603`, `2026Q1`, `2026`). No I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from functools import lru_cache

from libs.common import clock

FIRST_YEAR = 2000  # no period before it is asked for


def month_index(year: int, month: int) -> int:
    """A month as one integer, so that month arithmetic is integer arithmetic."""
    return year * 12 + month - 1


def year_month(index: int) -> tuple[int, int]:
    """(year, month) of a month index."""
    return index // 12, index % 12 + 1


def month_code(index: int) -> str:
    """The DHIS2 monthly period code: `202603`."""
    y, m = year_month(index)
    return f"{y:04d}{m:02d}"


def cambodia_month(moment: datetime) -> int:
    """The month of an instant in Cambodia (UTC+7)."""
    local = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(clock.CAMBODIA)
    return month_index(local.year, local.month)


def current_month(now: datetime | None = None) -> int:
    """The month it is now in Cambodia."""
    return cambodia_month(now or datetime.now(UTC))


def date_month(day: date) -> int:
    """The month of a calendar date."""
    return month_index(day.year, day.month)


class PeriodType(StrEnum):
    monthly = "Monthly"
    quarterly = "Quarterly"
    yearly = "Yearly"


FIRST_MONTH = month_index(FIRST_YEAR, 1)
_PERIOD = re.compile(r"(?P<y>\d{4})(?:(?P<m>\d{2})|Q(?P<q>[1-4]))?", re.ASCII)
_DURATION = {PeriodType.monthly: "P1M", PeriodType.quarterly: "P3M", PeriodType.yearly: "P1Y"}


@dataclass(frozen=True, order=True)
class Period:
    """A DHIS2 period: its first and last month (inclusive)."""

    first: int
    last: int
    type: PeriodType
    code: str

    @classmethod
    def parse(cls, code: str) -> Period:
        """`202603`, `2026Q1` or `2026`; anything else is ValueError."""
        match = _PERIOD.fullmatch(code)
        if match is None:
            raise ValueError("not a DHIS2 period: use 202603, 2026Q1 or 2026")
        year = int(match["y"])
        if year < 1900:
            raise ValueError("year out of range")
        if match["m"] is not None:
            month = int(match["m"])
            if not 1 <= month <= 12:
                raise ValueError("month out of range")
            first = month_index(year, month)
            return cls(first, first, PeriodType.monthly, code)
        if match["q"] is not None:
            first = month_index(year, 3 * int(match["q"]) - 2)
            return cls(first, first + 2, PeriodType.quarterly, code)
        first = month_index(year, 1)
        return cls(first, first + 11, PeriodType.yearly, code)

    @property
    def months(self) -> range:
        return range(self.first, self.last + 1)

    @property
    def start_date(self) -> date:
        y, m = year_month(self.first)
        return date(y, m, 1)

    @property
    def end_date(self) -> date:
        y, m = year_month(self.last + 1)
        return date(y, m, 1) - timedelta(days=1)

    @property
    def adx(self) -> str:
        """ISO 8601 start/duration, as ADX writes periods: `2026-03-01/P1M`."""
        return f"{self.start_date.isoformat()}/{_DURATION[self.type]}"


@lru_cache(maxsize=4096)
def periods_of(month: int) -> tuple[Period, Period, Period]:
    """The month, quarter and year a month belongs to (where flows are counted)."""
    y, m = year_month(month)
    return (
        Period.parse(month_code(month)),
        Period.parse(f"{y:04d}Q{(m - 1) // 3 + 1}"),
        Period.parse(f"{y:04d}"),
    )


def periods_between(start: date, end: date, type_: PeriodType) -> list[Period]:
    """Periods of a type lying wholly within [start, end] (DHIS2 startDate/endDate)."""
    found: dict[str, Period] = {}
    for month in range(date_month(start), date_month(end) + 1):
        month_p, quarter, year = periods_of(month)
        period = {PeriodType.monthly: month_p, PeriodType.quarterly: quarter}.get(type_, year)
        if period.start_date >= start and period.end_date <= end:
            found[period.code] = period
    return sorted(found.values())


def last_day(month: int) -> date:
    """The last calendar day of a month index."""
    y, m = year_month(month + 1)
    return date(y, m, 1) - timedelta(days=1)


def stock_day(month: int, now: date | None = None) -> date:
    """The day a stock is taken at for a month: its last day, or today while it runs."""
    return min(last_day(month), now or clock.today())


def add_months(day: date, months: int) -> date:
    """The same day `months` calendar months later (the month's last day when it is
    shorter): 31 January + 1 month is 28 or 29 February."""
    y, m = year_month(date_month(day) + months)
    return min(date(y, m, 1) + timedelta(days=day.day - 1), last_day(month_index(y, m)))
