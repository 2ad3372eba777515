"""The indicator catalogue: categories, category combos, indicators and the small-cell rule
as published to DHIS2 and to clients. No I/O."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any

from libs.common.errors import invalid
from libs.common.events.casework_events import VisitKind, WorkerRole
from libs.common.events.funds_events import Category as GrantCategory
from libs.common.events.referrals_events import ServiceType
from libs.common.events.registry_events import Vulnerability
from services.indicators.dates import PeriodType

ROUNDING_BASE = 5  # counts shown without indicators:read:detail are multiples of 5


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
VULNERABILITIES = tuple(v.value for v in Vulnerability)
SERVICE_TYPES = tuple(t.value for t in ServiceType)
GRANT_CATEGORIES = tuple(c.value for c in GrantCategory)
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


WORKER_ROLES = tuple(r.value for r in WorkerRole)
VISIT_KINDS = tuple(k.value for k in VisitKind)
BY_WORKER_ROLE = CategoryCombo(
    "WORKER_ROLE",
    "Worker role",
    (Category("WORKER_ROLE", "Worker role", _options(*WORKER_ROLES)),),
)
BY_VISIT_KIND = CategoryCombo(
    "VISIT_KIND",
    "Visit kind",
    (Category("VISIT_KIND", "Visit kind", _options(*VISIT_KINDS)),),
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
_WORKER_PLACE = (
    "Counted at every place the worker serves (an area covering the place or lying inside "
    "it), rolled up as a distinct count like CP_PROVIDERS: a worker serving a district is "
    "one worker of that district, not one per commune."
)
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
        "CP_REF_UNMATCHED",
        "Referrals that found no provider",
        "Referrals asked to be routed that found no provider (no active provider offering the "
        "service with free capacity serves the child's place; the request was refused), "
        "counted once per child, service type and month however often they were asked, in "
        "the month they were asked (Cambodia time). A referral to a provider the referrer "
        "named is not routed and never counts. Placed at the child's commune when asked.",
        Kind.flow,
        BY_SERVICE_TYPE,
        counted="referrals.referral.unmatched",
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
    Indicator(
        "CP_WORKERS_ACTIVE",
        "Active workers serving the place at period end",
        "Casework workers with status active and a contract current on the "
        "period's last day (today while it runs), by role, from each worker's newest version "
        "known by then. " + _WORKER_PLACE,
        Kind.stock,
        BY_WORKER_ROLE,
        roll_up=RollUp.distinct,
        counted="casework.worker.upserted",
    ),
    Indicator(
        "CP_WORKERS_TRAINED",
        "Active workers trained in child protection at period end",
        "The workers of CP_WORKERS_ACTIVE who completed child_protection_basics on or "
        "before the period's last day, by role. " + _WORKER_PLACE,
        Kind.stock,
        BY_WORKER_ROLE,
        roll_up=RollUp.distinct,
        counted="casework.worker.upserted",
    ),
    Indicator(
        "CP_CASELOAD_OVER",
        "Workers above their maximum caseload at period end",
        "Workers whose active caseload exceeds their max_caseload on the period's last day: "
        "the caseload and max_caseload of the worker's latest assignment change (started or "
        "ended, by its date) on or before that day; by the worker's role. " + _WORKER_PLACE,
        Kind.stock,
        BY_WORKER_ROLE,
        roll_up=RollUp.distinct,
        counted="casework.assignment.*, casework.worker.upserted",
    ),
    Indicator(
        "CP_CHILD_ASSIGNED",
        "Open cases with a worker at period end",
        "Children whose case is open with an active worker assignment on the period's last "
        "day (started on or before it, not ended by it). " + _STOCK_TIME + " " + _CHILD_PLACE,
        Kind.stock,
        SEX_AGE,
        counted="casework.assignment.*, registry.child.*",
    ),
    Indicator(
        "CP_VISITS",
        "Visits made",
        "Casework visits recorded, in the month of the visit's date, by kind. Placed at the "
        "child's commune when visited.",
        Kind.flow,
        BY_VISIT_KIND,
        counted="casework.visit.recorded",
    ),
    Indicator(
        "CP_VISIT_OVERDUE",
        "Children with an overdue visit at period end",
        "Children whose next visit had passed without a visit on the period's last day: the "
        "child's newest overdue flag or clearing dated on or before that day is a flag. "
        + _STOCK_TIME
        + " "
        + _CHILD_PLACE,
        Kind.stock,
        SEX_AGE,
        counted="casework.visit.overdue, casework.visit.overdue_cleared, registry.child.*",
    ),
    Indicator(
        "CP_CHILD_RESIDENTIAL",
        "Open cases in residential care at period end",
        "Children whose case is open with care_setting residential_institution. "
        + _STOCK_TIME
        + " "
        + _CHILD_PLACE,
        Kind.stock,
        SEX_AGE,
        counted="registry.child.*",
    ),
    Indicator(
        "CP_REINTEGRATED",
        "Children reintegrated",
        "Children moved from a residential institution into family, kinship or foster care "
        "in the period, counted in the month of reintegrated_on (each move counts). "
        + _CHILD_PLACE,
        Kind.flow,
        SEX_AGE,
        counted="registry.child.reintegrated",
    ),
    Indicator(
        "CP_REINTEGRATION_FOLLOWED",
        "Reintegrated children followed up",
        "Children whose latest reintegration (on or before the period's last day) has its "
        "first follow-up made and every follow-up due by that day made. Follow-ups are due "
        "1, 3, 6 and 12 calendar months after reintegrated_on (the same day of the month, or "
        "the month's last day); one is made when a visit on or after reintegrated_on and on "
        "or before the period's last day lists it in followups_made. "
        + _STOCK_TIME
        + " "
        + _CHILD_PLACE,
        Kind.stock,
        SEX_AGE,
        counted="registry.child.reintegrated, casework.visit.recorded, registry.child.*",
    ),
)
BY_CODE = {i.code: i for i in INDICATORS}
# Stocks kept in monthly cells (materialised from the child versions and casework facts).
STOCKS = tuple(i.code for i in INDICATORS if i.kind is Kind.stock and i.roll_up is RollUp.sum)
# Distinct counts of providers and workers, at the places they serve.
DISTINCT = frozenset(i.code for i in INDICATORS if i.roll_up is RollUp.distinct)
WORKER_INDICATORS = DISTINCT - {"CP_PROVIDERS"}
DATA_SETS: dict[str, PeriodType] = {
    "CP_MONTHLY": PeriodType.monthly,
    "CP_QUARTERLY": PeriodType.quarterly,
    "CP_YEARLY": PeriodType.yearly,
}
DEFAULT_AOC = "default"  # DHIS2's default attribute option combo
AMOUNT, AMOUNT_COUNT = "CP_GRANT_DISBURSED_KHR", "CP_GRANT_DISBURSED"
# Rounded for principals without indicators:read:detail: every count about children,
# referrals, grants and visits (the riel follow their grant count). Providers and workers
# are not about a child: their distinct counts stay exact.
ROUNDED = frozenset(i.code for i in INDICATORS if i.roll_up is RollUp.sum)
SMALL_CELL_RULE = (
    "For principals without indicators:read:detail, every indicator except the distinct "
    "counts of providers and workers (CP_PROVIDERS, CP_WORKERS_ACTIVE, CP_WORKERS_TRAINED, "
    "CP_CASELOAD_OVER) is published after consistent random rounding to base 5 of its base "
    "cells (one indicator, month, commune and category option combo: the finest grain "
    "kept). A base cell of true value v is published as 5*floor(v/5), plus 5 when "
    "u < (v mod 5)/5, where u in [0, 1) "
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


CellKey = tuple[str, str, str, str]  # (indicator, period code, commune, combo)
