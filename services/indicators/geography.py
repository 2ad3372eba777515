"""The places indicators are asked for: provinces, districts and communes, by code
length. No I/O."""

from __future__ import annotations

from functools import lru_cache

from libs.common import places
from libs.common.auth import COUNTRY
from libs.common.errors import invalid

COMMUNE_LENGTH = 6
DISTRICT_LENGTH = 4
LEVELS = {"province": 2, "district": 4, "commune": 6}


def place_length(code: str) -> int:
    return 0 if code == COUNTRY else len(code)


def check_area(area: str) -> None:
    """422 unless the area is KH, a province, a district or a commune of the gazetteer."""
    if place_length(area) not in (0, 2, 4, 6) or not places.exists(area):
        raise invalid("area", "not a province, district or commune of the gazetteer, nor KH")


def places_at(area: str, level: str | None) -> list[str]:
    """The area itself, or its places at a level (same level or below), in code order."""
    if level is None:
        return [area]
    depth = LEVELS.get(level)
    if depth is None:
        raise invalid("level", "one of province, district, commune")
    if depth < place_length(area):
        raise invalid("level", "must not lie above the area's own level")
    if depth == place_length(area):
        return [area]
    return places.children_at(area, level)


def descendants(area: str) -> list[str]:
    """The area and every province, district and commune inside it (DHIS2 children=true)."""
    out = [area]
    for level, depth in LEVELS.items():
        if depth > place_length(area):
            out.extend(places.children_at(area, level))
    return out


@lru_cache(maxsize=512)
def communes_of(district: str) -> tuple[str, ...]:
    """The communes of a district."""
    return tuple(places.children_at(district, "commune"))
