"""Small cells: the keyed rounding of counts shown without indicators:read:detail, and the
additive tables published from stored cells. No I/O."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from libs.common.auth import COUNTRY
from services.indicators.catalogue import (
    AMOUNT,
    AMOUNT_COUNT,
    ROUNDED,
    ROUNDING_BASE,
    CellKey,
    Indicator,
    Kind,
    RollUp,
)
from services.indicators.dates import Period, PeriodType, month_code
from services.indicators.geography import DISTRICT_LENGTH


def rounding_draw(key: bytes, cell: CellKey) -> int:
    """The cell's keyed pseudo-random draw: 64 bits of HMAC-SHA256(key, its identity).

    As a number u = draw / 2**64 it is uniform in [0, 1), fixed for the cell's identity
    (indicator|month|commune|combo), and unknowable without the key.
    """
    mac = _keyed(key).copy()  # the key's HMAC state, set up once
    mac.update("|".join(cell).encode())
    return int.from_bytes(mac.digest()[:8], "big")


@lru_cache(maxsize=8)
def _keyed(key: bytes) -> hmac.HMAC:
    return hmac.new(key, digestmod=hashlib.sha256)


def round_count(key: bytes, cell: CellKey, value: int) -> int:
    """A base cell's published count: 5*floor(v/5), plus 5 when u < (v mod 5)/5.

    Unbiased (the expected published value is v), 0 stays 0, multiples of 5 stay exact, and
    only a cell that is not a multiple of 5 costs a hash.
    """
    rest = value % ROUNDING_BASE
    if rest == 0:
        return value
    up = ROUNDING_BASE * rounding_draw(key, cell) < rest << 64
    return value - rest + (ROUNDING_BASE if up else 0)


def scale_amount(amount: int, count: int, published_count: int) -> int:
    """Riel of a base cell, scaled to its published grant count: round(amount * r / v)."""
    if published_count <= 0 or count <= 0:
        return 0
    if published_count == count:
        return amount
    return (2 * amount * published_count + count) // (2 * count)


def published_value(key: bytes, cell: CellKey, value: int, count: int = 0) -> int:
    """What a principal without detail is shown of one base cell.

    `count` is, for CP_GRANT_DISBURSED_KHR, the true CP_GRANT_DISBURSED of the same cell.
    """
    indicator_code, period, commune, combo = cell
    if indicator_code == AMOUNT:
        counted = (AMOUNT_COUNT, period, commune, combo)
        return scale_amount(value, count, round_count(key, counted, count))
    if indicator_code not in ROUNDED:
        return value
    return round_count(key, cell, value)


def storage_of(ind: Indicator, period: Period, now: int, *, by_month: bool) -> tuple[str, ...]:
    """The stored periods whose cells make up one period's value.

    A stock: its last month (or the current month while it runs). A flow: the period's own
    stored cell, or, `by_month` (rounded answers), each of its months up to now.
    """
    if ind.kind is Kind.stock:
        return (month_code(min(period.last, now)),)
    if by_month and period.type is not PeriodType.monthly:
        return tuple(month_code(m) for m in range(period.first, min(period.last, now) + 1))
    return (period.code,)


@dataclass
class Tally:
    """A published value being summed, and when the newest of its cells last changed."""

    value: int = 0
    updated: datetime | None = None

    def add(self, value: int, updated: datetime | None) -> None:
        self.value += value
        if updated is not None and (self.updated is None or updated > self.updated):
            self.updated = updated


TableKey = tuple[str, str, str, str]  # (indicator, period code, place, combo)


def publish_table(
    cells: Iterable[tuple[CellKey, int, datetime | None]],
    indicators: Iterable[Indicator],
    periods: Iterable[Period],
    places_: Iterable[str],
    now: int,
    key: bytes | None,
) -> dict[TableKey, Tally]:
    """The additive values of a table, from stored cells: exact, or rounded with `key`.

    Every value is a sum of base cells (each rounded first when `key` is given): a place
    sums its communes, a flow's quarter or year its months (rounded answers), a stock's
    period is its last month. `cells` must hold the cells of `storage_of` every asked
    indicator and period under the places (and, rounded, CP_GRANT_DISBURSED's alongside
    CP_GRANT_DISBURSED_KHR's). Indicators that are not summed (CP_PROVIDERS) are left out.
    """
    periods = list(periods)
    covers: dict[tuple[str, str], list[str]] = {}
    for ind in indicators:
        if ind.roll_up is not RollUp.sum:
            continue
        for period in periods:
            for stored in storage_of(ind, period, now, by_month=key is not None):
                covers.setdefault((ind.code, stored), []).append(period.code)
    needed = set(places_)
    cells = list(cells)
    counts: dict[tuple[str, str, str], int] = {}
    if key is not None:
        counts = {
            (cell[1], cell[2], cell[3]): value
            for cell, value, _ in cells
            if cell[0] == AMOUNT_COUNT
        }
    out: dict[TableKey, Tally] = {}
    for cell, value, updated in cells:
        targets = covers.get((cell[0], cell[1]))
        if not targets:
            continue
        if key is not None:
            value = published_value(key, cell, value, counts.get((cell[1], cell[2], cell[3]), 0))
        commune = cell[2]
        for place in (commune, commune[:DISTRICT_LENGTH], commune[:2], COUNTRY):
            if place in needed:
                for period_code in targets:
                    tally = out.get((cell[0], period_code, place, cell[3]))
                    if tally is None:
                        tally = out[(cell[0], period_code, place, cell[3])] = Tally()
                    tally.add(value, updated)
    return out
