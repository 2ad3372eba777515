"""The caller's own profile: who the token says they are, the language a user chose, and a
user's password.

Every signed-in principal reads it (no scope needed); only a user changes it, and only their
own language, with If-Match optional (the one PATCH where it is: the choice is theirs alone,
and the last one wins), or their own password. A client or user that no longer exists or was
disabled answers 401, as its token would anywhere else.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Request
from fastapi.responses import Response
from sqlalchemy import Row

from gateway import domain, oauth, store
from gateway.models import clients, users
from gateway.runtime import request_principal, request_runtime
from gateway.schemas import MeOut, MePatch, PasswordChange
from libs.common.auth import Principal
from libs.common.errors import Forbidden, TooManyRequests, Unauthorized, invalid
from libs.common.http import check_if_match, json_response
from libs.common.logging import get_logger

log = get_logger(__name__)

router = APIRouter()

GONE = "this client or user is disabled"
# Unlike other PATCHes, If-Match is optional here: the language is the user's own, and
# their last choice wins.
IF_MATCH = (
    "Optional: the ETag of your last GET /v1/me, to be refused (412) if your profile changed since."
)


def _is_user(principal: Principal) -> bool:
    """A user's token names the account (`preferred_username`); an API client's does not."""
    return principal.username is not None


async def user_principal(request: Request) -> Principal:
    """Dependency: the caller, who must be a user (an API client has no profile to change)."""
    principal = await request_principal(request)
    if not _is_user(principal):
        raise Forbidden("only users have a profile to change; an API client reads English")
    return principal


def _enabled(row: Row[Any] | None) -> Row[Any]:
    """The caller's row, or 401 when it is gone or disabled (like the token of one)."""
    if row is None or not row.active:
        raise Unauthorized(GONE)
    return row


def _answer(principal: Principal, row: Row[Any]) -> Response:
    """The profile: the token's organisation, scopes and areas, the row's name and language."""
    user = _is_user(principal)
    body = {
        "sub": principal.sub,
        "kind": "user" if user else "client",
        "username": row.username if user else None,
        "name": row.name,
        "org": principal.org,
        "org_type": principal.org_type,
        "scopes": sorted(principal.scopes),
        "areas": list(principal.areas),
        "locale": row.locale if user else domain.DEFAULT_LOCALE,
    }
    return json_response(body, version=row.version)


@router.get(
    "/v1/me",
    tags=["profile"],
    response_model=MeOut,
    summary="Who you are: your principal, your token's scopes and areas, your language",
)
async def get_me(request: Request, principal: Principal = Depends(request_principal)) -> Response:
    """The caller's profile; its ETag is what `PATCH /v1/me` may take as If-Match."""
    table = users if _is_user(principal) else clients
    async with request_runtime(request).db.transaction() as conn:
        row = await store.get_principal(conn, table, principal.sub, admin_areas=None)
    return _answer(principal, _enabled(row))


@router.patch(
    "/v1/me",
    tags=["profile"],
    response_model=MeOut,
    summary="Change your language (users only)",
)
async def patch_me(
    request: Request,
    body: Annotated[MePatch, Body(media_type="application/merge-patch+json")],
    if_match: Annotated[
        str | None, Header(alias="If-Match", max_length=200, description=IF_MATCH)
    ] = None,
    principal: Principal = Depends(user_principal),
) -> Response:
    """Remember the language Komar shows you (JSON merge patch: `{"locale": "km"}`). API
    clients answer 403."""
    assert body.locale is not None  # MePatch refuses a null locale
    async with request_runtime(request).db.transaction() as conn:
        row = await store.get_principal(
            conn, users, principal.sub, admin_areas=None, for_update=True
        )
        row = _enabled(row)
        check_if_match(if_match, row.version)
        changed = await store.set_locale(conn, principal.sub, body.locale)
    if changed is None:
        return _answer(principal, row)  # the same language: nothing changed
    log.info("profile.locale.changed", user_id=principal.sub, locale=changed.locale)
    return _answer(principal, changed)


NOT_YOUR_PASSWORD = (
    "does not match your password (after too many wrong tries the account is locked for a "
    "while, and even the right one is refused until then)"
)


def _busy(wait: float) -> TooManyRequests:
    return TooManyRequests(oauth.BY_ADDRESS, headers={"Retry-After": domain.retry_after(wait)})


@router.post(
    "/v1/me/password",
    tags=["profile"],
    status_code=204,
    response_class=Response,
    summary="Change your password (users only)",
    responses={
        204: {"description": "Changed: every sign-in of yours has ended; sign in again"},
        422: {
            "description": "The current password is wrong (a failed sign-in: counted toward "
            "the lock-out), or the new one is against the policy"
        },
    },
)
async def change_password(
    request: Request, body: PasswordChange, principal: Principal = Depends(user_principal)
) -> Response:
    """Change your own password, telling the one you have now. A wrong current password
    counts as a failed sign-in, of your account and of your address. Every sign-in of yours
    ends at once, this one included (its tokens refused, its refresh tokens revoked): sign
    in again with the new password. Not idempotent: once changed, the same request is
    refused, its current password being the old one."""
    rt = request_runtime(request)
    username = principal.username
    assert username is not None  # user_principal
    problem = domain.password_problem(username, body.new_password, rt.settings.min_password_length)
    if problem is not None:
        raise invalid("new_password", problem)
    if body.new_password == body.current_password:
        raise invalid("new_password", "must differ from the current password")
    row = await oauth.checked_user(
        rt, oauth.source_address(request, rt), username, body.current_password, _busy
    )
    if row is None or row.user_id != principal.sub:
        raise invalid("current_password", NOT_YOUR_PASSWORD)
    password_hash = await asyncio.to_thread(domain.hash_secret, body.new_password)
    at = time.time()
    async with rt.db.transaction() as conn:
        if await store.set_password(conn, principal.sub, password_hash, at) is None:
            raise Unauthorized(GONE)
        ended = await store.revoke_user_refresh_tokens(conn, principal.sub)
    rt.guard.end_sessions(principal.sub, at)
    log.info("auth.user.password_changed", user_id=principal.sub, refresh_tokens_revoked=ended)
    return Response(status_code=204)
