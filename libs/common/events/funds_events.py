"""Events the funds service publishes: ids, codes, amounts and states only.

No fund names, justifications, reasons, item descriptions or payment references: those are
free text and stay in the funds service's own tables.
"""

from __future__ import annotations

from enum import StrEnum

from libs.common.events.base import EventData


class Category(StrEnum):
    emergency_disaster = "emergency_disaster"
    education_support = "education_support"
    medical_transport = "medical_transport"
    material_support = "material_support"


class FundV1(EventData):
    """A fund and its balances, in whole riel."""

    fund_id: str
    commune_code: str  # the fund's area: a commune, district or province code
    fiscal_year: int
    budget_khr: int
    max_grant_khr: int
    approval_threshold_khr: int
    topped_up_khr: int
    committed_khr: int
    disbursed_khr: int
    available_khr: int
    version: int


class FundToppedUpV1(FundV1):
    """A fund after a top-up of `amount_khr`."""

    amount_khr: int


class GrantV1(EventData):
    """A grant as other services may know it; placed at the child's commune."""

    grant_id: str
    fund_id: str
    child_id: str
    commune_code: str  # the child's commune when the grant was requested
    category: str
    shock: str | None
    amount_khr: int
    status: str
    repeat_within_30_days: bool
    version: int
    # The organisation that requested it (an id, not personal data): a partner sees the
    # grants it requested (libs.common.access). Absent from events published before it.
    requested_org: str | None = None


class GrantDisbursedV1(GrantV1):
    """A grant paid out, and how (never the payment reference)."""

    method: str


FUNDS_EVENTS: dict[str, type[EventData]] = {
    "funds.fund.created.v1": FundV1,
    "funds.fund.topped_up.v1": FundToppedUpV1,
    "funds.grant.requested.v1": GrantV1,
    "funds.grant.approved.v1": GrantV1,
    "funds.grant.rejected.v1": GrantV1,
    "funds.grant.disbursed.v1": GrantDisbursedV1,
    "funds.grant.cancelled.v1": GrantV1,
    "funds.grant.reversed.v1": GrantV1,
}
