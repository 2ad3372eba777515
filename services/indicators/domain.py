"""Indicator rules: catalogue, periods, age bands, event effects, stock deltas, suppression.

No I/O. Months are integers (`year * 12 + month - 1`) so that age and ranges are arithmetic;
periods are DHIS2 period codes (`202603`, `2026Q1`, `2026`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from enum import StrEnum
from functools import lru_cache
from typing import Any

from pydantic import ValidationError

from libs.common import places
from libs.common.auth import COUNTRY
from libs.common.errors import invalid
from libs.common.events import CloudEvent
from libs.common.events.catalog import model_for

CAMBODIA = timezone(timedelta(hours=7))
ROUNDING_BASE = 5  # counts shown without indicators:read:detail are multiples of 5
FIRST_YEAR = 2000  # no period before it is asked for
MAX_YEARS = 10  # at most this many years of periods in one request
MAX_VALUES = 500_000  # at most this many data values in one request
COMMUNE_LENGTH = 6
DISTRICT_LENGTH = 4


class InvalidEvent(ValueError):
    """An event whose data cannot be counted (bad codes, unknown shape): dead-lettered."""


# ---------------------------------------------------------------- months and periods


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
    local = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(CAMBODIA)
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


# ---------------------------------------------------------------- the catalogue


@dataclass(frozen=True)
class Option:
    code: str
    name: str


@dataclass(frozen=True)
class Category:
    """A DHIS2 category: in ADX its code is the attribute name, option codes its values."""

    code: str
    name: str
    options: tuple[Option, ...]


@dataclass(frozen=True)
class CategoryOptionCombo:
    code: str
    name: str
    options: tuple[tuple[str, str], ...]  # (category code, option code)


@dataclass(frozen=True)
class CategoryCombo:
    code: str
    name: str
    categories: tuple[Category, ...]

    @property
    def combos(self) -> tuple[CategoryOptionCombo, ...]:
        return _combos(self)


@lru_cache(maxsize=16)
def _combos(cc: CategoryCombo) -> tuple[CategoryOptionCombo, ...]:
    out: list[list[Option]] = [[]]
    for category in cc.categories:
        out = [[*prefix, option] for prefix in out for option in category.options]
    return tuple(
        CategoryOptionCombo(
            code="_".join(o.code for o in opts),
            name=", ".join(o.name for o in opts),
            options=tuple((c.code, o.code) for c, o in zip(cc.categories, opts, strict=True)),
        )
        for opts in out
    )


def _options(*pairs: str) -> tuple[Option, ...]:
    return tuple(Option(code, code.replace("_", " ").capitalize()) for code in pairs)


SEXES = {"female": "F", "male": "M"}
AGE_BANDS = ("Y0_4", "Y5_9", "Y10_14", "Y15_17")
SEX = Category("SEX", "Sex", (Option("F", "Female"), Option("M", "Male")))
AGE_BAND = Category(
    "AGE_BAND",
    "Age band at the period's end",
    (
        Option("Y0_4", "0-4 years"),
        Option("Y5_9", "5-9 years"),
        Option("Y10_14", "10-14 years"),
        Option("Y15_17", "15-17 years"),
    ),
)
VULNERABILITIES = (
    "poor_household", "hiv_affected", "disability", "out_of_school", "child_labour",
    "institutional_care", "unsafe_migration", "abandonment", "exploitation", "violence", "neglect",
)  # fmt: skip
SERVICE_TYPES = (
    "health", "education", "shelter", "legal", "psychosocial", "family_tracing",
    "social_protection", "alternative_care", "livelihood",
)  # fmt: skip
GRANT_CATEGORIES = (
    "emergency_disaster", "education_support", "medical_transport", "material_support",
)  # fmt: skip

SEX_AGE = CategoryCombo("SEX_AGE", "Sex and age band", (SEX, AGE_BAND))
BY_VULNERABILITY = CategoryCombo(
    "VULNERABILITY",
    "Vulnerability",
    (Category("VULNERABILITY", "Vulnerability", _options(*VULNERABILITIES)),),
)
BY_SERVICE_TYPE = CategoryCombo(
    "SERVICE_TYPE",
    "Service type",
    (Category("SERVICE_TYPE", "Service type", _options(*SERVICE_TYPES)),),
)
BY_GRANT_CATEGORY = CategoryCombo(
    "GRANT_CATEGORY",
    "Grant category",
    (Category("GRANT_CATEGORY", "Grant category", _options(*GRANT_CATEGORIES)),),
)


class Kind(StrEnum):
    stock = "stock"
    flow = "flow"


class RollUp(StrEnum):
    sum = "sum"
    distinct = "distinct"


@dataclass(frozen=True)
class Indicator:
    """One data element of the catalogue."""

    code: str
    name: str
    definition: str
    kind: Kind
    combo: CategoryCombo
    roll_up: RollUp = RollUp.sum
    counted: str = ""


_STOCK_TIME = (
    "Stock at the end of the period: the last month of a quarter or year, or the current "
    "month while the period is running. A child's record counts with the newest version "
    "whose change happened (Cambodia time) in or before that month."
)
_CHILD_PLACE = "Placed at the child's commune."
INDICATORS: tuple[Indicator, ...] = (
    Indicator(
        "CP_CHILD_REG",
        "Children newly registered",
        "Children registered in the period, counted in the month of their registration date "
        "(registered_on). " + _CHILD_PLACE,
        Kind.flow,
        SEX_AGE,
        counted="registry.child.registered",
    ),
    Indicator(
        "CP_CASE_OPEN",
        "Open cases at period end",
        "Children whose case is open. " + _STOCK_TIME + " " + _CHILD_PLACE,
        Kind.stock,
        SEX_AGE,
        counted="registry.child.*",
    ),
    Indicator(
        "CP_CASE_HIGH_RISK",
        "Open high-risk cases at period end",
        "Children whose case is open with risk level high. " + _STOCK_TIME + " " + _CHILD_PLACE,
        Kind.stock,
        SEX_AGE,
        counted="registry.child.*",
    ),
    Indicator(
        "CP_CHILD_VULN",
        "Open cases with each vulnerability at period end",
        "Children with an open case having the vulnerability; a child with several "
        "vulnerabilities counts once under each. " + _STOCK_TIME + " " + _CHILD_PLACE,
        Kind.stock,
        BY_VULNERABILITY,
        counted="registry.child.*",
    ),
    Indicator(
        "CP_REF_MADE",
        "Referrals made",
        "Referrals created in the period (month of the event, Cambodia time). A referral "
        "re-routed after a decline is a new referral and counts again. Placed at the child's "
        "commune when referred.",
        Kind.flow,
        BY_SERVICE_TYPE,
        counted="referrals.referral.created",
    ),
    Indicator(
        "CP_REF_ACCEPTED",
        "Referrals accepted",
        "Referrals a provider accepted in the period (month of the event, Cambodia time); "
        "a later cancellation does not remove it. Placed at the child's commune when referred.",
        Kind.flow,
        BY_SERVICE_TYPE,
        counted="referrals.referral.accepted",
    ),
    Indicator(
        "CP_REF_COMPLETED",
        "Referrals completed",
        "Referrals completed with an outcome in the period (month of the event, Cambodia "
        "time). Placed at the child's commune when referred.",
        Kind.flow,
        BY_SERVICE_TYPE,
        counted="referrals.referral.completed",
    ),
    Indicator(
        "CP_REF_OVERDUE",
        "Referrals that went overdue",
        "Pending referrals that passed their due time, counted in the month of the due time "
        "(Cambodia time), whatever happened later. Placed at the child's commune when referred.",
        Kind.flow,
        BY_SERVICE_TYPE,
        counted="referrals.referral.overdue",
    ),
    Indicator(
        "CP_GRANT_APPROVED",
        "Grants approved",
        "Grants fully approved (the approval that commits the money) in the period, month of "
        "the event in Cambodia time; a later cancellation does not remove it. Placed at the "
        "child's commune when the grant was requested.",
        Kind.flow,
        BY_GRANT_CATEGORY,
        counted="funds.grant.approved",
    ),
    Indicator(
        "CP_GRANT_DISBURSED",
        "Grants disbursed",
        "Grants paid out in the period (month of the event, Cambodia time), gross: a reversal "
        "later does not subtract it. Placed at the child's commune when the grant was requested.",
        Kind.flow,
        BY_GRANT_CATEGORY,
        counted="funds.grant.disbursed",
    ),
    Indicator(
        "CP_GRANT_DISBURSED_KHR",
        "Riel disbursed",
        "Whole riel paid out by the grants of CP_GRANT_DISBURSED, gross of reversals. Without "
        "indicators:read:detail each commune-month cell is scaled to the rounded grant count "
        "of the same cell (see the rounding rule).",
        Kind.flow,
        BY_GRANT_CATEGORY,
        counted="funds.grant.disbursed",
    ),
    Indicator(
        "CP_PROVIDERS",
        "Active providers serving the place at period end",
        "Active service providers offering the service type whose served areas cover the "
        "place or lie inside it. Stock at the period's end, like the case stocks. Rolled up as "
        "a distinct count: a provider serving a whole district is one provider of that "
        "district (and of each of its communes), not one per commune.",
        Kind.stock,
        BY_SERVICE_TYPE,
        roll_up=RollUp.distinct,
        counted="referrals.provider.upserted",
    ),
)
BY_CODE = {i.code: i for i in INDICATORS}
STOCKS = tuple(i.code for i in INDICATORS if i.kind is Kind.stock and i.code != "CP_PROVIDERS")
DATA_SETS: dict[str, PeriodType] = {
    "CP_MONTHLY": PeriodType.monthly,
    "CP_QUARTERLY": PeriodType.quarterly,
    "CP_YEARLY": PeriodType.yearly,
}
DEFAULT_AOC = "default"  # DHIS2's default attribute option combo

AMOUNT, AMOUNT_COUNT = "CP_GRANT_DISBURSED_KHR", "CP_GRANT_DISBURSED"
# Rounded for principals without indicators:read:detail: every count about children,
# referrals and grants (the riel follow their grant count). Providers are not about a child.
ROUNDED = frozenset(i.code for i in INDICATORS if i.code != "CP_PROVIDERS")

SMALL_CELL_RULE = (
    "For principals without indicators:read:detail, every indicator except CP_PROVIDERS is "
    "published after consistent random rounding to base 5 of its base cells (one indicator, "
    "month, commune and category option combo: the finest grain kept). A base cell of true "
    "value v is published as 5*floor(v/5), plus 5 when u < (v mod 5)/5, where u in [0, 1) "
    "is drawn from a keyed hash (HMAC-SHA256 with a secret key) of the cell's identity: the "
    "same cell always rounds the same way, whatever the query and however often it is asked; "
    "0 stays 0, multiples of 5 stay exact, and on average the rounding neither adds nor "
    "removes. Every other published number is the sum of the rounded base cells it covers, "
    "never rounded on its own: a district, province or KH sums its communes; a flow's "
    "quarter or year sums its months (each month's age band taken at that month's end); a "
    "stock's quarter or year is its last month (the current month while it runs). "
    "CP_GRANT_DISBURSED_KHR of a base cell is its riel times r/v, where v and r are the true "
    "and published CP_GRANT_DISBURSED of the same cell (0 when r is 0). So every published "
    "count is a multiple of 5 and they all add up exactly: no count from 1 to 4 can be "
    "learnt from any combination of them. The same numbers are given by values and by "
    "dataValueSets (JSON, CSV, ADX). Nothing is withheld: suppressed is always false, and "
    "rows of values say rounded: true. With indicators:read:detail every value is exact."
)
SUPPRESSION_RULE = SMALL_CELL_RULE  # the catalogue's "suppression" entry, kept for clients


def catalogue() -> dict[str, Any]:
    """The catalogue document: indicators, disaggregations, data sets, rules."""
    return {
        "indicators": [
            {
                "code": i.code,
                "name": i.name,
                "definition": i.definition,
                "type": i.kind.value,
                "roll_up": i.roll_up.value,
                "value_type": "INTEGER_ZERO_OR_POSITIVE",
                "counted_from": i.counted,
                "disaggregation": {
                    "code": i.combo.code,
                    "name": i.combo.name,
                    "categories": [
                        {
                            "code": c.code,
                            "name": c.name,
                            "options": [{"code": o.code, "name": o.name} for o in c.options],
                        }
                        for c in i.combo.categories
                    ],
                },
                "category_option_combos": [
                    {"code": c.code, "name": c.name, "options": dict(c.options)}
                    for c in i.combo.combos
                ],
            }
            for i in INDICATORS
        ],
        "data_sets": [
            {"code": code, "period_type": t.value, "data_elements": [i.code for i in INDICATORS]}
            for code, t in DATA_SETS.items()
        ],
        "attribute_option_combo": DEFAULT_AOC,
        "periods": "DHIS2 codes: month 202603, quarter 2026Q1, year 2026 (Cambodia time). "
        "Future periods are refused; the current period gives the values so far.",
        "age_bands": (
            "Age at the last day of the period's last month, from the birth month: "
            "year(E) - year(B) - (1 if month(E) < month(B) else 0). 0-4, 5-9, 10-14, 15-17; a "
            "young person who turned 18 with the case still open counts in Y15_17."
        ),
        "places": "Gazetteer codes: province (2 digits), district (4), commune (6); KH is the "
        "whole country. Counts roll up from commune to district, province and KH.",
        "suppression": SMALL_CELL_RULE,
        "rounding": {
            "base": ROUNDING_BASE,
            "indicators": sorted(ROUNDED),
            "exact_with": "indicators:read:detail",
        },
    }


def indicator(code: str) -> Indicator:
    """The catalogue entry, else 422."""
    try:
        return BY_CODE[code]
    except KeyError as exc:
        raise invalid("indicator", f"unknown indicator; one of {', '.join(BY_CODE)}") from exc


# ---------------------------------------------------------------- children and their age


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
    return out


CellKey = tuple[str, str, str, str]  # (indicator, period code, commune, combo)


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


# ---------------------------------------------------------------- what an event means


@dataclass(frozen=True)
class Flow:
    """One count (or amount) of a flow indicator, placed at a commune in a month."""

    indicator: str
    month: int
    commune: str
    combo: str | None  # fixed combo, or None for sex x age band (depends on the period end)
    amount: int = 1
    sex: str = ""
    birth_month: int = 0

    def cells(self) -> Counter[CellKey]:
        """The month, quarter and year cells it adds to, each with its own age band."""
        out: Counter[CellKey] = Counter()
        for period in periods_of(self.month):
            combo = self.combo or f"{self.sex}_{age_band(self.birth_month, period.last)}"
            out[(self.indicator, period.code, self.commune, combo)] += self.amount
        return out


@dataclass(frozen=True)
class ProviderVersion:
    provider_id: str
    version: int
    effective: int
    active: bool
    service_types: tuple[str, ...]
    areas: tuple[str, ...]


@dataclass
class Effects:
    """What one event changes: child or provider versions to record, flows to count."""

    child: ChildVersion | None = None
    provider: ProviderVersion | None = None
    flows: list[Flow] = field(default_factory=list)


def _data(event: CloudEvent) -> Any:
    try:
        return model_for(event.type).model_validate(event.data)
    except (KeyError, ValidationError) as exc:
        raise InvalidEvent(f"{event.type}: data does not match the catalogue") from exc


def _uuid(value: str, what: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError as exc:
        raise InvalidEvent(f"{what} is not a UUID") from exc


def _commune(code: str) -> str:
    if len(code) != COMMUNE_LENGTH or not places.exists(code):
        raise InvalidEvent("commune_code is not a commune of the gazetteer")
    return code


def _month_of(text: str, what: str) -> int:
    try:
        if len(text) == 7:  # YYYY-MM
            return month_index(int(text[:4]), int(text[5:7]))
        return date_month(date.fromisoformat(text))
    except ValueError as exc:
        raise InvalidEvent(f"{what} is not a date") from exc


def _child(event: CloudEvent) -> Effects:
    data = _data(event)
    sex = SEXES.get(data.sex)
    if sex is None:
        raise InvalidEvent("sex is neither female nor male")
    registered = _month_of(data.registered_on, "registered_on")
    birth = _month_of(data.birth_month, "birth_month")
    state = ChildState(
        commune=_commune(data.commune_code),
        sex=sex,
        birth_month=birth,
        status=data.status,
        risk=data.risk_level,
        vulnerabilities=tuple(sorted(set(data.vulnerabilities) & set(VULNERABILITIES))),
    )
    verb = event.type.split(".")[2]
    # A registration holds from its registration month; a later change from the month it
    # happened, never before the registration.
    effective = registered if verb == "registered" else max(registered, cambodia_month(event.time))
    child = ChildVersion(_uuid(data.child_id, "child_id"), int(data.version), effective, state)
    flows = []
    if verb == "registered":
        flows.append(Flow("CP_CHILD_REG", registered, state.commune, None, 1, sex, birth))
    return Effects(child=child, flows=flows)


_REFERRAL_FLOWS = {
    "created": "CP_REF_MADE",
    "accepted": "CP_REF_ACCEPTED",
    "completed": "CP_REF_COMPLETED",
    "overdue": "CP_REF_OVERDUE",
}


def _referral(event: CloudEvent) -> Effects:
    data = _data(event)
    commune = _commune(data.commune_code)
    indicator_code = _REFERRAL_FLOWS.get(event.type.split(".")[2])
    if indicator_code is None or data.service_type not in SERVICE_TYPES:
        return Effects()
    if indicator_code == "CP_REF_OVERDUE":
        try:
            month = cambodia_month(datetime.fromisoformat(data.due_at))
        except ValueError as exc:
            raise InvalidEvent("due_at is not RFC 3339") from exc
    else:
        month = cambodia_month(event.time)
    return Effects(flows=[Flow(indicator_code, month, commune, data.service_type)])


def _grant(event: CloudEvent) -> Effects:
    data = _data(event)
    commune = _commune(data.commune_code)
    verb = event.type.split(".")[2]
    if data.category not in GRANT_CATEGORIES or verb not in ("approved", "disbursed"):
        return Effects()
    month = cambodia_month(event.time)
    if verb == "approved":
        return Effects(flows=[Flow("CP_GRANT_APPROVED", month, commune, data.category)])
    if data.amount_khr < 0:
        raise InvalidEvent("amount_khr is negative")
    return Effects(
        flows=[
            Flow("CP_GRANT_DISBURSED", month, commune, data.category),
            Flow("CP_GRANT_DISBURSED_KHR", month, commune, data.category, data.amount_khr),
        ]
    )


def _provider(event: CloudEvent) -> Effects:
    data = _data(event)
    areas = tuple(sorted({a for a in data.areas if places.exists(a)}))
    return Effects(
        provider=ProviderVersion(
            provider_id=_uuid(data.provider_id, "provider_id"),
            version=int(data.version),
            effective=cambodia_month(event.time),
            active=bool(data.active),
            service_types=tuple(sorted(set(data.service_types) & set(SERVICE_TYPES))),
            areas=areas,
        )
    )


def effects_of(event: CloudEvent) -> Effects:
    """What an event changes in the aggregates; InvalidEvent when it cannot be counted."""
    parts = event.type.split(".")
    if len(parts) != 4:
        raise InvalidEvent("event type is not <service>.<entity>.<verb>.v<N>")
    entity = ".".join(parts[:2])
    if entity == "registry.child":
        return _child(event)
    if entity == "referrals.referral":
        return _referral(event)
    if entity == "referrals.provider":
        return _provider(event)
    if entity == "funds.grant":
        return _grant(event)
    return Effects()  # funds.fund.*: nothing to count


# ---------------------------------------------------------------- providers


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
    """Distinct active providers per place and service type (the rule of `serves`).

    Indexed by area so that a place looks up its at most four ancestors and the areas inside
    it, instead of testing every provider: the cost follows the places asked for.
    """
    active = [p for p in providers if p.active and p.service_types and p.areas]
    exact: dict[str, set[int]] = {}  # an area -> the providers serving exactly it
    within: dict[str, set[int]] = {}  # a place -> the providers with an area inside it
    for i, provider in enumerate(active):
        for area in provider.areas:
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
            counts.update(active[i].service_types)
        out[place] = counts
    return out


# ---------------------------------------------------------------- places


LEVELS = {"province": 2, "district": 4, "commune": 6}


def place_length(code: str) -> int:
    return 0 if code == COUNTRY else len(code)


def check_area(area: str) -> None:
    """422 unless the area is KH, a province, a district or a commune of the gazetteer."""
    if place_length(area) not in (0, 2, 4, 6) or not places.exists(area):
        raise invalid("area", "not a province, district or commune of the gazetteer, nor KH")


def places_at(area: str, level: str | None) -> list[str]:
    """The area itself, or its places at a level (same level or below), in code order."""
    if level is None:
        return [area]
    depth = LEVELS.get(level)
    if depth is None:
        raise invalid("level", "one of province, district, commune")
    if depth < place_length(area):
        raise invalid("level", "must not lie above the area's own level")
    if depth == place_length(area):
        return [area]
    return places.children_at(area, level)


def descendants(area: str) -> list[str]:
    """The area and every province, district and commune inside it (DHIS2 children=true)."""
    out = [area]
    for level, depth in LEVELS.items():
        if depth > place_length(area):
            out.extend(places.children_at(area, level))
    return out


@lru_cache(maxsize=512)
def communes_of(district: str) -> tuple[str, ...]:
    """The communes of a district."""
    return tuple(places.children_at(district, "commune"))


# ---------------------------------------------------------------- small cells: rounding


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


# ---------------------------------------------------------------- bounds of a query


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
