"""Events the registry publishes (docs/api-guide.md#events): ids, codes, sex, birth month,
vulnerabilities, risk level and states only.

No name, caregiver, phone number, consent giver or close reason ever travels: those are
personal data and stay in the registry's own tables.
"""

from __future__ import annotations

from enum import StrEnum

from libs.common.events.base import EventData


class Vulnerability(StrEnum):
    poor_household = "poor_household"
    hiv_affected = "hiv_affected"
    disability = "disability"
    out_of_school = "out_of_school"
    child_labour = "child_labour"
    institutional_care = "institutional_care"
    unsafe_migration = "unsafe_migration"
    abandonment = "abandonment"
    exploitation = "exploitation"
    violence = "violence"
    neglect = "neglect"


class ChildV1(EventData):
    """A child as other services may know it."""

    child_id: str
    case_number: str
    commune_code: str
    village_code: str | None
    sex: str
    birth_month: str  # YYYY-MM
    vulnerabilities: list[str]
    risk_level: str
    status: str
    owner_org: str
    data_sharing_consent: bool
    version: int
    registered_on: str  # YYYY-MM-DD, the registration date
    # Where the child lives (docs/api-guide.md#a-child-record); events published before it
    # existed mean `family`.
    care_setting: str = "family"


class ChildUpdatedV1(ChildV1):
    """A child after a change; `changed` names the fields (never their values)."""

    changed: list[str]


class CareSetting(StrEnum):
    family = "family"
    kinship = "kinship"
    foster = "foster"
    group_home = "group_home"
    residential_institution = "residential_institution"
    independent = "independent"
    unknown = "unknown"


# A move from residential care into one of these is a reintegration.
REINTEGRATED_INTO = frozenset({CareSetting.family, CareSetting.kinship, CareSetting.foster})


class ChildReintegratedV1(ChildV1):
    """A child moved from a residential institution into a family, kinship or foster
    care setting (published beside the `updated` event of the same change)."""

    from_care_setting: str
    reintegrated_on: str  # YYYY-MM-DD, the day of the move (Asia/Phnom_Penh)


REGISTRY_EVENTS: dict[str, type[EventData]] = {
    "registry.child.registered.v1": ChildV1,
    "registry.child.updated.v1": ChildUpdatedV1,
    "registry.child.closed.v1": ChildV1,
    "registry.child.reopened.v1": ChildV1,
    "registry.child.reintegrated.v1": ChildReintegratedV1,
}
