"""Khmer and English: every label of every page, place names from the gazetteer.

The messages live in `dashboard/messages/`, one module per part of the dashboard, each a
`MESSAGES` dict of key -> (English, Khmer). A key missing in Khmer falls back to English,
and a key missing altogether shows the key itself (tests/dashboard checks there are none).
"""

from __future__ import annotations

import datetime as dt
import importlib
import pkgutil
from collections.abc import Callable
from functools import lru_cache

from libs.common import places

LANGUAGES = ("en", "km")
DEFAULT_LANGUAGE = "en"
LANGUAGE_NAMES = {"en": "English", "km": "ខ្មែរ"}

Translate = Callable[..., str]


@lru_cache(maxsize=1)
def catalogue() -> dict[str, tuple[str, str]]:
    """Every message of every module of dashboard.messages."""
    import dashboard.messages as package

    merged: dict[str, tuple[str, str]] = {}
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for key, pair in module.MESSAGES.items():
            if key in merged and merged[key] != pair:
                raise ValueError(f"message {key!r} is defined twice, differently")
            merged[key] = pair
    return merged


def language(value: str | None) -> str:
    return value if value in LANGUAGES else DEFAULT_LANGUAGE


def translator(lang: str) -> Translate:
    """`t(key, **values)`: the message in `lang`, with `{name}` fields filled in."""
    index = 1 if lang == "km" else 0
    messages = catalogue()

    def t(key: str, **values: object) -> str:
        pair = messages.get(key)
        text = key if pair is None else (pair[index] or pair[0])
        return text.format(**values) if values else text

    return t


def place_name(code: str | None, lang: str) -> str:
    """A place's name in `lang` from the gazetteer (its code when the gazetteer lacks it)."""
    if not code:
        return ""
    name = places.name_km(code) if lang == "km" else places.name_en(code)
    return name or code


def place_label(code: str | None, lang: str) -> str:
    """A place's name with its code: `Tonle Basak (120101)`."""
    if not code:
        return ""
    return f"{place_name(code, lang)} ({code})"


KHMER_MONTHS = (
    "មករា",
    "កុម្ភៈ",
    "មីនា",
    "មេសា",
    "ឧសភា",
    "មិថុនា",
    "កក្កដា",
    "សីហា",
    "កញ្ញា",
    "តុលា",
    "វិច្ឆិកា",
    "ធ្នូ",
)


def format_date(value: dt.date | str | None, lang: str) -> str:
    """A date as a reader expects it: `12 Apr 2015`, `12 មេសា 2015`."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        try:
            parsed: dt.date = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    else:
        parsed = value
    day = parsed.date() if isinstance(parsed, dt.datetime) else parsed
    if lang == "km":
        return f"{day.day} {KHMER_MONTHS[day.month - 1]} {day.year}"
    return day.strftime("%-d %b %Y")


def format_number(value: int | float | None) -> str:
    """A number with thousands grouped (riel amounts, counts): `1,250,000`."""
    if value is None:
        return ""
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    return f"{int(value):,}"
