"""Stocks: the children and providers counted at the end of a month, and how a newly known
version of a child changes the monthly stock cells. No I/O."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from libs.common.auth import COUNTRY
from services.indicators.catalogue import CellKey
from services.indicators.dates import month_code

RESIDENTIAL = "residential_institution"


def age_band(birth_month: int, at_month: int) -> str:
    """Age band at the last day of `at_month` for a child born in `birth_month`.

    Whole years are (E - B) // 12 exactly: the birthday lies in the birth month, so by that
    month's last day it has passed. Negative ages count as 0-4, 18 and over as 15-17.
    """
    months = at_month - birth_month
    if months < 60:
        return "Y0_4"
    if months < 120:
        return "Y5_9"
    if months < 180:
        return "Y10_14"
    return "Y15_17"


@dataclass(frozen=True)
class ChildState:
    """What indicators know of a child at one version: no name, no date finer than a month."""

    commune: str
    sex: str  # F or M
    birth_month: int
    status: str
    risk: str
    vulnerabilities: tuple[str, ...]
    care_setting: str = "family"  # events before it existed mean family


@dataclass(frozen=True)
class ChildVersion:
    child_id: str
    version: int
    effective: int  # month index from which this version holds
    state: ChildState


def state_at(versions: Iterable[ChildVersion], month: int) -> ChildVersion | None:
    """The version in force at the end of a month: the newest whose change came by then."""
    best: ChildVersion | None = None
    for v in versions:
        if v.effective <= month and (best is None or v.version > best.version):
            best = v
    return best


def stock_contributions(state: ChildState | None, month: int) -> list[tuple[str, str]]:
    """(indicator, combo) cells a child adds 1 to at the end of a month."""
    if state is None or state.status != "open":
        return []
    combo = f"{state.sex}_{age_band(state.birth_month, month)}"
    out = [("CP_CASE_OPEN", combo)]
    if state.risk == "high":
        out.append(("CP_CASE_HIGH_RISK", combo))
    out.extend(("CP_CHILD_VULN", v) for v in state.vulnerabilities)
    if state.care_setting == RESIDENTIAL:
        out.append(("CP_CHILD_RESIDENTIAL", combo))
    return out


def stock_deltas(
    known: Sequence[ChildVersion], added: ChildVersion, through: int
) -> Counter[CellKey]:
    """Changes to monthly stock cells, up to month `through`, when a version becomes known.

    Order-independent: the state at each month is the newest version effective by then, so a
    late older version only fills the months before the next known version.
    """
    after = [*known, added]
    out: Counter[CellKey] = Counter()
    for month in range(added.effective, through + 1):
        old, new = state_at(known, month), state_at(after, month)
        if old is new:
            continue
        code = month_code(month)
        if old is not None:
            for ind, combo in stock_contributions(old.state, month):
                out[(ind, code, old.state.commune, combo)] -= 1
        if new is not None:
            for ind, combo in stock_contributions(new.state, month):
                out[(ind, code, new.state.commune, combo)] += 1
    return Counter({k: v for k, v in out.items() if v})


@dataclass(frozen=True)
class ProviderVersion:
    provider_id: str
    version: int
    effective: int
    active: bool
    service_types: tuple[str, ...]
    areas: tuple[str, ...]


def serves(areas: Iterable[str], place: str) -> bool:
    """Whether a provider with these served areas counts for a place.

    It does when one of its areas covers the place (the place lies inside it, or the area is
    KH) or lies inside the place (or the place is KH).
    """
    for area in areas:
        if area == COUNTRY or place == COUNTRY:
            return True
        if place.startswith(area) or area.startswith(place):
            return True
    return False


def provider_counts(
    providers: Iterable[ProviderVersion], places_: Iterable[str]
) -> dict[str, Counter[str]]:
    """Distinct active providers per place and service type (the rule of `serves`)."""
    return distinct_counts([(p.areas, p.service_types) for p in providers if p.active], places_)


def distinct_counts(
    members: Sequence[tuple[tuple[str, ...], tuple[str, ...]]], places_: Iterable[str]
) -> dict[str, Counter[str]]:
    """Distinct members (providers, workers) per place and category, each member given as
    (served areas, categories), counted where it `serves`.

    Indexed by area so that a place looks up its at most four ancestors and the areas inside
    it, instead of testing every member: the cost follows the places asked for.
    """
    active = [(areas, cats) for areas, cats in members if areas and cats]
    exact: dict[str, set[int]] = {}  # an area -> the members serving exactly it
    within: dict[str, set[int]] = {}  # a place -> the members with an area inside it
    for i, (areas, _) in enumerate(active):
        for area in areas:
            exact.setdefault(area, set()).add(i)
            if area != COUNTRY:
                for n in range(2, len(area) + 1, 2):
                    within.setdefault(area[:n], set()).add(i)
    everyone = set(range(len(active)))
    out: dict[str, Counter[str]] = {}
    for place in places_:
        if place == COUNTRY:
            ids = everyone
        else:
            ids = set(exact.get(COUNTRY, ()))
            for n in range(2, len(place) + 1, 2):
                ids |= exact.get(place[:n], set())
            ids |= within.get(place, set())
        counts: Counter[str] = Counter()
        for i in ids:
            counts.update(active[i][1])
        out[place] = counts
    return out
