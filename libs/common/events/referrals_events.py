"""Events the referrals service publishes: ids, codes, amounts and states only.

No name, contact, reason, justification or note ever travels: a provider event carries
no name or contact, a referral event carries the outcome's code but never its note, and
only whether consent was overridden, never why; an unmatched referral carries the child's
id and place codes, the service and the urgency, never the reason it was asked for.
"""

from __future__ import annotations

from enum import StrEnum

from libs.common.events.base import EventData


class ServiceType(StrEnum):
    health = "health"
    education = "education"
    shelter = "shelter"
    legal = "legal"
    psychosocial = "psychosocial"
    family_tracing = "family_tracing"
    social_protection = "social_protection"
    alternative_care = "alternative_care"
    livelihood = "livelihood"


class ProviderUpsertedV1(EventData):
    """A service provider as other services may know it (created or changed)."""

    provider_id: str
    org: str
    service_types: list[str]
    areas: list[str]  # gazetteer codes it serves, KH for the whole country
    capacity: int
    active: bool
    version: int


class ReferralV1(EventData):
    """A referral after a change of state (or of its overdue flag).

    `commune_code`/`village_code` are the child's place when referred (indicators count
    there); `provider_org` is the organisation whose principals respond to it, so the
    registry can let that organisation read the child while the referral is accepted.
    """

    referral_id: str
    child_id: str
    commune_code: str
    village_code: str | None
    service_type: str
    urgency: str
    status: str
    provider_id: str
    provider_org: str
    referrer_org: str
    previous_referral_id: str | None
    due_at: str  # RFC 3339
    overdue: bool
    consent_override: bool
    outcome_code: str | None = None  # set on completed
    version: int


class ReferralUnmatchedV1(EventData):
    """A referral Komar was asked to route that found no provider (no active provider of the
    service with free capacity serves the child's place): the unmet need, published once per
    child, service type and month (Cambodia time), however often the referral was asked for.

    `commune_code`/`village_code` are the child's place when asked (indicators count there);
    `occurred_at` is when routing first found no provider for it that month (the month it
    counts in).
    """

    child_id: str
    service_type: str
    urgency: str
    commune_code: str
    village_code: str | None
    occurred_at: str  # RFC 3339


REFERRALS_EVENTS: dict[str, type[EventData]] = {
    "referrals.provider.upserted.v1": ProviderUpsertedV1,
    "referrals.referral.created.v1": ReferralV1,
    "referrals.referral.accepted.v1": ReferralV1,
    "referrals.referral.declined.v1": ReferralV1,
    "referrals.referral.completed.v1": ReferralV1,
    "referrals.referral.cancelled.v1": ReferralV1,
    "referrals.referral.overdue.v1": ReferralV1,
    "referrals.referral.unmatched.v1": ReferralUnmatchedV1,
}
