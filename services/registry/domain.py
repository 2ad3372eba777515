"""Registry rules: age, names, changes, likely duplicates, case states, audit links. No I/O."""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Mapping
from datetime import UTC, date
from difflib import SequenceMatcher
from typing import Any

from libs.common import clock
from libs.common.errors import Conflict, invalid
from libs.common.events.catalog import ChildUpdatedV1, ChildV1
from libs.common.events.registry_events import (
    REINTEGRATED_INTO,
    CareSetting,
    ChildReintegratedV1,
)

MAX_AGE_YEARS = 18
# The earliest date a case may be recorded as opened (`registered_on`): no caseload Komar
# imports is older, and the indicators start there.
FIRST_REGISTRATION_DATE = date(2000, 1, 1)
DUPLICATE_THRESHOLD = 0.55
MAX_DUPLICATES = 10  # the likely duplicates answered, best first
_INVISIBLE = {ord(c): None for c in "\u200b\u200c\u200d\u2060\ufeff\u00ad"}


def age_on(birth_date: date, on: date) -> int:
    """Whole years of age on a date."""
    years = on.year - birth_date.year
    if (on.month, on.day) < (birth_date.month, birth_date.day):
        years -= 1
    return years


def registration_date(registered_on: date | None, today: date) -> date:
    """The date a new case counts as opened: today, or the earlier date a partner importing
    its existing caseload gives (not before FIRST_REGISTRATION_DATE, not after today)."""
    if registered_on is None:
        return today
    if registered_on > today:
        raise invalid("registered_on", "is in the future")
    if registered_on < FIRST_REGISTRATION_DATE:
        raise invalid("registered_on", f"is before {FIRST_REGISTRATION_DATE.isoformat()}")
    return registered_on


def check_registrable(birth_date: date, registered_on: date) -> None:
    """A child is born by the registration date and under 18 on it."""
    if birth_date > registered_on:
        in_future = birth_date > clock.today()
        raise invalid("birth_date", "is in the future" if in_future else "is after registered_on")
    if age_on(birth_date, registered_on) >= MAX_AGE_YEARS:
        raise invalid("birth_date", "the child must be under 18 on the registration date")


def normalize_name(text: str) -> str:
    """Form for matching names in Khmer or Latin script: NFC, no invisible marks, casefolded."""
    text = unicodedata.normalize("NFC", text).translate(_INVISIBLE)
    return " ".join(text.casefold().split())


def name_search(given_name: str, family_name: str) -> str:
    """The searchable form of a name: both orders, since either may be written first."""
    given, family = normalize_name(given_name), normalize_name(family_name)
    return f"{given} {family} | {family} {given}"


def like_pattern(query: str) -> str:
    """A LIKE pattern finding the normalized query anywhere (wildcards escaped)."""
    q = normalize_name(query).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{q}%"


def changes(old: Mapping[Any, Any], new: Mapping[Any, Any]) -> dict[str, dict[str, Any]]:
    """Fields whose value differs, as {field: {old, new}} in JSON-ready form."""
    out: dict[str, dict[str, Any]] = {}
    for field, value in new.items():
        before = old.get(field)
        if _jsonable(before) != _jsonable(value):
            out[field] = {"old": _jsonable(before), "new": _jsonable(value)}
    return out


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str, sort_keys=True))


def duplicate_score(child: Mapping[Any, Any], other: Mapping[Any, Any]) -> tuple[float, list[str]]:
    """How likely `other` is the same child: same sex, commune, near birth date, similar name.

    Both carry `name_search` (see name_search()); the name compared is the child's own
    order against either order of the other's.
    """
    if child["sex"] != other["sex"] or child["commune_code"] != other["commune_code"]:
        return 0.0, []
    days = abs((child["birth_date"] - other["birth_date"]).days)
    if days > 366:
        return 0.0, []
    mine = child["name_search"].split(" | ", 1)[0]
    name = 0.0
    for theirs in other["name_search"].split(" | ", 1):
        matcher = SequenceMatcher(None, mine, theirs)
        if matcher.real_quick_ratio() > name and matcher.quick_ratio() > name:
            name = max(name, matcher.ratio())
    if name < 0.5:
        return 0.0, []
    birth = 1.0 - days / 366
    score = (
        0.6 * name + 0.3 * birth + 0.1 * (child.get("village_code") == other.get("village_code"))
    )
    reasons = ["same sex", "same commune"]
    if name >= 0.8:
        reasons.append("similar name")
    if days == 0:
        reasons.append("same birth date")
    elif days <= 31:
        reasons.append("birth dates within a month")
    return round(score, 3), reasons


def close(status: str) -> str:
    """open → closed, else 409."""
    if status != "open":
        raise Conflict("the case is already closed")
    return "closed"


def reopen(status: str) -> str:
    """closed → open, else 409."""
    if status != "closed":
        raise Conflict("the case is already open")
    return "open"


def reintegrated(before: str, after: str) -> bool:
    """Whether a change of care setting is a reintegration: out of a residential
    institution into a family, kinship or foster care setting (docs/api-guide.md#a-child-record)."""
    return before == CareSetting.residential_institution and after in REINTEGRATED_INTO


def reintegration_data(child: Mapping[Any, Any], before: str, on: date) -> ChildReintegratedV1:
    """The reintegrated event's data: the child after the move, where it came from, when."""
    fields = event_data(child).model_dump()
    return ChildReintegratedV1(**fields, from_care_setting=before, reintegrated_on=on.isoformat())


def event_data(child: Mapping[Any, Any], changed: list[str] | None = None) -> ChildV1:
    """What events may say about a child: no names, no contacts, birth month only."""
    fields = {
        "child_id": str(child["id"]),
        "case_number": child["case_number"],
        "commune_code": child["commune_code"],
        "village_code": child["village_code"],
        "sex": child["sex"],
        "birth_month": child["birth_date"].strftime("%Y-%m"),
        "vulnerabilities": sorted(child["vulnerabilities"]),
        "risk_level": child["risk_level"],
        "care_setting": child["care_setting"],
        "status": child["status"],
        "owner_org": child["owner_org"],
        "data_sharing_consent": bool(child["consent"].get("data_sharing")),
        "version": child["version"],
        "registered_on": child["registered_on"].isoformat(),
    }
    if changed is not None:
        return ChildUpdatedV1(**fields, changed=sorted(changed))
    return ChildV1(**fields)


GENESIS = hashlib.sha256(b"komar registry audit genesis").digest()


def audit_link(prev_hash: bytes, chain_seq: int, entry: Mapping[Any, Any]) -> bytes:
    """The hash of one audit link: the previous hash and this entry's every field."""
    canonical = json.dumps(
        {
            "chain_seq": chain_seq,
            "seq": entry["seq"],
            "at": entry["at"].astimezone(UTC).isoformat(),
            "actor_sub": entry["actor_sub"],
            "actor_org": entry["actor_org"],
            "action": entry["action"],
            "child_id": str(entry["child_id"]),
            "request_id": entry["request_id"],
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    return hashlib.sha256(prev_hash + canonical).digest()
