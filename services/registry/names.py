"""Blocking keys of a child's name: which children are worth scoring as its likely duplicates.

domain.duplicate_score compares whole names, too slowly to run over every child of a
crowded commune. Each child stores `name_keys` (indexed); its likely duplicates are
looked for only among the children sharing a key with it. Pure functions, no I/O.

A name's **skeleton** is what stays the same however the name is written:

- Latin script, built so that the usual romanisations of one Khmer name agree
  (Sokha/Sokhar, Chea/Chear, Vanna/Vana, Srey/Srei, Pov/Pou, Dara/Darra, Piseth/Piset,
  Khiev/Khieu, Sorn/Son): accents and case folded; h dropped (kh, th, ph, chh, final h);
  an r after a vowel and not before one dropped; a v ending a word read as a vowel;
  vowels dropped (y too, unless it starts a word), a name that starts with a vowel
  marked `a` instead; then w→v, g/q→k, d→t, b/f→p, j→c, z/x→s; a repeated consonant
  counts once.
- Khmer script: the consonants and independent vowels, each consonant's subscripts
  (after the coeng, U+17D2) in a fixed order, subscript DA as subscript TA (they look
  the same); vowel signs, diacritics, the coeng and invisible marks dropped.
- The words of one field are joined ("Srey Pov" = "Sreypov"); NFC, zero-width spaces and
  other invisible marks removed first (domain.normalize_name).

A child's **keys** are the pair of its given and family names' skeletons, in no order
(the two are often swapped), and the pairs where one of the two skeletons lost one letter.
Two names share a key when one field's skeletons are equal and the other's differ by at
most one letter (a typo: one letter changed, added or dropped, or two swapped). Each key
starts with the commune and sex: a common name finds the children of that commune only.

Changing a rule changes the keys a child should have: add a migration that recomputes
`children.name_keys` (as migration 0005 computes them, from a frozen copy of this module).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from services.registry.domain import normalize_name

_LATIN_VOWELS = frozenset("aeiouy")
_LATIN_SOUNDS = str.maketrans("wgqdbfjzx", "vkktppcss")
_SILENT_R = re.compile(r"(?<=[aeiouy])r(?![aeiouy])")  # Chear, Sokhar, Sorn/Son
_COENG = "\u17d2"
_SUBSCRIPT_DA, _SUBSCRIPT_TA = "\u178a", "\u178f"


def _is_khmer_letter(ch: str) -> bool:
    """A Khmer consonant (U+1780-U+17A2) or independent vowel (U+17A3-U+17B3)."""
    return "\u1780" <= ch <= "\u17b3"


def _latin_sounds(word: str, *, first: bool) -> list[str]:
    """The consonants of a Latin-script word as they sound (`a` for a leading vowel of the
    name when `first`)."""
    folded = unicodedata.normalize("NFKD", word)
    letters = "".join(ch for ch in folded if ch.isascii() and ch.isalpha()).replace("h", "")
    letters = _SILENT_R.sub("", letters)
    if letters.endswith("v"):
        letters = letters[:-1] + "u"
    sounds = ["a"] if first and letters[:1] in _LATIN_VOWELS - {"y"} else []
    for i, ch in enumerate(letters):
        if ch in _LATIN_VOWELS and not (ch == "y" and i == 0):
            continue
        sounds.append(ch.translate(_LATIN_SOUNDS))
    return sounds


def _khmer_letters(word: str) -> list[str]:
    """The consonant clusters (a consonant, then its subscripts in code point order) and
    independent vowels of a Khmer-script word."""
    clusters: list[list[str]] = []
    subscript = False
    for ch in word:
        if ch == _COENG:
            subscript = True
            continue
        if _is_khmer_letter(ch):
            if subscript and clusters:
                clusters[-1].append(_SUBSCRIPT_TA if ch == _SUBSCRIPT_DA else ch)
            else:
                clusters.append([ch])
        subscript = False
    return [cluster[0] + "".join(sorted(cluster[1:])) for cluster in clusters]


def skeleton(name: str) -> str:
    """What stays the same however a name (one field) is typed or romanised."""
    letters: list[str] = []
    for n, word in enumerate(normalize_name(name).split()):
        if any(_is_khmer_letter(ch) for ch in word):
            letters.extend(_khmer_letters(word))
        else:
            letters.extend(_latin_sounds(word, first=n == 0))
    return _once(letters)


def _once(letters: Sequence[str]) -> str:
    """The letters with a repeated one counted once."""
    return "".join(ch for i, ch in enumerate(letters) if i == 0 or ch != letters[i - 1])


def _one_letter_less(text: str) -> set[str]:
    return {_once(text[:i] + text[i + 1 :]) for i in range(len(text))}


def name_keys(given_name: str, family_name: str, commune_code: str, sex: str) -> list[str]:
    """The blocking keys of a child (see the module's docstring), sorted."""
    given, family = skeleton(given_name), skeleton(family_name)
    pairs = {(given, family)}
    pairs.update((shorter, family) for shorter in _one_letter_less(given))
    pairs.update((given, shorter) for shorter in _one_letter_less(family))
    return sorted({f"{commune_code}{sex[:1]}:{'|'.join(sorted(pair))}" for pair in pairs})
