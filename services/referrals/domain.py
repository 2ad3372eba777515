"""Referral rules: the state machine, deadlines, routing, consent, who may see what. No I/O."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

from libs.common import clock, places
from libs.common.auth import COUNTRY, Principal
from libs.common.errors import Conflict, Forbidden, Unprocessable
from libs.common.events.referrals_events import (
    ProviderUpsertedV1,
    ReferralUnmatchedV1,
    ReferralV1,
    ServiceType,
)

SERVICE_TYPES = tuple(t.value for t in ServiceType)
URGENCIES = ("emergency", "high", "normal")
STATUSES = ("pending", "accepted", "declined", "completed", "cancelled")
OPEN_STATUSES = frozenset({"pending", "accepted"})
Record = Mapping[Any, Any]  # a row as the store returns it, or a plain dict


OUTCOME_CODES = ("service_provided", "referred_on", "child_declined", "unreachable", "other")

# How long a provider has to accept, by urgency (docs/api-guide.md).
DEADLINES = {
    "emergency": timedelta(hours=24),
    "high": timedelta(hours=72),
    "normal": timedelta(days=7),
}

# action -> (from state -> to state). Anything not here is a 409.
TRANSITIONS: dict[str, dict[str, str]] = {
    "accept": {"pending": "accepted"},
    "decline": {"pending": "declined"},
    "complete": {"accepted": "completed"},
    "cancel": {"pending": "cancelled", "accepted": "cancelled"},
}


# ---------------------------------------------------------------- state machine


def transition(status: str, action: str) -> str:
    """The state a referral in `status` moves to on `action`, else 409 naming the state."""
    target = TRANSITIONS[action].get(status)
    if target is None:
        allowed = sorted(TRANSITIONS[action])
        raise Conflict(
            f"cannot {action} a referral that is {status}; only a referral that is "
            f"{' or '.join(allowed)} can be {_past(action)}",
            current_state=status,
        )
    return target


def _past(action: str) -> str:
    return {"accept": "accepted", "decline": "declined", "complete": "completed"}.get(
        action, "cancelled"
    )


def load_change(before: str, after: str) -> int:
    """How a transition changes the provider's count of open referrals."""
    return int(after in OPEN_STATUSES) - int(before in OPEN_STATUSES)


def due_at(created_at: datetime, urgency: str) -> datetime:
    """When the provider must have accepted by."""
    return created_at + DEADLINES[urgency]


# ---------------------------------------------------------------- places and access


def place_of(child: Record) -> str:
    """A child's place: its village when known, else its commune."""
    return str(child["village_code"] or child["commune_code"])


Place = str | Sequence[str]  # a gazetteer code, or a path as places.path gives it


def path_of(record: Record) -> tuple[str, ...]:
    """The place of a child or a referral and every place above it, through the commune
    it is listed in (which owns the place, libs.common.access)."""
    return tuple(places.path(record["commune_code"], record["village_code"]))


def _path(place: Place) -> tuple[str, ...]:
    return tuple(places.parents(place)) if isinstance(place, str) else tuple(place)


def locality(areas: Iterable[str], place: Place) -> int | None:
    """How local a provider is to a place: the length of its most local area covering
    the place (village 8, commune 6, district 4, province 2, KH 0), None when none does."""
    around = _path(place)
    best: int | None = None
    for area in areas:
        if area not in around:
            continue
        score = 0 if area == COUNTRY else len(area)
        best = score if best is None else max(best, score)
    return best


def areas_overlap(mine: Iterable[str], theirs: Iterable[str]) -> bool:
    """Whether two sets of areas share any ground (one contains the other somewhere)."""
    theirs = list(theirs)
    return any(
        a == COUNTRY or b == COUNTRY or a.startswith(b) or b.startswith(a)
        for a in mine
        for b in theirs
    )


def may_manage_provider(principal: Principal, org: str, areas: Iterable[str]) -> None:
    """403 unless every served area lies inside the principal's areas, and a partner
    manages only its own organisation's providers."""
    for area in areas:
        if not principal.covers(area):
            raise Forbidden(f"area {area} is outside your areas")
    if principal.is_partner and org != principal.org:
        raise Forbidden("a partner organisation manages only its own providers")


def may_respond(principal: Principal, referral: Record) -> None:
    """403 unless the principal belongs to the provider's organisation."""
    if principal.org != referral["provider_org"]:
        raise Forbidden("only the provider's organisation responds to this referral")


def may_cancel(principal: Principal, referral: Record) -> None:
    """403 unless the principal is of the referring organisation, or government covering
    the child's place."""
    if principal.org == referral["referrer_org"]:
        return
    if not principal.is_partner and principal.covers_place(
        referral["commune_code"], referral["village_code"]
    ):
        return
    raise Forbidden("only the referring organisation or government staff may cancel")


# ---------------------------------------------------------------- consent


def consent_override(principal: Principal, consent_given: bool, justification: str | None) -> bool:
    """Whether this referral overrides missing consent (403/422 when it may not)."""
    if consent_given:
        return False
    if principal.is_partner:
        raise Forbidden(
            "the child's caregiver has not consented to data sharing; "
            "only a government principal may override that, with a justification"
        )
    if not justification:
        raise Unprocessable(
            "the child's caregiver has not consented to data sharing; "
            "send consent_override.justification to override it",
            errors=[{"field": "consent_override", "message": "required without consent"}],
        )
    return True


# ---------------------------------------------------------------- routing


@dataclass(frozen=True)
class Candidate:
    """A provider as routing sees it."""

    id: uuid.UUID
    active: bool
    service_types: tuple[str, ...]
    areas: tuple[str, ...]
    capacity: int
    open_referrals: int

    @classmethod
    def of(cls, row: Record) -> Candidate:
        return cls(
            id=row["id"],
            active=bool(row["active"]),
            service_types=tuple(row["service_types"]),
            areas=tuple(row["areas"]),
            capacity=int(row["capacity"]),
            open_referrals=int(row["open_referrals"]),
        )

    @property
    def full(self) -> bool:
        return self.open_referrals >= self.capacity

    @property
    def load(self) -> Fraction:
        return Fraction(self.open_referrals, self.capacity) if self.capacity else Fraction(1)


def ineligibility(candidate: Candidate, service_type: str, place: Place) -> str | None:
    """Why a provider cannot take a referral for this service at this place, or None."""
    if locality(candidate.areas, place) is None:
        return f"the provider does not serve {_path(place)[0]}"
    if not candidate.active:
        return "the provider is not active"
    if service_type not in candidate.service_types:
        return f"the provider does not offer {service_type}"
    if candidate.full:
        return "the provider is full (its open referrals reached its capacity)"
    return None


def rank_providers(
    candidates: Iterable[Candidate],
    service_type: str,
    place: Place,
    exclude: Iterable[uuid.UUID] = (),
) -> list[Candidate]:
    """Providers that may take the referral, best first: the most local area, then the
    lowest load relative to capacity, then by id (stable)."""
    skip = set(exclude)
    eligible = [
        c for c in candidates if c.id not in skip and ineligibility(c, service_type, place) is None
    ]
    return sorted(eligible, key=lambda c: (-(locality(c.areas, place) or 0), c.load, str(c.id)))


@dataclass(frozen=True)
class UnmetNeed:
    """A referral routing found no provider for: the child, the service, its urgency and the
    child's place (ids and codes only)."""

    child_id: uuid.UUID
    service_type: str
    urgency: str
    commune_code: str
    village_code: str | None

    @classmethod
    def of(cls, child: Record, service_type: str, urgency: str) -> UnmetNeed:
        return cls(
            child_id=child["id"],
            service_type=service_type,
            urgency=urgency,
            commune_code=child["commune_code"],
            village_code=child["village_code"],
        )


class NoProvider(Unprocessable):
    """422 naming the gap: which service, at which place. It carries the unmet need, which
    the referrals service counts once the request's own work is rolled back; the answer
    never shows it."""

    def __init__(self, need: UnmetNeed, place: str) -> None:
        name = places.name_en(place) or place
        super().__init__(
            f"no active provider of {need.service_type} with free capacity serves {name} ({place})",
            errors=[{"field": "service_type", "message": f"no provider available at {place}"}],
            service_type=need.service_type,
            place_code=place,
            place_name=name,
        )
        self.need = need


def no_provider(need: UnmetNeed, place: str) -> NoProvider:
    """422 naming the gap (the child's place as `place_of` gives it), with the unmet need."""
    return NoProvider(need, place)


def need_month(at: datetime) -> str:
    """The month (`YYYY-MM`, Cambodia time) an unmet need counts in: one per child, service
    type and month, however often routing fails for it."""
    return at.astimezone(clock.CAMBODIA).strftime("%Y-%m")


def unmatched_need_row(need: UnmetNeed, at: datetime) -> dict[str, Any]:
    """An unmet need as its row (`unmatched_needs`), routing having failed for it at `at`."""
    return {
        "child_id": need.child_id,
        "service_type": need.service_type,
        "month": need_month(at),
        "urgency": need.urgency,
        "commune_code": need.commune_code,
        "village_code": need.village_code,
        "occurred_at": at,
    }


def named_provider_problem(reason: str) -> Unprocessable:
    """422 for a provider_id that cannot take this referral."""
    return Unprocessable(
        f"provider_id: {reason}", errors=[{"field": "provider_id", "message": reason}]
    )


# ---------------------------------------------------------------- events


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def referral_event_data(referral: Record) -> ReferralV1:
    """What events may say about a referral: codes and states, never its free text."""
    previous = referral["previous_referral_id"]
    return ReferralV1(
        referral_id=str(referral["id"]),
        child_id=str(referral["child_id"]),
        commune_code=referral["commune_code"],
        village_code=referral["village_code"],
        service_type=referral["service_type"],
        urgency=referral["urgency"],
        status=referral["status"],
        provider_id=str(referral["provider_id"]),
        provider_org=referral["provider_org"],
        referrer_org=referral["referrer_org"],
        previous_referral_id=str(previous) if previous else None,
        due_at=_iso(referral["due_at"]),
        overdue=bool(referral["overdue"]),
        consent_override=bool(referral["consent_override"]),
        outcome_code=referral["outcome_code"] if referral["status"] == "completed" else None,
        version=referral["version"],
    )


def unmatched_event_data(need: Record) -> ReferralUnmatchedV1:
    """What events may say about an unmet need: the child's id and place codes, the service
    and the urgency; never the reason the referral was asked for, nor who asked."""
    return ReferralUnmatchedV1(
        child_id=str(need["child_id"]),
        service_type=need["service_type"],
        urgency=need["urgency"],
        commune_code=need["commune_code"],
        village_code=need["village_code"],
        occurred_at=_iso(need["occurred_at"]),
    )


def provider_event_data(provider: Record) -> ProviderUpsertedV1:
    """What events may say about a provider: no name, no contact."""
    return ProviderUpsertedV1(
        provider_id=str(provider["id"]),
        org=provider["org"],
        service_types=sorted(provider["service_types"]),
        areas=sorted(provider["areas"]),
        capacity=provider["capacity"],
        active=provider["active"],
        version=provider["version"],
    )


def unique_sorted(values: Sequence[str]) -> list[str]:
    """A set as a stable list."""
    return sorted(set(values))
