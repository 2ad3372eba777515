"""The children the bench registers: distinct, valid and spread over every commune."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

GIVEN = ["Sokha", "Dara", "Sreymom", "Vanna", "Bopha", "Rithy", "Chenda", "Piseth", "Kanha"]
FAMILY = ["Chan", "Sok", "Kim", "Heng", "Meas", "Ouk", "Prak", "Touch", "Yim", "Nhem"]
SYLLABLES = ["ra", "ny", "tha", "vy", "ka", "mon", "lis", "sa", "vath", "rith", "dy", "na"]
VULNERABILITIES = ["poor_household", "out_of_school", "disability", "neglect", "child_labour"]


def child_bodies(count: int, seed: int, commune: str | None = None) -> list[dict[str, Any]]:
    """Distinct, valid children spread over every commune (as a national partner sync would),
    or all in `commune` (as a commune worker registering their own commune's children)."""
    from libs.common.places import all_communes

    rng = random.Random(seed)
    communes = all_communes()
    today = dt.date.today()
    bodies = []
    for _ in range(count):
        suffix = "".join(rng.choice(SYLLABLES) for _ in range(2))
        bodies.append(
            {
                "given_name": rng.choice(GIVEN) + suffix,
                "family_name": rng.choice(FAMILY),
                "sex": rng.choice(["female", "male"]),
                "birth_date": (today - dt.timedelta(days=rng.randint(365, 16 * 365))).isoformat(),
                "commune_code": commune or rng.choice(communes),
                "caregiver": {
                    "name": "Dara Chan",
                    "relationship": "mother",
                    "phone": "+85512345678",
                },
                "vulnerabilities": rng.sample(VULNERABILITIES, 2),
                "risk_level": rng.choice(["low", "medium", "high"]),
                "consent": {
                    "data_sharing": True,
                    "given_by": "mother",
                    "date": (today - dt.timedelta(days=7)).isoformat(),
                },
            }
        )
    return bodies
