"""Request and response models of the funds API (input models reject unknown fields).

Money is whole riel: `StrictInt`, so a float (`100000.5`, even `1e5`), a string or a boolean
is refused, and amounts must be above zero.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, Field, StrictInt, StringConstraints, model_validator

from libs.common import places
from libs.common.events.funds_events import Category
from libs.common.inputs import FUND_PLACE_PATTERN, MULTI_LINE, Input

# A bound far above any fund (10^15 riel), so sums can never overflow a BIGINT.
MAX_KHR = 10**15

Amount = Annotated[StrictInt, Field(gt=0, le=MAX_KHR)]
Riel = Annotated[StrictInt, Field(ge=0, le=MAX_KHR)]
FundCode = Annotated[str, StringConstraints(pattern=FUND_PLACE_PATTERN)]
Reference = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=100, pattern=r"^[\x21-\x7e ]+$"
    ),
]
# Free text of several lines.
Reason = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500), MULTI_LINE
]
Text = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000), MULTI_LINE
]


class Shock(StrEnum):
    flood = "flood"
    storm = "storm"
    fire = "fire"
    drought = "drought"
    other = "other"


class Method(StrEnum):
    cash = "cash"
    bank = "bank"
    mobile_money = "mobile_money"


class GrantStatus(StrEnum):
    requested = "requested"
    approved = "approved"
    rejected = "rejected"
    disbursed = "disbursed"
    cancelled = "cancelled"
    reversed = "reversed"


class LedgerKind(StrEnum):
    top_up = "top_up"
    commitment = "commitment"
    release = "release"
    disbursement = "disbursement"
    reversal = "reversal"


class FundIn(Input):
    """A new fund. `commune_code` may also be a district or province code."""

    commune_code: FundCode
    fiscal_year: Annotated[StrictInt, Field(ge=2000, le=2100)]
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    budget_khr: Riel
    max_grant_khr: Amount
    approval_threshold_khr: Riel

    @model_validator(mode="after")
    def _place(self) -> FundIn:
        if not places.exists(self.commune_code):
            raise ValueError("commune_code is not in the gazetteer")
        return self


class TopUpIn(Input):
    amount_khr: Amount
    reference: Reference


class ItemIn(Input):
    description: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)
    ]
    quantity: Annotated[StrictInt, Field(gt=0, le=10_000)]
    unit_cost_khr: Amount


class GrantIn(Input):
    """A grant request. Disasters name the shock; material support lists what is bought."""

    child_id: uuid.UUID
    fund_id: uuid.UUID
    category: Category
    shock: Shock | None = None
    items: list[ItemIn] | None = Field(default=None, min_length=1, max_length=50)
    amount_khr: Amount
    justification: Text | None = None

    @model_validator(mode="after")
    def _by_category(self) -> GrantIn:
        if self.category is Category.emergency_disaster and self.shock is None:
            raise ValueError("shock is required for emergency_disaster")
        if self.category is not Category.emergency_disaster and self.shock is not None:
            raise ValueError("shock is only for emergency_disaster")
        if self.category is Category.material_support:
            if not self.items:
                raise ValueError("items are required for material_support")
            total = sum(i.quantity * i.unit_cost_khr for i in self.items)
            if total != self.amount_khr:
                raise ValueError(f"the items cost {total} riel but amount_khr is {self.amount_khr}")
        elif self.items is not None:
            raise ValueError("items are only for material_support")
        return self


class ApproveIn(Input):
    pass


class RejectIn(Input):
    reason: Reason


class CancelIn(Input):
    reason: Reason | None = None


class ReverseIn(Input):
    reason: Reason


class DisburseIn(Input):
    method: Method
    reference: Reference


# ---------------------------------------------------------------- answers (documentation)


class Actor(BaseModel):
    sub: str
    org: str


class FundOut(BaseModel):
    """A fund and its balances (riel)."""

    id: str
    commune_code: str
    fiscal_year: int
    name: str
    budget_khr: int
    max_grant_khr: int
    approval_threshold_khr: int
    topped_up_khr: int
    committed_khr: int
    disbursed_khr: int
    available_khr: int
    created_by: Actor
    created_at: datetime
    updated_at: datetime
    version: int


class FundPage(BaseModel):
    items: list[FundOut]
    next_cursor: str | None


class LedgerEntryOut(BaseModel):
    id: int
    kind: LedgerKind
    amount_khr: int
    grant_id: str | None
    method: Method | None
    reference: str | None
    at: datetime
    by: Actor


class LedgerPage(BaseModel):
    items: list[LedgerEntryOut]
    next_cursor: str | None


class ApprovalOut(BaseModel):
    by: Actor
    district_level: bool
    at: datetime


class ActionOut(BaseModel):
    action: str
    by: Actor
    at: datetime
    reason: str | None
    request_id: str


class DisbursementOut(BaseModel):
    method: Method
    reference: str
    at: datetime


class ItemOut(BaseModel):
    description: str
    quantity: int
    unit_cost_khr: int


class GrantOut(BaseModel):
    """A grant with who approved it and everything done to it."""

    id: str
    fund_id: str
    child_id: str
    commune_code: str
    category: Category
    shock: Shock | None
    items: list[ItemOut] | None
    amount_khr: int
    justification: str | None
    status: GrantStatus
    repeat_within_30_days: bool
    requested_by: Actor
    approvals_required: int
    approvals: list[ApprovalOut]
    disbursement: DisbursementOut | None
    history: list[ActionOut]
    created_at: datetime
    updated_at: datetime
    version: int


class GrantPage(BaseModel):
    items: list[GrantOut]
    next_cursor: str | None


class Tally(BaseModel):
    count: int
    amount_khr: int


class TotalsOut(BaseModel):
    topped_up_khr: int
    committed_khr: int
    disbursed_khr: int
    available_khr: int


class ReconciliationOut(BaseModel):
    """A fund's row, ledger and grants side by side, and whether they agree."""

    fund_id: str
    budget_khr: int
    fund: TotalsOut
    ledger: TotalsOut
    ledger_by_kind: dict[LedgerKind, Tally]
    grants_by_status: dict[GrantStatus, Tally]
    grants_by_category: dict[Category, Tally]
    problems: list[str]
    balanced: bool
