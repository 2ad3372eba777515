"""name keys: the blocking keys of each child's name (services.registry.names), in a GIN
index, so that likely duplicates are looked for among the children sharing a key instead
of every child of the commune; existing children's keys computed here

Revision ID: 0005_name_keys
Revises: 0004_referral_access_status
"""

import json
import re
import unicodedata
import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005_name_keys"
down_revision: str | None = "0004_referral_access_status"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 5000


# ---- A frozen copy of services.registry.names (and domain.normalize_name) as of this
# ---- revision: a migration must compute the same keys whatever the live code becomes.

_INVISIBLE = {ord(c): None for c in "\u200b\u200c\u200d\u2060\ufeff\u00ad"}
_LATIN_VOWELS = frozenset("aeiouy")
_LATIN_SOUNDS = str.maketrans("wgqdbfjzx", "vkktppcss")
_SILENT_R = re.compile(r"(?<=[aeiouy])r(?![aeiouy])")  # Chear, Sokhar, Sorn/Son
_COENG = "\u17d2"
_SUBSCRIPT_DA, _SUBSCRIPT_TA = "\u178a", "\u178f"


def _normalize_name(text: str) -> str:
    text = unicodedata.normalize("NFC", text).translate(_INVISIBLE)
    return " ".join(text.casefold().split())


def _is_khmer_letter(ch: str) -> bool:
    return "\u1780" <= ch <= "\u17b3"


def _latin_sounds(word: str, *, first: bool) -> list[str]:
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


def _skeleton(name: str) -> str:
    letters: list[str] = []
    for n, word in enumerate(_normalize_name(name).split()):
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


def _name_keys(given_name: str, family_name: str, commune_code: str, sex: str) -> list[str]:
    given, family = _skeleton(given_name), _skeleton(family_name)
    pairs = {(given, family)}
    pairs.update((shorter, family) for shorter in _one_letter_less(given))
    pairs.update((given, shorter) for shorter in _one_letter_less(family))
    return sorted({f"{commune_code}{sex[:1]}:{'|'.join(sorted(pair))}" for pair in pairs})


# ---- end of the frozen copy


def upgrade() -> None:
    op.add_column(
        "children",
        sa.Column("name_keys", postgresql.ARRAY(sa.Text()), nullable=True),
        schema="registry",
    )
    bind = op.get_bind()
    read = sa.text(
        "SELECT id, given_name, family_name, commune_code, sex FROM registry.children"
        " WHERE id > :after ORDER BY id LIMIT :batch"
    )
    write = sa.text(
        "UPDATE registry.children c"
        " SET name_keys = ARRAY(SELECT jsonb_array_elements_text(k.value))"
        " FROM jsonb_each(CAST(:keys AS jsonb)) k WHERE c.id = CAST(k.key AS uuid)"
    )
    after = uuid.UUID(int=0)
    while rows := bind.execute(read, {"after": after, "batch": BATCH}).all():
        keys = {
            str(r.id): _name_keys(r.given_name, r.family_name, r.commune_code, r.sex) for r in rows
        }
        bind.execute(write, {"keys": json.dumps(keys)})
        after = rows[-1].id
    op.alter_column("children", "name_keys", nullable=False, schema="registry")
    op.create_index(
        "ix_registry_children_name_keys",
        "children",
        ["name_keys"],
        unique=False,
        schema="registry",
        postgresql_using="gin",
        # No pending list: every registration searches the index right after writing it.
        postgresql_with={"fastupdate": "off"},
    )


def downgrade() -> None:
    op.drop_index("ix_registry_children_name_keys", table_name="children", schema="registry")
    op.drop_column("children", "name_keys", schema="registry")
