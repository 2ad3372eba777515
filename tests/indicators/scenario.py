"""The scripted scenario: a year of child protection in two provinces (events only).

Places: communes A=120101 and B=120109 (district 1201, Phnom Penh), C=120201 (district
1202, Phnom Penh), D=170101 (district 1701, Siem Reap). Times are chosen around Cambodia's
UTC+7 month boundaries; some events are published out of order on purpose.
"""

from __future__ import annotations

from typing import Any

from libs.common.events import CloudEvent
from tests.indicators.conftest import (
    child_event,
    fund_events,
    grant_event,
    provider_event,
    referral_event,
    unmatched_event,
    uuid_of,
)

A, B, C, D = "120101", "120109", "120201", "170101"
DISTRICT_1201 = ["120101", "120109", "120110", "120111", "120112"]


def scenario_events() -> list[CloudEvent]:
    c = {n: uuid_of(f"child-{n}") for n in range(1, 7)}

    def child(verb: str, n: int, **kw: Any) -> CloudEvent:
        return child_event(verb, c[n], **{**CHILDREN[n], **kw})

    CHILDREN: dict[int, dict[str, Any]] = {
        1: {"commune": A, "sex": "female", "birth": "2020-06", "registered_on": "2025-01-15"},
        2: {"commune": A, "sex": "male", "birth": "2010-03", "registered_on": "2025-02-10"},
        3: {"commune": B, "sex": "female", "birth": "2015-01", "registered_on": "2025-03-05"},
        4: {"commune": C, "sex": "male", "birth": "2008-12", "registered_on": "2025-03-20"},
        5: {"commune": D, "sex": "female", "birth": "2024-11", "registered_on": "2025-04-02"},
        6: {"commune": D, "sex": "male", "birth": "2012-07", "registered_on": "2025-01-30"},
    }
    registry = [
        child(
            "registered",
            1,
            version=1,
            when="2025-01-15T03:00:00Z",
            risk="high",
            vulnerabilities=["poor_household"],
        ),
        child(
            "updated",
            1,
            version=2,
            when="2025-02-20T03:00:00Z",
            risk="medium",
            vulnerabilities=["poor_household", "violence"],
        ),
        child("registered", 2, version=1, when="2025-02-10T03:00:00Z"),
        # reopened (v3, June) arrives before closed (v2, 00:30 on 1 April in Cambodia)
        child("reopened", 2, version=3, when="2025-06-10T03:00:00Z"),
        child("closed", 2, version=2, when="2025-03-31T17:30:00Z", status="closed"),
        # an update arrives before the registration it follows
        child(
            "updated",
            3,
            version=2,
            when="2025-05-05T03:00:00Z",
            risk="high",
            vulnerabilities=["disability", "out_of_school"],
        ),
        child(
            "registered",
            3,
            version=1,
            when="2025-03-05T03:00:00Z",
            risk="medium",
            vulnerabilities=["disability", "out_of_school"],
        ),
        child(
            "registered",
            4,
            version=1,
            when="2025-03-20T03:00:00Z",
            risk="medium",
            vulnerabilities=["child_labour"],
        ),
        child(
            "closed",
            4,
            version=2,
            when="2025-08-01T03:00:00Z",
            status="closed",
            risk="medium",
            vulnerabilities=["child_labour"],
        ),
        child(
            "registered", 5, version=1, when="2025-04-02T03:00:00Z", vulnerabilities=["abandonment"]
        ),
        child(
            "registered",
            6,
            version=1,
            when="2025-01-30T03:00:00Z",
            vulnerabilities=["poor_household"],
        ),
        child(
            "updated",
            6,
            version=2,
            when="2025-03-03T03:00:00Z",
            risk="high",
            vulnerabilities=["poor_household"],
        ),
    ]

    def ref(
        verb: str, name: str, n: int, commune: str, st: str, v: int, when: str, **kw: Any
    ) -> CloudEvent:
        return referral_event(
            verb,
            uuid_of(name),
            child_id=c[n],
            commune=commune,
            service_type=st,
            version=v,
            when=when,
            **kw,
        )

    def unmatched(n: int, commune: str, st: str, at: str, **kw: Any) -> CloudEvent:
        return unmatched_event(c[n], commune=commune, service_type=st, occurred_at=at, **kw)

    r3_due = "2025-03-31T16:30:00+00:00"  # 23:30 on 31 March in Cambodia
    r4_due = "2025-04-03T17:30:00+00:00"
    referrals = [
        ref("created", "r1", 1, A, "health", 1, "2025-01-20T03:00:00Z"),
        ref("accepted", "r1", 1, A, "health", 2, "2025-01-22T03:00:00Z"),
        ref("completed", "r1", 1, A, "health", 3, "2025-03-10T03:00:00Z"),
        ref("created", "r2", 2, A, "education", 1, "2025-02-11T03:00:00Z"),
        ref("declined", "r2", 2, A, "education", 2, "2025-02-12T02:00:00Z"),
        ref("created", "r2b", 2, A, "education", 1, "2025-02-12T02:00:00Z", previous=uuid_of("r2")),
        ref("accepted", "r2b", 2, A, "education", 2, "2025-02-14T03:00:00Z"),
        ref("cancelled", "r2b", 2, A, "education", 3, "2025-02-20T03:00:00Z"),
        ref("created", "r3", 3, B, "psychosocial", 1, "2025-03-06T03:00:00Z", due_at=r3_due),
        # flagged at 00:10 on 1 April, Cambodia: counted in March, when it went overdue
        ref("overdue", "r3", 3, B, "psychosocial", 2, "2025-03-31T17:10:00Z", due_at=r3_due),
        ref("created", "r4", 4, C, "legal", 1, "2025-03-31T18:00:00Z", due_at=r4_due),
        ref("overdue", "r4", 4, C, "legal", 2, "2025-04-03T17:31:00Z", due_at=r4_due),
        ref("accepted", "r4", 4, C, "legal", 3, "2025-04-05T03:00:00Z", due_at=r4_due),
        ref("created", "r5", 5, D, "health", 1, "2025-04-03T03:00:00Z"),
        ref("accepted", "r5", 5, D, "health", 2, "2025-04-04T03:00:00Z"),
        ref("completed", "r5", 5, D, "health", 3, "2025-04-10T03:00:00Z"),
        # referrals that found no provider: once per child, service type and month
        unmatched(1, A, "shelter", "2025-02-05T03:00:00Z"),
        # 00:30 on 1 March in Cambodia (published a little later): March
        unmatched(2, A, "shelter", "2025-02-28T17:30:00Z", when="2025-02-28T17:30:01Z"),
        unmatched(1, A, "shelter", "2025-03-12T03:00:00Z"),  # still unmet a month later
        unmatched(4, C, "legal", "2025-03-25T03:00:00Z"),
        unmatched(5, D, "shelter", "2025-04-02T04:00:00Z"),
        provider_event(
            uuid_of("p1"),
            areas=["1201"],
            service_types=["health", "education"],
            version=1,
            when="2025-01-01T00:00:00Z",
        ),
        # p2's deactivation (v2) arrives before its creation (v1)
        provider_event(
            uuid_of("p2"),
            areas=[A],
            service_types=["health"],
            version=2,
            when="2025-03-15T03:00:00Z",
            active=False,
        ),
        provider_event(
            uuid_of("p2"),
            areas=[A],
            service_types=["health"],
            version=1,
            when="2025-01-05T03:00:00Z",
        ),
        provider_event(
            uuid_of("p3"),
            areas=["KH"],
            service_types=["legal"],
            version=1,
            when="2025-02-01T03:00:00Z",
        ),
        provider_event(
            uuid_of("p4"),
            areas=["17"],
            service_types=["health"],
            version=1,
            when="2025-01-10T03:00:00Z",
        ),
    ]

    def grant(
        verb: str, name: str, n: int, commune: str, category: str, amount: int, v: int, when: str
    ) -> CloudEvent:
        return grant_event(
            verb,
            uuid_of(name),
            child_id=c[n],
            commune=commune,
            category=category,
            amount=amount,
            version=v,
            when=when,
        )

    funds = [
        *fund_events(A, "2025-01-02T03:00:00Z"),
        grant("requested", "g1", 1, A, "emergency_disaster", 200_000, 1, "2025-01-25T03:00:00Z"),
        grant("approved", "g1", 1, A, "emergency_disaster", 200_000, 2, "2025-01-26T03:00:00Z"),
        grant("disbursed", "g1", 1, A, "emergency_disaster", 200_000, 3, "2025-02-02T03:00:00Z"),
        grant("requested", "g2", 3, B, "education_support", 50_000, 1, "2025-03-07T03:00:00Z"),
        grant("approved", "g2", 3, B, "education_support", 50_000, 2, "2025-03-08T03:00:00Z"),
        grant("disbursed", "g2", 3, B, "education_support", 50_000, 3, "2025-03-09T03:00:00Z"),
        grant("reversed", "g2", 3, B, "education_support", 50_000, 4, "2025-03-15T03:00:00Z"),
        grant("requested", "g3", 4, C, "medical_transport", 30_000, 1, "2025-03-22T03:00:00Z"),
        grant("rejected", "g3", 4, C, "medical_transport", 30_000, 2, "2025-03-25T03:00:00Z"),
        grant("requested", "g4", 5, D, "material_support", 80_000, 1, "2025-04-03T01:00:00Z"),
        grant("approved", "g4", 5, D, "material_support", 80_000, 2, "2025-04-03T03:00:00Z"),
        grant("cancelled", "g4", 5, D, "material_support", 80_000, 3, "2025-04-04T03:00:00Z"),
        grant("requested", "g5", 6, D, "emergency_disaster", 120_000, 1, "2025-02-01T03:00:00Z"),
        grant("approved", "g5", 6, D, "emergency_disaster", 120_000, 2, "2025-02-02T01:00:00Z"),
        grant("disbursed", "g5", 6, D, "emergency_disaster", 120_000, 3, "2025-02-03T03:00:00Z"),
    ]
    # Funds first, then referrals, then the registry: the streams are independent.
    return funds + referrals + registry
