"""The gateway's OAuth 2.0 routes: the token endpoint (RFC 6749), token revocation
(RFC 7009), its keys and metadata.

Logins are throttled twice: per source address and per client in memory
(`domain.RateLimiter`), and per user in the database (`store.reserve_login`).

A user who signs in with a password also gets a refresh token (RFC 6749 §6), rotated at each
use as the OAuth security BCP asks: each refresh marks the token used, in one statement, and
answers the next token of the sign-in's family; a used token presented again means two
parties hold the family, so the whole family is revoked. Two refreshes of one token at once
are one use and one reuse: the family ends (the dashboard refreshes one session at a time).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_plus

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import Counter
from sqlalchemy import Row

from gateway import domain, store
from gateway.models import clients
from gateway.runtime import GatewayRuntime, request_runtime
from gateway.schemas import TokenOut
from libs.common.auth import SCOPES
from libs.common.errors import Problem
from libs.common.inputs import control_character_in
from libs.common.logging import get_logger

log = get_logger(__name__)

router = APIRouter()

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
PUBLIC: dict[str, Any] = {"security": []}
INVALID_LOGIN = "invalid username or password, or the account is temporarily locked"
# One answer for every refused refresh: unknown, expired, used, revoked, or a user disabled
# or locked out.
INVALID_REFRESH = "the refresh token is invalid, expired or revoked; sign in again"

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


# The parameters of the token and revocation endpoints; any other is ignored.
PARAMETERS = frozenset(
    {
        "grant_type",
        "client_id",
        "client_secret",
        "username",
        "password",
        "scope",
        "refresh_token",
        "token",
        "token_type_hint",
    }
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
        if key not in PARAMETERS:
            continue  # RFC 6749 §3.1: unrecognised parameters are ignored, repeated or not
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


def source_address(request: Request, rt: GatewayRuntime) -> str:
    """The caller's address: its peer, or from a trusted proxy the first untrusted hop of
    X-Forwarded-For from the right (KOMAR_TRUSTED_PROXIES)."""
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
    if len(client_id) > 64 or len(secret) > 256 or control_character_in(client_id):
        raise _invalid_client("client authentication failed")
    async with rt.db.transaction() as conn:
        row = await store.get_principal(conn, clients, client_id, admin_areas=None)
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
    if len(username) > 64 or len(password) > 256 or control_character_in(username):
        raise _invalid_grant()  # no account has such a name
    row = await checked_user(
        rt, source, username, password, lambda wait: _slow_down(wait, BY_ADDRESS)
    )
    if row is None:
        raise _invalid_grant()
    return row


async def checked_user(
    rt: GatewayRuntime,
    source: str,
    username: str,
    password: str,
    busy: Callable[[float], Exception],
) -> Row[Any] | None:
    """The enabled, unlocked user whose password this is, their failures forgotten; None
    otherwise, after the same work. Every check first spends a try of the address's budget
    (`busy(wait)` is raised when none is left) and gives it back when the password is
    right. The attempt is also reserved (counted as a failure) in the database before the
    password is checked, so a burst of guesses gets at most `login_max_failures` checks
    between them, and the one that reaches it locks the account (`store.reserve_login`)."""
    wait = rt.login_failures.take(source, time.monotonic())
    if wait:
        raise busy(wait)
    settings = rt.settings
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
        log.info("auth.user.failed", checked=False)
        return None
    PASSWORD_CHECKS.inc()
    if await asyncio.to_thread(domain.verify_secret, password, row.password_hash):
        async with rt.db.transaction() as conn:
            done = await store.login_succeeded(conn, row.user_id)
        if done is not None:
            rt.login_failures.refund(source)
            return done
    log.info("auth.user.failed", user_id=row.user_id, checked=True)
    if row.failures_since is None and row.locked_until is not None:
        log.warning("auth.user.locked", user_id=row.user_id, seconds=settings.login_lockout_s)
    return None


def _granted(held: Any, requested: str | None) -> list[str]:
    """The scopes of a new access token: the requested subset of `held`, or all of them."""
    try:
        return domain.granted_scopes(held, requested)
    except domain.RuleViolation as exc:
        raise OAuthError("invalid_scope", exc.message) from exc


async def _start_refresh_family(rt: GatewayRuntime, user_id: str, scopes: list[str]) -> str:
    """The first refresh token of a sign-in (a new family), with the scopes it granted."""
    token = domain.new_refresh_token()
    settings = rt.settings
    async with rt.db.transaction() as conn:
        await store.insert_refresh_token(
            conn,
            domain.refresh_token_hash(token),
            user_id=user_id,
            family_id=domain.new_refresh_family(),
            scopes=scopes,
            idle_s=settings.refresh_idle_s,
            absolute_s=settings.refresh_absolute_s,
        )
    return token


async def _refresh_grant(
    rt: GatewayRuntime, params: dict[str, str], source: str
) -> tuple[Row[Any], list[str], str]:
    """RFC 6749 §6 with rotation: the user's current row, the scopes of the new access token
    (the user's scopes now, within the sign-in's, narrowed by `scope`), and the family's next
    refresh token. Every refusal answers the same invalid_grant."""
    presented = params.get("refresh_token", "")
    if not presented:
        raise OAuthError("invalid_request", "refresh_token is required")
    _reserve(rt.login_failures, source, BY_ADDRESS)
    if not domain.is_refresh_token(presented):
        log.info("auth.refresh.failed", reason="malformed")
        raise _invalid_grant(INVALID_REFRESH)
    token_hash = domain.refresh_token_hash(presented)
    following = domain.new_refresh_token()
    async with rt.db.transaction() as conn:
        used = await store.use_refresh_token(conn, token_hash)
        if used is None:
            # Not usable: unknown, expired or revoked; or used before, which revokes its family.
            reused = await store.revoke_refresh_family(conn, token_hash, only_if_used=True)
        else:
            # Refusals from here roll the use back: the token stays as it was.
            user = await store.user_for_refresh(conn, used.user_id)
            if user is None:
                log.info("auth.refresh.failed", reason="user", user_id=used.user_id)
                raise _invalid_grant(INVALID_REFRESH)
            scopes = _granted(set(user.scopes) & set(used.scopes), params.get("scope"))
            await store.insert_refresh_token(
                conn,
                domain.refresh_token_hash(following),
                user_id=user.user_id,
                family_id=used.family_id,
                scopes=used.scopes,
                idle_s=rt.settings.refresh_idle_s,
                family_expires_at=used.family_expires_at,
            )
            rt.login_failures.refund(source)
            return user, scopes, following
    if reused is not None:
        log.warning("auth.refresh.reused", user_id=reused.user_id)
    else:
        log.info("auth.refresh.failed", reason="unusable")
    raise _invalid_grant(INVALID_REFRESH)


@router.post(
    "/oauth/token",
    tags=["auth"],
    summary="Get an access token (RFC 6749: client_credentials, password or refresh_token)",
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
                                "enum": ["client_credentials", "password", "refresh_token"],
                            },
                            "client_id": {"type": "string"},
                            "client_secret": {"type": "string"},
                            "username": {"type": "string"},
                            "password": {"type": "string", "format": "password"},
                            "refresh_token": {
                                "type": "string",
                                "format": "password",
                                "description": "The refresh_token grant: the last refresh "
                                "token answered to this sign-in (each is used once).",
                            },
                            "scope": {"type": "string", "description": "Space-separated subset."},
                        },
                    }
                }
            },
        },
    },
)
async def token(request: Request) -> JSONResponse:
    """Issue a short-lived RS256 access token; to a user, a refresh token with it (used once:
    each refresh answers the next)."""
    rt = request_runtime(request)
    source = source_address(request, rt)
    params = await _form(request)
    grant_type = params.get("grant_type")
    if not grant_type:
        raise OAuthError("invalid_request", "grant_type is required")
    refresh_token: str | None = None
    if grant_type == "client_credentials":
        row = await _client_grant(request, rt, params, source)
        sub, username = row.client_id, None
        scopes = _granted(row.scopes, params.get("scope"))
    elif grant_type == "password":
        row = await _password_grant(request, rt, params, source)
        sub, username = row.user_id, row.username
        scopes = _granted(row.scopes, params.get("scope"))
        refresh_token = await _start_refresh_family(rt, row.user_id, scopes)
    elif grant_type == "refresh_token":
        row, scopes, refresh_token = await _refresh_grant(rt, params, source)
        sub, username = row.user_id, row.username
    else:
        raise OAuthError(
            "unsupported_grant_type", "use client_credentials, password or refresh_token"
        )
    ttl = rt.settings.token_ttl_s
    claims = domain.access_claims(sub, row.org, row.org_type, scopes, row.areas, username)
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
    if refresh_token is not None:
        body["refresh_token"] = refresh_token
    return JSONResponse(body, headers=NO_STORE)


@router.post(
    "/oauth/revoke",
    tags=["auth"],
    summary="Revoke a refresh token and every token of its sign-in (RFC 7009)",
    response_class=Response,
    responses={
        200: {
            "description": "Revoked, or not a token the gateway knows: the same answer "
            "(RFC 7009 §2.2), with an empty body."
        }
    },
    openapi_extra={
        **PUBLIC,
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "required": ["token"],
                        "properties": {
                            "token": {
                                "type": "string",
                                "format": "password",
                                "minLength": 1,
                                "description": "A refresh token of the sign-in to end.",
                            },
                            "token_type_hint": {
                                "type": "string",
                                "description": "Optional, and ignored: only refresh tokens "
                                "are revoked (an access token runs out within 15 minutes).",
                            },
                        },
                    }
                }
            },
        },
    },
)
async def revoke(request: Request) -> Response:
    """End a user's sign-in: its refresh tokens are refused from now on (the access tokens
    already issued run out by themselves). The token itself is the credential: no client
    authentication is needed."""
    rt = request_runtime(request)
    source = source_address(request, rt)
    params = await _form(request)
    presented = params.get("token", "")
    if not presented:
        raise OAuthError("invalid_request", "token is required")
    # Counted as a failure of the address unless it revoked something (like a failed login).
    _reserve(rt.login_failures, source, BY_ADDRESS)
    revoked = None
    if domain.is_refresh_token(presented):
        async with rt.db.transaction() as conn:
            revoked = await store.revoke_refresh_family(
                conn, domain.refresh_token_hash(presented), only_if_used=False
            )
    if revoked is not None:
        rt.login_failures.refund(source)
        log.info("auth.refresh.revoked", user_id=revoked.user_id)
    return Response(status_code=200, headers=NO_STORE)


@router.get("/.well-known/jwks.json", tags=["auth"], openapi_extra=PUBLIC)
async def jwks(request: Request) -> Response:
    """The public keys tokens are signed with (the active key and recently retired ones)."""
    return Response(
        await request_runtime(request).keys.fresh_jwks_body(),
        media_type="application/json",
        headers={"Cache-Control": "public, max-age=10"},
    )


@router.get("/.well-known/oauth-authorization-server", tags=["auth"], openapi_extra=PUBLIC)
async def authorization_server_metadata(request: Request) -> dict[str, Any]:
    """RFC 8414 metadata, so OAuth tooling configures itself."""
    base = str(request.base_url).rstrip("/")
    return {
        "issuer": request_runtime(request).settings.issuer,
        "token_endpoint": f"{base}/oauth/token",
        "revocation_endpoint": f"{base}/oauth/revoke",
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "grant_types_supported": ["client_credentials", "password", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        # A refresh token is its own credential: revoking one needs no client authentication.
        "revocation_endpoint_auth_methods_supported": ["none"],
        "scopes_supported": sorted(SCOPES),
        "response_types_supported": ["token"],
    }
