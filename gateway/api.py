"""The gateway's own routes: tokens (RFC 6749), keys, and the admin API."""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import Counter
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway import domain, store
from gateway.runtime import GatewayRuntime
from gateway.schemas import (
    ClientCreate,
    ClientCreated,
    ClientOut,
    ClientPage,
    KeyList,
    KeyOut,
    RotationOut,
    TokenOut,
    UserCreate,
    UserOut,
    UserPage,
)
from libs.common.auth import SCOPES, Principal, bearer_token
from libs.common.errors import Conflict, Forbidden, NotFound, Problem, Unauthorized, invalid
from libs.common.http import (
    Page,
    check_if_match,
    encode_cursor,
    json_response,
    page_params,
    run_idempotent,
    time_cursor,
)
from libs.common.logging import get_logger

log = get_logger(__name__)

router = APIRouter()

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
PUBLIC: dict[str, Any] = {"security": []}
INVALID_LOGIN = "invalid username or password, or the account is temporarily locked"

# Secrets and passwords verified against a principal's stored hash. The hashes spent on
# unknown, disabled or locked principals (against a dummy) are not counted, nor are client
# secrets this replica verified before.
CREDENTIAL_CHECKS = Counter(
    "komar_gateway_credential_checks_total",
    "Secrets and passwords verified against a principal's own stored hash",
    ["grant_type"],
)
PASSWORD_CHECKS = CREDENTIAL_CHECKS.labels("password")
CLIENT_CHECKS = CREDENTIAL_CHECKS.labels("client_credentials")


def runtime(request: Request) -> GatewayRuntime:
    """The process's runtime (pool, keys, limits)."""
    rt: GatewayRuntime = request.app.state.runtime
    return rt


async def admin_principal(request: Request) -> Principal:
    """Dependency: a valid token of an enabled principal carrying the admin scope."""
    rt = runtime(request)
    principal = await rt.verifier.verify(bearer_token(request))
    if principal.sub in rt.guard.disabled:
        raise Unauthorized("this client or user is disabled")
    request.state.principal = principal
    principal.require("admin")
    return principal


# ---------------------------------------------------------------- OAuth 2.0 token endpoint


class OAuthError(Problem):
    """RFC 6749 §5.2 error, rendered as problem+json with `error` and `error_description`."""

    def __init__(
        self,
        error: str,
        description: str,
        *,
        status: int = 400,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(
            description,
            headers={**NO_STORE, **(headers or {})},
            error=error,
            error_description=description,
        )
        self.status = status
        self.title = {400: "Bad request", 401: "Unauthorized", 429: "Too many requests"}[status]
        self.slug = error.replace("_", "-")


def _invalid_client(description: str) -> OAuthError:
    return OAuthError(
        "invalid_client",
        description,
        status=401,
        headers={"WWW-Authenticate": 'Basic realm="komar", charset="UTF-8"'},
    )


def _invalid_grant(description: str = INVALID_LOGIN) -> OAuthError:
    return OAuthError(
        "invalid_grant",
        description,
        status=401,
        headers={"WWW-Authenticate": 'Bearer realm="komar"'},
    )


async def _form(request: Request) -> dict[str, str]:
    content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise OAuthError(
            "invalid_request",
            "send the parameters form-encoded (application/x-www-form-urlencoded)",
        )
    params: dict[str, str] = {}
    for key, value in (await request.form()).multi_items():
        if not isinstance(value, str):
            raise OAuthError("invalid_request", "parameters must be plain form fields")
        if key in params:
            raise OAuthError("invalid_request", f"parameter {key} is given more than once")
        params[key] = value
    return params


def _client_credentials(request: Request, params: dict[str, str]) -> tuple[str, str]:
    """RFC 6749 §2.3.1: HTTP Basic or client_id/client_secret form fields, not both."""
    header = request.headers.get("authorization")
    in_form = "client_secret" in params
    if header is not None:
        if in_form:
            raise OAuthError("invalid_request", "use one client authentication method, not two")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            raise _invalid_client("client authentication must use HTTP Basic or form fields")
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise _invalid_client("malformed HTTP Basic credentials") from exc
        client_id, sep, secret = decoded.partition(":")
        if not sep:
            raise _invalid_client("malformed HTTP Basic credentials")
        return unquote_plus(client_id), unquote_plus(secret)
    client_id, secret = params.get("client_id", ""), params.get("client_secret", "")
    if not client_id or not secret:
        raise _invalid_client("client authentication is required")
    return client_id, secret


def _source_address(request: Request, rt: GatewayRuntime) -> str:
    peer = request.client.host if request.client else ""
    return rt.trusted_proxies.client_address(peer, request.headers.get("x-forwarded-for"))


def _slow_down(wait: float, description: str) -> OAuthError:
    return OAuthError(
        "slow_down", description, status=429, headers={"Retry-After": domain.retry_after(wait)}
    )


def _reserve(limiter: domain.RateLimiter, key: str, description: str) -> None:
    """Spend a token of `key`'s bucket of failures before a slow check (429 when none is
    left): however many requests arrive at once, no more checks start than the bucket holds.
    A check that succeeds gives its token back."""
    wait = limiter.take(key, time.monotonic())
    if wait:
        raise _slow_down(wait, description)


BY_ADDRESS = "too many failed attempts from your address; retry later"
BY_CLIENT = "too many failed attempts for this client; retry later"


async def _client_grant(
    request: Request, rt: GatewayRuntime, params: dict[str, str], source: str
) -> Row[Any]:
    client_id, secret = _client_credentials(request, params)
    if len(client_id) > 64 or len(secret) > 256:
        raise _invalid_client("client authentication failed")
    async with rt.db.transaction() as conn:
        row = await store.get_client(conn, client_id, admin_areas=None)
    known = row is not None and rt.client_secret_known(client_id, secret, row.secret_hash)
    if row is not None and row.active and known:
        return row  # verified on this replica before: no slow hash, so no throttle either
    _reserve(rt.login_failures, source, BY_ADDRESS)
    if row is None:
        await asyncio.to_thread(domain.verify_secret, secret, domain.dummy_hash())
        log.info("auth.client.failed", client_id=None)
        raise _invalid_client("client authentication failed")
    try:
        _reserve(rt.client_failures, client_id, BY_CLIENT)
    except OAuthError:
        rt.login_failures.refund(source)
        raise
    CLIENT_CHECKS.inc()
    if await rt.client_secret_ok(client_id, secret, row.secret_hash) and row.active:
        rt.login_failures.refund(source)
        rt.client_failures.refund(client_id)
        return row
    log.info("auth.client.failed", client_id=row.client_id)
    raise _invalid_client("client authentication failed")


async def _password_grant(
    request: Request, rt: GatewayRuntime, params: dict[str, str], source: str
) -> Row[Any]:
    username = params.get("username", "").strip().lower()
    password = params.get("password", "")
    if not username or not password:
        raise OAuthError("invalid_request", "username and password are required")
    if len(username) > 64 or len(password) > 256:
        raise _invalid_grant()
    _reserve(rt.login_failures, source, BY_ADDRESS)
    settings = rt.settings
    # The attempt is reserved (counted as a failure) in the database before the password is
    # checked, so a burst of guesses gets at most `login_max_failures` checks between them.
    async with rt.db.transaction() as conn:
        row = await store.reserve_login(
            conn,
            username,
            max_failures=settings.login_max_failures,
            window_s=settings.login_failure_window_s,
            lock_for_s=settings.login_lockout_s,
        )
    if row is None:
        # Unknown, disabled, locked or at the limit: the same answer after the same work.
        await asyncio.to_thread(domain.verify_secret, password, domain.dummy_hash())
    else:
        PASSWORD_CHECKS.inc()
        if await asyncio.to_thread(domain.verify_secret, password, row.password_hash):
            async with rt.db.transaction() as conn:
                done = await store.login_succeeded(conn, row.user_id)
            if done is not None:
                rt.login_failures.refund(source)
                return done
    if row is None:
        log.info("auth.user.failed", checked=False)
    else:
        log.info("auth.user.failed", user_id=row.user_id, checked=True)
        if row.failures_since is None and row.locked_until is not None:
            log.warning("auth.user.locked", user_id=row.user_id, seconds=settings.login_lockout_s)
    raise _invalid_grant()


@router.post(
    "/oauth/token",
    tags=["auth"],
    summary="Get an access token (RFC 6749: client_credentials or password)",
    response_model=TokenOut,
    openapi_extra={
        **PUBLIC,
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "required": ["grant_type"],
                        "properties": {
                            "grant_type": {
                                "type": "string",
                                "enum": ["client_credentials", "password"],
                            },
                            "client_id": {"type": "string"},
                            "client_secret": {"type": "string"},
                            "username": {"type": "string"},
                            "password": {"type": "string", "format": "password"},
                            "scope": {"type": "string", "description": "Space-separated subset."},
                        },
                    }
                }
            },
        },
    },
)
async def token(request: Request) -> JSONResponse:
    """Issue a short-lived RS256 access token."""
    rt = runtime(request)
    source = _source_address(request, rt)
    params = await _form(request)
    grant_type = params.get("grant_type")
    if not grant_type:
        raise OAuthError("invalid_request", "grant_type is required")
    if grant_type == "client_credentials":
        row = await _client_grant(request, rt, params, source)
        sub = row.client_id
    elif grant_type == "password":
        row = await _password_grant(request, rt, params, source)
        sub = row.user_id
    else:
        raise OAuthError("unsupported_grant_type", "use client_credentials or password")
    try:
        scopes = domain.granted_scopes(row.scopes, params.get("scope"))
    except domain.RuleViolation as exc:
        raise OAuthError("invalid_scope", exc.message) from exc
    ttl = rt.settings.token_ttl_s
    claims = domain.access_claims(sub, row.org, row.org_type, scopes, row.areas)
    access_token = rt.keys.sign(
        claims, issuer=rt.settings.issuer, audience=rt.settings.audience, ttl_s=ttl
    )
    log.info("auth.token.issued", sub=sub, grant_type=grant_type)
    body = {
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": ttl,
        "scope": " ".join(scopes),
    }
    return JSONResponse(body, headers=NO_STORE)


@router.get("/.well-known/jwks.json", tags=["auth"], openapi_extra=PUBLIC)
async def jwks(request: Request) -> Response:
    """The public keys tokens are signed with (the active key and recently retired ones)."""
    return Response(
        await runtime(request).keys.fresh_jwks_body(),
        media_type="application/json",
        headers={"Cache-Control": "public, max-age=10"},
    )


@router.get("/.well-known/oauth-authorization-server", tags=["auth"], openapi_extra=PUBLIC)
async def authorization_server_metadata(request: Request) -> dict[str, Any]:
    """RFC 8414 metadata, so OAuth tooling configures itself."""
    base = str(request.base_url).rstrip("/")
    return {
        "issuer": runtime(request).settings.issuer,
        "token_endpoint": f"{base}/oauth/token",
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "grant_types_supported": ["client_credentials", "password"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "scopes_supported": sorted(SCOPES),
        "response_types_supported": ["token"],
    }


# ---------------------------------------------------------------- admin: helpers


def _client_out(row: Row[Any]) -> dict[str, Any]:
    return ClientOut.model_validate(row, from_attributes=True).model_dump(mode="json")


def _user_out(row: Row[Any], now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    locked = row.locked_until is not None and row.locked_until > now
    return UserOut.model_validate(
        {**row._mapping, "locked": locked}, from_attributes=False
    ).model_dump(mode="json")


def _next_cursor(rows: Any, page: Page, id_field: str) -> str | None:
    if len(rows) <= page.limit:
        return None
    last = rows[page.limit - 1]
    return encode_cursor(last.updated_at, getattr(last, id_field))


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


# ---------------------------------------------------------------- admin: clients


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
    rt = runtime(request)
    _check_rules(body, principal)
    secret = domain.new_client_secret()
    secret_hash = await asyncio.to_thread(domain.hash_secret, secret)
    created: dict[str, Any] = {}

    async def work(conn: AsyncConnection) -> Response:
        row = await store.insert_client(
            conn,
            client_id=domain.new_client_id(),
            name=body.name,
            org=body.org,
            org_type=body.org_type,
            scopes=body.scopes,
            areas=body.areas,
            rate_limit_per_second=body.rate_limit_per_second,
            secret_hash=secret_hash,
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
    page: Page = Depends(page_params),
    org: str | None = Query(None, max_length=100),
    active: bool | None = Query(None),
    principal: Principal = Depends(admin_principal),
) -> dict[str, Any]:
    rt = runtime(request)
    page = time_cursor(page, str)
    async with rt.db.transaction() as conn:
        rows = await store.list_clients(
            conn, page, org=org, active=active, admin_areas=principal.area_prefixes()
        )
    return {
        "items": [_client_out(r) for r in rows[: page.limit]],
        "next_cursor": _next_cursor(rows, page, "client_id"),
    }


@router.get("/v1/admin/clients/{client_id}", tags=["admin"], response_model=ClientOut)
async def get_client(
    client_id: str, request: Request, principal: Principal = Depends(admin_principal)
) -> Response:
    async with runtime(request).db.transaction() as conn:
        row = await store.get_client(conn, client_id, admin_areas=principal.area_prefixes())
    if row is None:
        raise NotFound("no such client")
    return json_response(_client_out(row), version=row.version)


async def _set_client_active(
    request: Request, principal: Principal, client_id: str, active: bool
) -> Response:
    rt = runtime(request)

    async def work(conn: AsyncConnection) -> Response:
        row = await store.get_client(
            conn, client_id, admin_areas=principal.area_prefixes(), for_update=True
        )
        if row is None:
            raise NotFound("no such client")
        if not active and client_id == domain.BOOTSTRAP_ADMIN:
            raise Conflict("the bootstrap admin client cannot be disabled")
        check_if_match(request.headers.get("if-match"), row.version)
        row = await store.set_client_active(conn, client_id, active) or row
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


# ---------------------------------------------------------------- admin: users


@router.post("/v1/admin/users", tags=["admin"], status_code=201, response_model=UserOut)
async def create_user(
    body: UserCreate, request: Request, principal: Principal = Depends(admin_principal)
) -> Response:
    rt = runtime(request)
    _check_rules(body, principal)
    minimum = rt.settings.min_password_length
    if len(body.password) < minimum:
        raise invalid("password", f"must be at least {minimum} characters long")
    if body.username in body.password.lower():
        raise invalid("password", "must not contain the username")
    password_hash = await asyncio.to_thread(domain.hash_secret, body.password)

    async def work(conn: AsyncConnection) -> Response:
        row = await store.insert_user(
            conn,
            user_id=domain.new_user_id(),
            username=body.username,
            name=body.name,
            org=body.org,
            org_type=body.org_type,
            scopes=body.scopes,
            areas=body.areas,
            rate_limit_per_second=body.rate_limit_per_second,
            password_hash=password_hash,
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
    page: Page = Depends(page_params),
    org: str | None = Query(None, max_length=100),
    active: bool | None = Query(None),
    principal: Principal = Depends(admin_principal),
) -> dict[str, Any]:
    rt = runtime(request)
    page = time_cursor(page, str)
    async with rt.db.transaction() as conn:
        rows = await store.list_users(
            conn, page, org=org, active=active, admin_areas=principal.area_prefixes()
        )
        now = await store.db_now(conn)
    return {
        "items": [_user_out(r, now) for r in rows[: page.limit]],
        "next_cursor": _next_cursor(rows, page, "user_id"),
    }


@router.get("/v1/admin/users/{user_id}", tags=["admin"], response_model=UserOut)
async def get_user(
    user_id: str, request: Request, principal: Principal = Depends(admin_principal)
) -> Response:
    async with runtime(request).db.transaction() as conn:
        row = await store.get_user(conn, user_id, admin_areas=principal.area_prefixes())
        now = await store.db_now(conn)
    if row is None:
        raise NotFound("no such user")
    return json_response(_user_out(row, now), version=row.version)


async def _change_user(
    request: Request, principal: Principal, user_id: str, action: str
) -> Response:
    rt = runtime(request)

    async def work(conn: AsyncConnection) -> Response:
        row = await store.get_user(
            conn, user_id, admin_areas=principal.area_prefixes(), for_update=True
        )
        if row is None:
            raise NotFound("no such user")
        check_if_match(request.headers.get("if-match"), row.version)
        if action == "unlock":
            changed = await store.unlock_user(conn, user_id)
        else:
            changed = await store.set_user_active(conn, user_id, action == "enable")
        row = changed or row
        now = await store.db_now(conn)
        log.info("admin.user.changed", user_id=user_id, action=action, by=principal.sub)
        return json_response(_user_out(row, now), version=row.version)

    answer = await run_idempotent(rt.db, rt.idempotency, request, principal, work)
    if action == "disable":
        rt.guard.disable(user_id)
    elif action == "enable":
        rt.guard.enable(user_id)
    return answer


@router.post("/v1/admin/users/{user_id}/disable", tags=["admin"], response_model=UserOut)
async def disable_user(
    user_id: str, request: Request, principal: Principal = Depends(admin_principal)
) -> Response:
    """Refuse new tokens to the user, and their existing tokens within seconds."""
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


# ---------------------------------------------------------------- admin: signing keys


@router.get("/v1/admin/keys", tags=["admin"], response_model=KeyList)
async def list_keys(
    request: Request, principal: Principal = Depends(admin_principal)
) -> dict[str, Any]:
    async with runtime(request).db.transaction() as conn:
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
    rt = runtime(request)

    async def work(conn: AsyncConnection) -> Response:
        new, old = await rt.keys.rotate_in(conn)
        log.info("admin.keys.rotated", kid=new, previous_kid=old, by=principal.sub)
        return json_response(RotationOut(kid=new, previous_kid=old).model_dump())

    answer = await run_idempotent(rt.db, rt.idempotency, request, principal, work)
    await rt.keys.reload()
    return answer
