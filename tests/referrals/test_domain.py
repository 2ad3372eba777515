"""The referral rules alone: state machine, deadlines, routing order, consent, access."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from libs.common.auth import Principal
from libs.common.errors import Conflict, Forbidden, Unprocessable
from services.referrals import domain
from services.referrals.domain import Candidate

LEGAL = {
    ("pending", "accept"): "accepted",
    ("pending", "decline"): "declined",
    ("pending", "cancel"): "cancelled",
    ("accepted", "complete"): "completed",
    ("accepted", "cancel"): "cancelled",
}


@pytest.mark.parametrize("status", domain.STATUSES)
@pytest.mark.parametrize("action", sorted(domain.TRANSITIONS))
def test_every_pair_of_state_and_action(status: str, action: str) -> None:
    if (status, action) in LEGAL:
        assert domain.transition(status, action) == LEGAL[(status, action)]
    else:
        with pytest.raises(Conflict) as exc:
            domain.transition(status, action)
        assert exc.value.extra["current_state"] == status
        assert status in exc.value.detail


def test_load_counts_only_open_referrals() -> None:
    assert domain.load_change("pending", "accepted") == 0
    assert domain.load_change("pending", "declined") == -1
    assert domain.load_change("accepted", "completed") == -1
    assert domain.load_change("accepted", "cancelled") == -1


def test_deadlines_follow_urgency() -> None:
    t = datetime(2026, 3, 1, 8, tzinfo=UTC)
    assert domain.due_at(t, "emergency") - t == timedelta(hours=24)
    assert domain.due_at(t, "high") - t == timedelta(hours=72)
    assert domain.due_at(t, "normal") - t == timedelta(days=7)


def test_locality_prefers_the_most_local_area() -> None:
    place = "12010101"
    assert domain.locality(["12010101"], place) == 8
    assert domain.locality(["120101", "12"], place) == 6
    assert domain.locality(["1201"], place) == 4
    assert domain.locality(["KH"], place) == 0
    assert domain.locality(["120102", "13"], place) is None


def candidate(areas: list[str], *, open_: int = 0, capacity: int = 5, **kw: object) -> Candidate:
    fields: dict = {
        "id": uuid.uuid4(),
        "active": True,
        "service_types": ("health",),
        "areas": tuple(areas),
        "capacity": capacity,
        "open_referrals": open_,
        **kw,
    }
    return Candidate(**fields)


def test_routing_order_locality_then_relative_load_then_id() -> None:
    place = "12010101"
    village = candidate(["12010101"], open_=4, capacity=5)
    commune_busy = candidate(["120101"], open_=1, capacity=2)
    commune_idle = candidate(["120101"], open_=1, capacity=10)
    district = candidate(["1201"])
    tie_a, tie_b = candidate(["12"]), candidate(["12"])
    ranked = domain.rank_providers(
        [tie_b, district, commune_busy, tie_a, village, commune_idle], "health", place
    )
    ties = sorted([tie_a, tie_b], key=lambda c: str(c.id))
    assert ranked == [village, commune_idle, commune_busy, district, *ties]


def test_routing_skips_full_inactive_foreign_and_excluded_providers() -> None:
    place = "12010101"
    full = candidate(["12010101"], open_=5, capacity=5)
    zero = candidate(["12010101"], capacity=0)
    inactive = candidate(["12010101"], active=False)
    other_service = candidate(["12010101"], service_types=("legal",))
    elsewhere = candidate(["120102"])
    declined_before = candidate(["120101"])
    ok = candidate(["KH"])
    ranked = domain.rank_providers(
        [full, zero, inactive, other_service, elsewhere, declined_before, ok],
        "health",
        place,
        exclude=[declined_before.id],
    )
    assert ranked == [ok]
    assert "full" in (domain.ineligibility(full, "health", place) or "")
    assert "not active" in (domain.ineligibility(inactive, "health", place) or "")
    assert "does not offer" in (domain.ineligibility(other_service, "health", place) or "")
    assert "does not serve" in (domain.ineligibility(elsewhere, "health", place) or "")


def test_no_provider_names_the_service_and_the_place() -> None:
    need = domain.UnmetNeed(uuid.uuid4(), "shelter", "high", "120101", "12010101")
    problem = domain.no_provider(need, "120101")
    assert problem.status == 422
    assert "shelter" in problem.detail
    assert "Tonle Basak (120101)" in problem.detail
    assert problem.need == need
    assert set(problem.body()) == {
        "type",
        "title",
        "status",
        "detail",
        "errors",
        "service_type",
        "place_code",
        "place_name",
    }  # the need is counted, never answered


def test_an_unmet_need_counts_in_its_month_in_cambodia() -> None:
    need = domain.UnmetNeed(uuid.uuid4(), "legal", "normal", "120101", None)
    # 23:30 on 31 March UTC is 06:30 on 1 April in Cambodia
    late = datetime(2026, 3, 31, 23, 30, tzinfo=UTC)
    assert domain.need_month(late) == "2026-04"
    assert domain.need_month(datetime(2026, 3, 31, 16, 59, tzinfo=UTC)) == "2026-03"
    row = domain.unmatched_need_row(need, late)
    assert (row["child_id"], row["service_type"], row["month"]) == (
        need.child_id,
        "legal",
        "2026-04",
    )
    data = domain.unmatched_event_data(row).model_dump()
    assert data == {
        "child_id": str(need.child_id),
        "service_type": "legal",
        "urgency": "normal",
        "commune_code": "120101",
        "village_code": None,
        "occurred_at": "2026-03-31T23:30:00Z",
    }


def principal(org_type: str = "government", areas: tuple[str, ...] = ("12",)) -> Principal:
    return Principal("u", "org-a", org_type, frozenset(), areas)


def test_consent_override_rules() -> None:
    assert domain.consent_override(principal(), True, None) is False
    assert domain.consent_override(principal("partner"), True, "x") is False
    assert domain.consent_override(principal(), False, "danger") is True
    with pytest.raises(Unprocessable):
        domain.consent_override(principal(), False, None)
    with pytest.raises(Forbidden):
        domain.consent_override(principal("partner"), False, "danger")


def test_who_may_manage_respond_and_cancel() -> None:
    domain.may_manage_provider(principal(), "any-ngo", ["1201", "12010101"])
    with pytest.raises(Forbidden):
        domain.may_manage_provider(principal(), "any-ngo", ["13"])
    with pytest.raises(Forbidden):
        domain.may_manage_provider(principal(areas=("12",)), "any-ngo", ["KH"])
    with pytest.raises(Forbidden):
        domain.may_manage_provider(principal("partner"), "other-ngo", ["12"])
    referral = {
        "provider_org": "clinic",
        "referrer_org": "org-a",
        "commune_code": "120101",
        "village_code": "12010101",
    }
    with pytest.raises(Forbidden):
        domain.may_respond(principal(), referral)
    domain.may_cancel(principal("partner"), referral)  # the referrer's own organisation
    domain.may_cancel(Principal("g", "gov-b", "government", frozenset(), ("1201",)), referral)
    with pytest.raises(Forbidden):
        domain.may_cancel(Principal("c", "clinic", "partner", frozenset(), ("12",)), referral)


def test_areas_overlap_either_way() -> None:
    assert domain.areas_overlap(["12"], ["12010101"])
    assert domain.areas_overlap(["12010101"], ["1201"])
    assert domain.areas_overlap(["KH"], ["01"])
    assert not domain.areas_overlap(["120101"], ["120102", "13"])
