"""Every SQL statement of the gateway, and nothing else."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Row,
    Select,
    Table,
    any_,
    case,
    delete,
    exists,
    func,
    insert,
    literal_column,
    null,
    or_,
    select,
    text,
    true,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import array
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import aliased

from gateway.models import clients, refresh_tokens, signing_keys, users
from libs.common.http import Page
from libs.common.store import keyset

KEYS_LOCK = "gateway.signing_keys"


# ---------------------------------------------------------------- signing keys


async def lock_keys(conn: AsyncConnection) -> None:
    """Serialise key creation and rotation across replicas for this transaction."""
    await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": KEYS_LOCK})


async def active_key(conn: AsyncConnection) -> Row[Any] | None:
    """The key every replica signs with, if any."""
    return (
        await conn.execute(select(signing_keys).where(signing_keys.c.retired_at.is_(None)))
    ).first()


async def published_keys(conn: AsyncConnection, keep_retired_s: int) -> Sequence[Row[Any]]:
    """The active key and the keys retired less than `keep_retired_s` ago, newest first."""
    cutoff = func.now() - func.make_interval(0, 0, 0, 0, 0, 0, keep_retired_s)
    query = (
        select(signing_keys)
        .where(or_(signing_keys.c.retired_at.is_(None), signing_keys.c.retired_at > cutoff))
        .order_by(signing_keys.c.created_at.desc())
    )
    return (await conn.execute(query)).all()


async def all_keys(conn: AsyncConnection) -> Sequence[Row[Any, Any, Any]]:
    """Every key, newest first (for the admin API: public facts only are shown)."""
    query = select(
        signing_keys.c.kid, signing_keys.c.created_at, signing_keys.c.retired_at
    ).order_by(signing_keys.c.created_at.desc())
    return (await conn.execute(query)).all()


async def retire_active_key(conn: AsyncConnection) -> str | None:
    """Retire the active key; return its kid."""
    result = await conn.execute(
        update(signing_keys)
        .where(signing_keys.c.retired_at.is_(None))
        .values(retired_at=func.now())
        .returning(signing_keys.c.kid)
    )
    kid: str | None = result.scalar_one_or_none()
    return kid


async def insert_key(conn: AsyncConnection, kid: str, kek_id: str, sealed_key: bytes) -> None:
    """Add a key, sealed under the KEK named `kek_id`, as the active one."""
    await conn.execute(insert(signing_keys).values(kid=kid, kek_id=kek_id, sealed_key=sealed_key))


async def keys_to_seal(conn: AsyncConnection, current_kek_id: str) -> Sequence[Row[Any]]:
    """Keys kept in plain text (from before sealing) or sealed under another KEK than
    the current one, locked for this transaction."""
    query = (
        select(signing_keys)
        .where(
            or_(
                signing_keys.c.private_pem.is_not(None),
                signing_keys.c.kek_id.is_distinct_from(current_kek_id),
            )
        )
        .with_for_update()
    )
    return (await conn.execute(query)).all()


async def seal_key(conn: AsyncConnection, kid: str, kek_id: str, sealed_key: bytes) -> None:
    """Keep a key sealed only: the plain-text column is cleared."""
    await conn.execute(
        update(signing_keys)
        .where(signing_keys.c.kid == kid)
        .values(kek_id=kek_id, sealed_key=sealed_key, private_pem=None)
    )


async def key_age_s(conn: AsyncConnection) -> float | None:
    """Seconds since the active key was created."""
    value = await conn.scalar(
        select(func.extract("epoch", func.now() - signing_keys.c.created_at)).where(
            signing_keys.c.retired_at.is_(None)
        )
    )
    return None if value is None else float(value)


# ---------------------------------------------------------------- clients and users


def principal_id_column(table: Table) -> Column[Any]:
    """The id column of the clients or the users table."""
    (column,) = table.primary_key.columns
    return column


def _managed_by(areas: Any, admin_areas: Sequence[str] | None) -> ColumnElement[bool]:
    """SQL form of domain.manages: every area of the principal lies inside one of the
    admin's areas (None: a national admin, who manages everyone)."""
    if admin_areas is None:
        return true()
    code = func.unnest(areas).table_valued("code").render_derived(name="area")
    outside: Select[Any] = select(literal_column("1")).where(
        ~code.c.code.like(any_(array([f"{a}%" for a in admin_areas])))
    )
    return ~exists(outside)


async def get_principal(
    conn: AsyncConnection,
    table: Table,
    principal_id: str,
    *,
    admin_areas: Sequence[str] | None,
    for_update: bool = False,
) -> Row[Any] | None:
    """A client or user (`table`) the admin manages (None when absent or outside the
    admin's areas)."""
    query = select(table).where(
        principal_id_column(table) == principal_id, _managed_by(table.c.areas, admin_areas)
    )
    if for_update:
        query = query.with_for_update()
    return (await conn.execute(query)).first()


async def set_active(
    conn: AsyncConnection, table: Table, principal_id: str, active: bool
) -> Row[Any] | None:
    """Enable or disable a client or user; the version moves only when the state changes."""
    result = await conn.execute(
        update(table)
        .where(principal_id_column(table) == principal_id, table.c.active.is_not(active))
        .values(active=active, version=table.c.version + 1, updated_at=func.now())
        .returning(table)
    )
    row: Row[Any] | None = result.first()
    return row


async def insert_client(conn: AsyncConnection, **values: Any) -> Row[Any]:
    result = await conn.execute(insert(clients).values(**values).returning(clients))
    row: Row[Any] = result.one()
    return row


async def upsert_bootstrap_admin(conn: AsyncConnection, **values: Any) -> None:
    """Create the bootstrap admin, or bring its scopes, areas and org up to date."""
    statement = pg_insert(clients).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=[clients.c.client_id],
        set_={
            "scopes": statement.excluded.scopes,
            "areas": statement.excluded.areas,
            "org": statement.excluded.org,
            "org_type": statement.excluded.org_type,
            "secret_hash": statement.excluded.secret_hash,
            "active": true(),
        },
    )
    await conn.execute(statement)


async def set_client_secret_hash(conn: AsyncConnection, client_id: str, secret_hash: str) -> None:
    await conn.execute(
        update(clients)
        .where(clients.c.client_id == client_id)
        .values(secret_hash=secret_hash, version=clients.c.version + 1, updated_at=func.now())
    )


# ---------------------------------------------------------------- users


async def get_user_by_username(conn: AsyncConnection, username: str) -> Row[Any] | None:
    return (await conn.execute(select(users).where(users.c.username == username))).first()


async def insert_user(conn: AsyncConnection, **values: Any) -> Row[Any] | None:
    """Insert; None when the username is taken (the unique index decides races)."""
    statement = (
        pg_insert(users)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[users.c.username])
        .returning(users)
    )
    row: Row[Any] | None = (await conn.execute(statement)).first()
    return row


async def reserve_login(
    conn: AsyncConnection,
    username: str,
    *,
    max_failures: int,
    window_s: int,
    lock_for_s: int,
) -> Row[Any] | None:
    """Reserve one password check for an enabled, unlocked user, before the check is made.

    One atomic UPDATE counts the attempt as a failure unless it later succeeds; the attempt
    that reaches `max_failures` within `window_s` locks the account for `lock_for_s`. Once the
    limit is reached no further attempt is reserved, however many arrive at once, so at most
    `max_failures` passwords are checked. Returns the user, or None when there is nothing to
    check (unknown, disabled, locked, or at the limit).
    """
    now = func.now()
    fresh = or_(
        users.c.failures_since.is_(None),
        users.c.failures_since <= now - func.make_interval(0, 0, 0, 0, 0, 0, window_s),
    )
    count = case((fresh, 1), else_=users.c.failed_logins + 1)
    locking = count >= max_failures
    statement = (
        update(users)
        .where(
            users.c.username == username,
            users.c.active.is_(True),
            or_(users.c.locked_until.is_(None), users.c.locked_until <= now),
            or_(fresh, users.c.failed_logins < max_failures),
        )
        .values(
            failed_logins=case((locking, 0), else_=count),
            failures_since=case((locking, null()), (fresh, now), else_=users.c.failures_since),
            locked_until=case(
                (locking, now + func.make_interval(0, 0, 0, 0, 0, 0, lock_for_s)),
                else_=users.c.locked_until,
            ),
        )
        .returning(users)
    )
    row: Row[Any] | None = (await conn.execute(statement)).first()
    return row


# A user's failed sign-ins and any lock-out, forgotten.
_NO_FAILURES: dict[str, Any] = {"failed_logins": 0, "failures_since": None, "locked_until": None}


async def login_succeeded(conn: AsyncConnection, user_id: str) -> Row[Any] | None:
    """A reserved check succeeded: forget the failures (and a lock this burst set).
    None when the user was disabled meanwhile."""
    result = await conn.execute(
        update(users)
        .where(users.c.user_id == user_id, users.c.active.is_(True))
        .values(**_NO_FAILURES)
        .returning(users)
    )
    row: Row[Any] | None = result.first()
    return row


async def _change_user(
    conn: AsyncConnection, user_id: str, values: dict[str, Any]
) -> Row[Any] | None:
    """A user's row changed by an administrator or by the user: its version moves; None
    when there is no such user."""
    result = await conn.execute(
        update(users)
        .where(users.c.user_id == user_id)
        .values(**values, version=users.c.version + 1, updated_at=func.now())
        .returning(users)
    )
    row: Row[Any] | None = result.first()
    return row


async def unlock_user(conn: AsyncConnection, user_id: str) -> Row[Any] | None:
    return await _change_user(conn, user_id, _NO_FAILURES)


async def set_password(
    conn: AsyncConnection, user_id: str, password_hash: str, at: float
) -> Row[Any] | None:
    """Give a user a new password (its hash), their failed sign-ins and any lock-out
    forgotten, and every sign-in of theirs ended at `at` (seconds since the epoch, the
    gateway's clock, the one its tokens' `iat` is read on); None when there is no such user."""
    values = {
        "password_hash": password_hash,
        "sessions_ended_at": func.to_timestamp(at),
        **_NO_FAILURES,
    }
    return await _change_user(conn, user_id, values)


async def set_locale(conn: AsyncConnection, user_id: str, locale: str) -> Row[Any] | None:
    """Remember an enabled user's language; the version moves only when it changes (None:
    it does not, or the user is gone or disabled)."""
    result = await conn.execute(
        update(users)
        .where(
            users.c.user_id == user_id,
            users.c.active.is_(True),
            users.c.locale.is_distinct_from(locale),
        )
        .values(locale=locale, version=users.c.version + 1, updated_at=func.now())
        .returning(users)
    )
    row: Row[Any] | None = result.first()
    return row


# ---------------------------------------------------------------- refresh tokens


def _seconds(seconds: int) -> ColumnElement[Any]:
    return func.make_interval(0, 0, 0, 0, 0, 0, seconds)


async def insert_refresh_token(
    conn: AsyncConnection,
    token_hash: bytes,
    *,
    user_id: str,
    family_id: str,
    scopes: Sequence[str],
    idle_s: int,
    family_expires_at: datetime | None = None,
    absolute_s: int = 0,
) -> None:
    """Keep a new refresh token: the first of a family (which ends `absolute_s` from now) or
    the next one of a family (which keeps its end, `family_expires_at`)."""
    now = func.now()
    ends = family_expires_at if family_expires_at is not None else now + _seconds(absolute_s)
    await conn.execute(
        insert(refresh_tokens).values(
            token_hash=token_hash,
            user_id=user_id,
            family_id=family_id,
            scopes=list(scopes),
            idle_expires_at=now + _seconds(idle_s),
            family_expires_at=ends,
        )
    )


async def use_refresh_token(conn: AsyncConnection, token_hash: bytes) -> Row[Any] | None:
    """Mark a refresh token used, in one statement, if it may be used: unused, unrevoked,
    neither idle nor its family past their end, and no token of its family revoked. Of
    requests presenting it at once, one gets the token's row (user, family, scopes, end of
    the family); every other one, None (as for an unknown token).

    A token of the family is revoked when the family is: a token added by a refresh that was
    under way meanwhile (which the revocation did not see) is refused all the same.
    """
    now = func.now()
    sibling = aliased(refresh_tokens)
    revoked_sibling = exists().where(
        sibling.c.family_id == refresh_tokens.c.family_id, sibling.c.revoked_at.is_not(None)
    )
    statement = (
        update(refresh_tokens)
        .where(
            refresh_tokens.c.token_hash == token_hash,
            refresh_tokens.c.used_at.is_(None),
            refresh_tokens.c.revoked_at.is_(None),
            refresh_tokens.c.idle_expires_at > now,
            refresh_tokens.c.family_expires_at > now,
            ~revoked_sibling,
        )
        .values(used_at=now)
        .returning(
            refresh_tokens.c.user_id,
            refresh_tokens.c.family_id,
            refresh_tokens.c.scopes,
            refresh_tokens.c.family_expires_at,
        )
    )
    row: Row[Any] | None = (await conn.execute(statement)).first()
    return row


async def revoke_refresh_family(
    conn: AsyncConnection, token_hash: bytes, *, only_if_used: bool
) -> Row[Any] | None:
    """Revoke every token of the family of a refresh token (`only_if_used`: only when that
    token was used before, i.e. presented again). Returns the family's user and id when a
    token was revoked now, None when none was (unknown token, or a family revoked before)."""
    family: Select[Any] = select(refresh_tokens.c.family_id).where(
        refresh_tokens.c.token_hash == token_hash
    )
    if only_if_used:
        family = family.where(refresh_tokens.c.used_at.is_not(None))
    statement = (
        update(refresh_tokens)
        .where(
            refresh_tokens.c.family_id == family.scalar_subquery(),
            refresh_tokens.c.revoked_at.is_(None),
        )
        .values(revoked_at=func.now())
        .returning(refresh_tokens.c.user_id, refresh_tokens.c.family_id)
    )
    row: Row[Any] | None = (await conn.execute(statement)).first()
    return row


async def revoke_user_refresh_tokens(conn: AsyncConnection, user_id: str) -> int:
    """Revoke every refresh token of a user (every family: each of their sign-ins)."""
    result = await conn.execute(
        update(refresh_tokens)
        .where(refresh_tokens.c.user_id == user_id, refresh_tokens.c.revoked_at.is_(None))
        .values(revoked_at=func.now())
    )
    return result.rowcount


async def user_for_refresh(conn: AsyncConnection, user_id: str) -> Row[Any] | None:
    """The user, when enabled and not locked out (None otherwise): what a refresh is for."""
    now = func.now()
    query = select(users).where(
        users.c.user_id == user_id,
        users.c.active.is_(True),
        or_(users.c.locked_until.is_(None), users.c.locked_until <= now),
    )
    return (await conn.execute(query)).first()


async def purge_refresh_tokens(conn: AsyncConnection) -> int:
    """Delete the refresh tokens of ended families, and unused tokens past their idle end
    (the end of their family: nothing follows them). Used and revoked tokens of a family
    that has not ended stay: presenting a used one again revokes the family, and a revoked
    one keeps the family refused."""
    now = func.now()
    unused_and_idle = (
        refresh_tokens.c.used_at.is_(None)
        & refresh_tokens.c.revoked_at.is_(None)
        & (refresh_tokens.c.idle_expires_at <= now)
    )
    result = await conn.execute(
        delete(refresh_tokens).where(
            or_(refresh_tokens.c.family_expires_at <= now, unused_and_idle)
        )
    )
    return result.rowcount


async def list_principals(
    conn: AsyncConnection,
    table: Table,
    page: Page,
    *,
    org: str | None,
    active: bool | None,
    admin_areas: Sequence[str] | None,
) -> Sequence[Row[Any]]:
    """One page of the clients or users (`table`) the admin manages, oldest change first."""
    id_column = principal_id_column(table)
    query = select(table).where(_managed_by(table.c.areas, admin_areas))
    if page.updated_since is not None:
        query = query.where(table.c.updated_at >= page.updated_since)
    if org is not None:
        query = query.where(table.c.org == org)
    if active is not None:
        query = query.where(table.c.active.is_(active))
    found = await conn.execute(keyset(query, page, table.c.updated_at, id_column))
    rows: Sequence[Row[Any]] = found.all()
    return rows


async def db_now(conn: AsyncConnection) -> datetime:
    value = await conn.scalar(select(func.now()))
    assert isinstance(value, datetime)
    return value


# ---------------------------------------------------------------- what each replica keeps in memory


async def disabled_principals(conn: AsyncConnection) -> set[str]:
    """Subs of disabled clients and users (their tokens are refused)."""
    query = union_all(
        select(clients.c.client_id).where(clients.c.active.is_(False)),
        select(users.c.user_id).where(users.c.active.is_(False)),
    )
    return set((await conn.execute(query)).scalars().all())


async def sessions_ended(conn: AsyncConnection, within_s: int) -> dict[str, float]:
    """Users whose sign-ins were ended in the last `within_s` seconds (a token lives no
    longer), and when (seconds since the epoch)."""
    query = select(users.c.user_id, func.extract("epoch", users.c.sessions_ended_at)).where(
        users.c.sessions_ended_at > func.now() - func.make_interval(0, 0, 0, 0, 0, 0, within_s)
    )
    return {sub: float(at) for sub, at in (await conn.execute(query)).all()}


async def principal_rates(conn: AsyncConnection) -> dict[str, float]:
    """Subs with a rate limit of their own."""
    query = union_all(
        select(clients.c.client_id, clients.c.rate_limit_per_second).where(
            clients.c.rate_limit_per_second.is_not(None)
        ),
        select(users.c.user_id, users.c.rate_limit_per_second).where(
            users.c.rate_limit_per_second.is_not(None)
        ),
    )
    return {sub: float(rate) for sub, rate in (await conn.execute(query)).all()}
