"""The bounds of an indicators query (its first period, its span and its size), decided from
its shape before any work."""

from __future__ import annotations

from collections.abc import Sequence

from libs.common.errors import invalid
from services.indicators.catalogue import Indicator
from services.indicators.dates import FIRST_MONTH, FIRST_YEAR, Period

MAX_YEARS = 10  # at most this many years of periods in one request
MAX_VALUES = 500_000  # at most this many data values in one request


def check_query_period(period: Period, field: str) -> None:
    """422 for a period that starts before 2000 (nothing is counted before it)."""
    if period.first < FIRST_MONTH:
        raise invalid(field, f"{period.code} lies before {FIRST_YEAR}: periods start in 2000")


def check_query_size(
    periods: Sequence[Period], places_count: int, indicators: Sequence[Indicator], field: str
) -> int:
    """422 naming the limit when a query spans more than 10 years or 500,000 values.

    Decided from the query's shape alone (periods x org units x category option combos),
    before any work; returns the number of values it will produce.
    """
    if periods:
        span = max(p.last for p in periods) - min(p.first for p in periods) + 1
        if span > MAX_YEARS * 12:
            raise invalid(
                field,
                f"limit: at most {MAX_YEARS} years of periods per request (asked: {span} months)",
            )
    combos = sum(len(i.combo.combos) for i in indicators)
    values = len(periods) * places_count * combos
    if values > MAX_VALUES:
        raise invalid(
            field,
            f"limit: at most {MAX_VALUES:,} data values per request (this one: {values:,}); "
            "ask for fewer periods, org units or data elements",
        )
    return values
