"""Small cells: the keyed rounding of counts shown without indicators:read:detail, and the
additive tables published from stored cells. No I/O."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

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
    return _draw(_keyed(key), "|".join(cell))


@lru_cache(maxsize=8)
def _keyed(key: bytes) -> hmac.HMAC:
    """The key's HMAC state, set up once (only ever copied, never updated)."""
    return hmac.new(key, digestmod=hashlib.sha256)


def _draw(state: hmac.HMAC, rest: str) -> int:
    """The draw of an identity whose start `state` (a copy of `_keyed`) has already hashed.

    HMAC hashes a message as a stream, so a state fed "indicator|month|" and then given
    "commune|combo" draws exactly what the whole identity draws.
    """
    mac = state.copy()
    mac.update(rest.encode())
    return int.from_bytes(mac.digest()[:8], "big")


def _round(value: int, rest: int, draw: int) -> int:
    """5*floor(v/5), plus 5 when draw / 2**64 < (v mod 5)/5 (`rest` is v mod 5)."""
    return value - rest + (ROUNDING_BASE if ROUNDING_BASE * draw < rest << 64 else 0)


def round_count(key: bytes, cell: CellKey, value: int) -> int:
    """A base cell's published count: 5*floor(v/5), plus 5 when u < (v mod 5)/5.

    Unbiased (the expected published value is v), 0 stays 0, multiples of 5 stay exact, and
    only a cell that is not a multiple of 5 costs a hash.
    """
    rest = value % ROUNDING_BASE
    if rest == 0:
        return value
    return _round(value, rest, rounding_draw(key, cell))


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
        if value == 0 or count <= 0:
            return 0  # what scale_amount gives whatever the rounded count: no hash needed
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


CellRow = Sequence[Any]  # (indicator, stored period, commune, combo, value, updated)


def publish_table(
    cells: Iterable[tuple[CellKey, int, datetime | None]],
    indicators: Iterable[Indicator],
    periods: Iterable[Period],
    places_: Iterable[str],
    now: int,
    key: bytes | None,
) -> dict[TableKey, Tally]:
    """`publish_rows` of (cell, value, updated) triples."""
    rows = [(*cell, value, updated) for cell, value, updated in cells]
    return publish_rows(rows, indicators, periods, places_, now, key)


def publish_rows(
    rows: Sequence[CellRow],
    indicators: Iterable[Indicator],
    periods: Iterable[Period],
    places_: Iterable[str],
    now: int,
    key: bytes | None,
) -> dict[TableKey, Tally]:
    """The additive values of a table, from stored cells: exact, or rounded with `key`.

    Every value is a sum of base cells (each rounded first when `key` is given): a place
    sums its communes, a flow's quarter or year its months (rounded answers), a stock's
    period is its last month. `rows` (indicator, stored period, commune, combo, value,
    updated), as counting.read_cells reads them, must hold the cells of `storage_of` every
    asked indicator and period under the places (and, rounded, CP_GRANT_DISBURSED's
    alongside CP_GRANT_DISBURSED_KHR's). Indicators that are not summed (CP_PROVIDERS) are
    left out.

    The cells are first summed per stored period, place and combo ([value, updated] slots),
    then each stored period's sums are added to the asked periods it makes up.
    """
    periods = list(periods)
    covers: dict[tuple[str, str], list[str]] = {}
    for ind in indicators:
        if ind.roll_up is not RollUp.sum:
            continue
        for period in periods:
            for stored in storage_of(ind, period, now, by_month=key is not None):
                covers.setdefault((ind.code, stored), []).append(period.code)
    groups: dict[str, dict[str, _Group]] = {}
    for code, stored in covers:
        groups.setdefault(code, {})[stored] = _Group(code, stored, key)
    counts: dict[tuple[str, str, str], int] = {}
    if key is not None and AMOUNT in groups:
        counts = {(r[1], r[2], r[3]): r[4] for r in rows if r[0] == AMOUNT_COUNT}
    needed = set(places_)
    places_of: dict[str, tuple[str, ...]] = {}
    for ind_code, stored, commune, combo, value, updated in rows:
        by_stored = groups.get(ind_code)
        if by_stored is None:
            continue
        group = by_stored.get(stored)
        if group is None:
            continue
        sums = group.sums_of.get(commune)
        if sums is None:
            places = places_of.get(commune)
            if places is None:
                places = places_of[commune] = tuple(
                    place
                    for place in (commune, commune[:DISTRICT_LENGTH], commune[:2], COUNTRY)
                    if place in needed
                )
            sums = group.sums_of[commune] = tuple(
                group.by_place.setdefault(place, {}) for place in places
            )
        if not sums:
            continue
        if group.state is not None:
            rest = value % ROUNDING_BASE
            if rest:
                value = _round(value, rest, _draw(group.state, f"{commune}|{combo}"))
        elif key is not None and group.rounded:
            cell = (ind_code, stored, commune, combo)
            value = published_value(key, cell, value, counts.get((stored, commune, combo), 0))
        for by_combo in sums:
            slot = by_combo.get(combo)
            if slot is None:
                by_combo[combo] = [value, updated]
            else:
                slot[0] += value
                if updated is not None and (slot[1] is None or updated > slot[1]):
                    slot[1] = updated
    out: dict[TableKey, Tally] = {}
    for (code, stored), targets in covers.items():
        for place, by_combo in groups[code][stored].by_place.items():
            for combo, (value, updated) in by_combo.items():
                for period_code in targets:
                    tally = out.get((code, period_code, place, combo))
                    if tally is None:
                        out[(code, period_code, place, combo)] = Tally(value, updated)
                    else:
                        tally.add(value, updated)
    return out


class _Group:
    """The cells of one indicator and stored period being summed by publish_rows."""

    __slots__ = ("by_place", "rounded", "state", "sums_of")

    def __init__(self, code: str, stored: str, key: bytes | None) -> None:
        self.rounded = key is not None and code in ROUNDED
        # A rounded count's HMAC state fed "indicator|month|" (CP_GRANT_DISBURSED_KHR,
        # scaled to its grant count, goes through published_value instead).
        self.state: hmac.HMAC | None = None
        if self.rounded and key is not None and code != AMOUNT:
            self.state = _keyed(key).copy()
            self.state.update(f"{code}|{stored}|".encode())
        self.by_place: dict[str, dict[str, list[Any]]] = {}
        # commune -> the [value, updated] slots by combo of each asked place containing it
        self.sums_of: dict[str, tuple[dict[str, list[Any]], ...]] = {}
