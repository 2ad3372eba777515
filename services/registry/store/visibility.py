"""Which children a principal may see, as SQL: `visible_to` for built statements, and its
text forms for the hand-written ones; and `Child`, a children row."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import ColumnElement

from libs.common import access
from libs.common.auth import Principal
from services.registry.models import children, referral_access, worker_accounts

Child = Mapping[Any, Any]  # a row: SQLAlchemy's RowMapping, or an asyncpg Record


def visible_to(principal: Principal) -> ColumnElement[bool]:
    """Which children the principal may read (libs.common.access), over this schema."""
    return access.children_visible_sql(
        principal, children, access.shares_of(referral_access), worker_accounts
    )


def visible_sql(areas: str, org: str, user: str, child: str = "") -> str:
    """SQL text form of visible_to for hand-written statements: `areas`, `org` and `user`
    are SQL expressions of visibility_args' three values, `child` the children table's
    alias and dot."""
    return access.child_visible_text(
        areas,
        org,
        shares="registry.referral_access",
        commune=f"{child}commune_code",
        village=f"{child}village_code",
        owner=f"{child}owner_org",
        child_id=f"{child}id",
        user=user,
        workers="registry.worker_accounts",
    )


def visibility_args(principal: Principal) -> tuple[list[str] | None, str | None, str | None]:
    """Parameters of visible_sql: area patterns, the partner's org, and the user's account
    (a casework worker's reads the children assigned to them)."""
    return (*access.visibility_args(principal), principal.username)


# The most duplicate candidates one registration reads and scores (candidates_sql).
MAX_CANDIDATES = 500


def candidates_sql(
    commune: str,
    sex: str,
    born_from: str,
    born_to: str,
    keys: str,
    areas: str,
    org: str,
    user: str,
    *,
    other_than: str = "NULL",
    child: str = "",
) -> str:
    """The duplicate candidates of a child (columns domain.duplicate_score compares):
    children of its commune and sex born in the window that share one of its name keys
    (services.registry.names; the GIN index on name_keys finds them), visible to the
    principal (areas, org, user as in visible_sql), not the child itself; the arguments are SQL
    expressions. The keys keep to the names that could score (a few dozen candidates in a
    commune of 20,000); so that no commune, however many children share one name, makes a
    registration's work grow, at most MAX_CANDIDATES are read, the births nearest first
    (what the scorer ranks higher among equal names)."""
    return (
        "SELECT id, case_number, name_search, sex, commune_code, village_code, birth_date"
        f" FROM registry.children {child.rstrip('.')} WHERE {child}name_keys && {keys}"
        f" AND {child}commune_code = {commune} AND {child}sex = {sex}"
        f" AND {child}birth_date BETWEEN {born_from} AND {born_to}"
        f" AND ({other_than}::uuid IS NULL OR {child}id <> {other_than})"
        f" AND {visible_sql(areas, org, user, child)}"
        f" ORDER BY abs({child}birth_date - ({born_from}::date + ({born_to}::date"
        f" - {born_from}::date) / 2)), {child}id LIMIT {MAX_CANDIDATES}"
    )
