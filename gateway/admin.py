"""The gateway's admin API: API clients, users and signing keys, each admin within its areas."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy import Row, Table
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway import domain, store
from gateway.models import clients, users
from gateway.oauth import NO_STORE
from gateway.runtime import request_principal, request_runtime
from gateway.schemas import (
    ClientCreate,
    ClientCreated,
    ClientOut,
    ClientPage,
    KeyList,
    KeyOut,
    PasswordSet,
    PrincipalIn,
    RotationOut,
    UserCreate,
    UserOut,
    UserPage,
)
from libs.common.auth import Principal
from libs.common.errors import Conflict, Forbidden, found, invalid
from libs.common.http import (
    Page,
    check_if_match,
    json_response,
    page_answer,
    page_params,
    run_idempotent,
    time_cursor,
)
from libs.common.logging import get_logger

log = get_logger(__name__)

router = APIRouter()


async def admin_principal(request: Request) -> Principal:
    """Dependency: a valid token of an enabled principal carrying the admin scope."""
    principal = await request_principal(request)
    principal.require("admin")
    return principal


# ---------------------------------------------------------------- helpers


def _client_out(row: Row[Any]) -> dict[str, Any]:
    return ClientOut.model_validate(row, from_attributes=True).model_dump(mode="json")


def _user_out(row: Row[Any], now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    locked = row.locked_until is not None and row.locked_until > now
    return UserOut.model_validate(
        {**row._mapping, "locked": locked}, from_attributes=False
    ).model_dump(mode="json")


class PrincipalFilters:
    """The filters of a list of clients or users: an organisation, enabled or disabled."""

    def __init__(
        self,
        org: str | None = Query(None, max_length=100),
        active: bool | None = Query(None),
    ) -> None:
        self.org = org
        self.active = active


async def _principal_page(
    request: Request,
    page: Page,
    filters: PrincipalFilters,
    principal: Principal,
    table: Table,
    answer: Callable[[Row[Any], datetime], dict[str, Any]],
) -> dict[str, Any]:
    """One page of the clients or users (`table`) the admin manages, each shown by `answer`
    (given the database's clock, against which a lockout is judged)."""
    rt = request_runtime(request)
    page = time_cursor(page, str)
    async with rt.db.transaction() as conn:
        rows = await store.list_principals(
            conn,
            table,
            page,
            org=filters.org,
            active=filters.active,
            admin_areas=principal.area_prefixes(),
        )
        now = await store.db_now(conn)
    id_column = store.principal_id_column(table)
    items, next_cursor = page_answer(rows, page, lambda r: (r.updated_at, r._mapping[id_column]))
    return {"items": [answer(r, now) for r in items], "next_cursor": next_cursor}


def _principal_fields(body: PrincipalIn) -> dict[str, Any]:
    """What a new client and a new user hold alike, as stored."""
    return body.model_dump(include=set(PrincipalIn.model_fields))


def _created_id(answer: Response) -> str:
    return answer.headers["location"].rsplit("/", 1)[-1]


def _check_rules(body: ClientCreate | UserCreate, principal: Principal) -> None:
    try:
        domain.check_principal(body.org_type, body.scopes)
    except domain.RuleViolation as exc:
        raise invalid(exc.field, exc.message) from exc
    # An admin mints principals inside its own areas only (a district admin, no KH client).
    if not all(principal.covers(area) for area in body.areas):
        raise Forbidden("every area of a new client or user must lie inside your own areas")


# ---------------------------------------------------------------- clients


@router.post(
    "/v1/admin/clients",
    tags=["admin"],
    status_code=201,
    response_model=ClientCreated,
    summary="Create an API client (its secret is shown in this answer only)",
)
async def create_client(
    body: ClientCreate, request: Request, principal: Principal = Depends(admin_principal)
) -> Response:
    rt = request_runtime(request)
    _check_rules(body, principal)
    secret = domain.new_client_secret()
    secret_hash = await asyncio.to_thread(domain.hash_secret, secret)
    created: dict[str, Any] = {}

    async def work(conn: AsyncConnection) -> Response:
        row = await store.insert_client(
            conn,
            client_id=domain.new_client_id(),
            secret_hash=secret_hash,
            **_principal_fields(body),
        )
        created["row"] = row
        log.info("admin.client.created", client_id=row.client_id, by=principal.sub)
        # What an Idempotency-Key keeps to replay: the client without its secret.
        return _client_created(row, None)

    answer = await run_idempotent(rt.db, rt.idempotency, request, principal, work)
    if "row" not in created:
        return answer  # replayed (the secret was shown once, to the first request)
    row = created["row"]
    rt.guard.set_rate(row.client_id, body.rate_limit_per_second)
    return _client_created(row, secret)


def _client_created(row: Row[Any], secret: str | None) -> Response:
    answer = json_response(
        {**_client_out(row), "client_secret": secret},
        201,
        version=row.version,
        location=f"/v1/admin/clients/{row.client_id}",
    )
    answer.headers.update(NO_STORE)
    return answer


@router.get("/v1/admin/clients", tags=["admin"], response_model=ClientPage)
async def list_clients(
    request: Request,
    filters: PrincipalFilters = Depends(),  # first: OpenAPI lists org and active first
    page: Page = Depends(page_params),
    principal: Principal = Depends(admin_principal),
) -> dict[str, Any]:
    return await _principal_page(
        request, page, filters, principal, clients, lambda row, _now: _client_out(row)
    )


@router.get("/v1/admin/clients/{client_id}", tags=["admin"], response_model=ClientOut)
async def get_client(
    client_id: str, request: Request, principal: Principal = Depends(admin_principal)
) -> Response:
    async with request_runtime(request).db.transaction() as conn:
        row = await store.get_principal(
            conn, clients, client_id, admin_areas=principal.area_prefixes()
        )
    row = found(row, "client")
    return json_response(_client_out(row), version=row.version)


async def _set_client_active(
    request: Request, principal: Principal, client_id: str, active: bool
) -> Response:
    rt = request_runtime(request)

    async def work(conn: AsyncConnection) -> Response:
        row = await store.get_principal(
            conn, clients, client_id, admin_areas=principal.area_prefixes(), for_update=True
        )
        row = found(row, "client")
        if not active and client_id == domain.BOOTSTRAP_ADMIN:
            raise Conflict("the bootstrap admin client cannot be disabled")
        check_if_match(request.headers.get("if-match"), row.version)
        row = await store.set_active(conn, clients, client_id, active) or row
        log.info("admin.client.active", client_id=client_id, active=active, by=principal.sub)
        return json_response(_client_out(row), version=row.version)

    answer = await run_idempotent(rt.db, rt.idempotency, request, principal, work)
    if active:
        rt.guard.enable(client_id)
    else:
        rt.guard.disable(client_id)
    return answer


@router.post("/v1/admin/clients/{client_id}/disable", tags=["admin"], response_model=ClientOut)
async def disable_client(
    client_id: str, request: Request, principal: Principal = Depends(admin_principal)
) -> Response:
    """Refuse new tokens to the client, and its existing tokens within seconds."""
    return await _set_client_active(request, principal, client_id, False)


@router.post("/v1/admin/clients/{client_id}/enable", tags=["admin"], response_model=ClientOut)
async def enable_client(
    client_id: str, request: Request, principal: Principal = Depends(admin_principal)
) -> Response:
    return await _set_client_active(request, principal, client_id, True)


# ---------------------------------------------------------------- users


@router.post("/v1/admin/users", tags=["admin"], status_code=201, response_model=UserOut)
async def create_user(
    body: UserCreate, request: Request, principal: Principal = Depends(admin_principal)
) -> Response:
    rt = request_runtime(request)
    _check_rules(body, principal)
    problem = domain.password_problem(body.username, body.password, rt.settings.min_password_length)
    if problem is not None:
        raise invalid("password", problem)
    password_hash = await asyncio.to_thread(domain.hash_secret, body.password)

    async def work(conn: AsyncConnection) -> Response:
        row = await store.insert_user(
            conn,
            user_id=domain.new_user_id(),
            username=body.username,
            password_hash=password_hash,
            **_principal_fields(body),
        )
        if row is None:
            raise Conflict("this username is taken")
        log.info("admin.user.created", user_id=row.user_id, by=principal.sub)
        return json_response(
            _user_out(row), 201, version=row.version, location=f"/v1/admin/users/{row.user_id}"
        )

    answer = await run_idempotent(rt.db, rt.idempotency, request, principal, work)
    if answer.status_code == 201 and answer.headers.get("idempotent-replayed") is None:
        rt.guard.set_rate(_created_id(answer), body.rate_limit_per_second)
    return answer


@router.get("/v1/admin/users", tags=["admin"], response_model=UserPage)
async def list_users(
    request: Request,
    filters: PrincipalFilters = Depends(),  # first: OpenAPI lists org and active first
    page: Page = Depends(page_params),
    principal: Principal = Depends(admin_principal),
) -> dict[str, Any]:
    return await _principal_page(request, page, filters, principal, users, _user_out)


@router.get("/v1/admin/users/{user_id}", tags=["admin"], response_model=UserOut)
async def get_user(
    user_id: str, request: Request, principal: Principal = Depends(admin_principal)
) -> Response:
    async with request_runtime(request).db.transaction() as conn:
        row = await store.get_principal(conn, users, user_id, admin_areas=principal.area_prefixes())
        now = await store.db_now(conn)
    row = found(row, "user")
    return json_response(_user_out(row, now), version=row.version)


async def _change_user(
    request: Request,
    principal: Principal,
    user_id: str,
    action: str,
    password_hash: str | None = None,
) -> Response:
    rt = request_runtime(request)
    at = time.time()

    async def work(conn: AsyncConnection) -> Response:
        row = await store.get_principal(
            conn, users, user_id, admin_areas=principal.area_prefixes(), for_update=True
        )
        row = found(row, "user")
        check_if_match(request.headers.get("if-match"), row.version)
        if action == "unlock":
            changed = await store.unlock_user(conn, user_id)
        elif action == "password":
            assert password_hash is not None
            changed = await store.set_password(conn, user_id, password_hash, at)
        else:
            changed = await store.set_active(conn, users, user_id, action == "enable")
        if action in ("disable", "password"):
            # Their sign-ins end too: they sign in again (enabled again, or with the new
            # password).
            await store.revoke_user_refresh_tokens(conn, user_id)
        row = changed or row
        now = await store.db_now(conn)
        log.info("admin.user.changed", user_id=user_id, action=action, by=principal.sub)
        return json_response(_user_out(row, now), version=row.version)

    answer = await run_idempotent(rt.db, rt.idempotency, request, principal, work)
    if answer.status_code != 200 or answer.headers.get("idempotent-replayed") is not None:
        return answer
    if action == "disable":
        rt.guard.disable(user_id)
    elif action == "enable":
        rt.guard.enable(user_id)
    elif action == "password":
        rt.guard.end_sessions(user_id, at)
    return answer


@router.post("/v1/admin/users/{user_id}/disable", tags=["admin"], response_model=UserOut)
async def disable_user(
    user_id: str, request: Request, principal: Principal = Depends(admin_principal)
) -> Response:
    """Refuse new tokens to the user, and their existing tokens within seconds; their
    refresh tokens are revoked."""
    return await _change_user(request, principal, user_id, "disable")


@router.post("/v1/admin/users/{user_id}/enable", tags=["admin"], response_model=UserOut)
async def enable_user(
    user_id: str, request: Request, principal: Principal = Depends(admin_principal)
) -> Response:
    return await _change_user(request, principal, user_id, "enable")


@router.post("/v1/admin/users/{user_id}/unlock", tags=["admin"], response_model=UserOut)
async def unlock_user(
    user_id: str, request: Request, principal: Principal = Depends(admin_principal)
) -> Response:
    """End a lockout after failed logins now."""
    return await _change_user(request, principal, user_id, "unlock")


@router.post("/v1/admin/users/{user_id}/password", tags=["admin"], response_model=UserOut)
async def set_user_password(
    user_id: str,
    body: PasswordSet,
    request: Request,
    principal: Principal = Depends(admin_principal),
) -> Response:
    """Give a user who lost their password a new one (the policy of a new user's), to pass
    on to them by hand: their failed sign-ins and any lock-out are forgotten, and every
    sign-in of theirs ends at once (its tokens refused, its refresh tokens revoked). A user
    changes a password they know themselves (`POST /v1/me/password`)."""
    rt = request_runtime(request)
    async with rt.db.transaction() as conn:
        row = await store.get_principal(conn, users, user_id, admin_areas=principal.area_prefixes())
    row = found(row, "user")
    problem = domain.password_problem(row.username, body.password, rt.settings.min_password_length)
    if problem is not None:
        raise invalid("password", problem)
    password_hash = await asyncio.to_thread(domain.hash_secret, body.password)
    return await _change_user(request, principal, user_id, "password", password_hash)


# ---------------------------------------------------------------- signing keys


@router.get("/v1/admin/keys", tags=["admin"], response_model=KeyList)
async def list_keys(
    request: Request, principal: Principal = Depends(admin_principal)
) -> dict[str, Any]:
    async with request_runtime(request).db.transaction() as conn:
        rows = await store.all_keys(conn)
    items = [
        KeyOut(
            kid=r.kid, active=r.retired_at is None, created_at=r.created_at, retired_at=r.retired_at
        ).model_dump(mode="json")
        for r in rows
    ]
    return {"items": items}


@router.post("/v1/admin/keys/rotate", tags=["admin"], response_model=RotationOut)
async def rotate_keys(
    request: Request, principal: Principal = Depends(admin_principal)
) -> Response:
    """Sign with a new key from now on; tokens of the old key verify until they expire."""
    if not principal.is_national:
        raise Forbidden("only an admin over the whole country rotates the signing keys")
    rt = request_runtime(request)

    async def work(conn: AsyncConnection) -> Response:
        new, old = await rt.keys.rotate_in(conn)
        log.info("admin.keys.rotated", kid=new, previous_kid=old, by=principal.sub)
        return json_response(RotationOut(kid=new, previous_kid=old).model_dump())

    answer = await run_idempotent(rt.db, rt.idempotency, request, principal, work)
    await rt.keys.reload()
    return answer
