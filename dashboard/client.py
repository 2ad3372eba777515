"""The dashboard's one way out: HTTP to the gateway, with the signed-in user's token.

Every answer the pages use comes through `GatewayClient.call`, which turns the API's
answers into what a page does with them: 401 ends the session, 404 is the not-found page
(a record the user may not see is one that does not exist), 403 the not-allowed page, a
problem on a form is shown beside the form, and an unreachable gateway is "try again".
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from dashboard.sessions import Profile, Session, SessionStore
from libs.common.logging import get_logger

log = get_logger(__name__)

SIGN_IN_SCOPES = ""  # every scope the user has


class SessionExpired(Exception):
    """The token was refused or could not be renewed: the user must sign in again."""


class NotFound(Exception):
    """The record does not exist, or this user may not see it (the same to them)."""


class Forbidden(Exception):
    """The user is signed in but may not do this."""


class Unavailable(Exception):
    """The gateway did not answer, or answered with a server error."""


@dataclass
class ApiProblem(Exception):
    """A problem+json answer the user can act on (a form to correct, a conflict)."""

    status: int
    title: str
    detail: str
    errors: list[dict[str, Any]] = field(default_factory=list)
    retry_after: str | None = None

    def __str__(self) -> str:
        return f"{self.status} {self.title}: {self.detail}"

    def field_errors(self) -> list[dict[str, str]]:
        """The API's field errors, as the forms' `field_errors` macro reads them."""
        return [
            {"field": str(e.get("field", "")), "message": str(e.get("message", ""))}
            for e in self.errors
        ]


@dataclass
class Grant:
    """A token answer of the gateway."""

    access_token: str
    expires_in: float
    refresh_token: str | None


# The most of X-Forwarded-For passed on: its rightmost hops, the ones the gateway reads.
MAX_FORWARDED_FOR = 512


@dataclass(frozen=True)
class Origin:
    """Whose request a call to the gateway serves: its request id, and the browser's address
    as this process saw it (its peer, after the X-Forwarded-For hops of any proxy before
    it). The gateway believes the chain only when it trusts this process as a proxy
    (KOMAR_TRUSTED_PROXIES), walking it from the right as it does for any proxy: so a
    staff member's failed sign-ins count against their own address, not against the
    dashboard's, which every staff member shares."""

    request_id: str
    forwarded_for: str = ""

    @classmethod
    def of(cls, request_id: str, peer: str, forwarded: list[str]) -> Origin:
        hops = [h.strip() for value in forwarded for h in value.split(",") if h.strip()]
        chain = ", ".join([*hops, peer] if peer else hops)
        if len(chain) > MAX_FORWARDED_FOR:
            chain = chain[-MAX_FORWARDED_FOR:].partition(",")[2].strip()
        return cls(request_id, chain)

    def headers(self) -> dict[str, str]:
        sent = {"X-Request-ID": self.request_id}
        if self.forwarded_for:
            sent["X-Forwarded-For"] = self.forwarded_for
        return sent


class SignInRefused(Exception):
    def __init__(self, reason: str, retry_after: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason  # "invalid" or "busy"
        self.retry_after = retry_after


def _problem(r: httpx.Response) -> ApiProblem:
    try:
        body = r.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    found = body.get("errors")
    errors: list[Any] = found if isinstance(found, list) else []
    return ApiProblem(
        status=r.status_code,
        title=str(body.get("title") or r.reason_phrase),
        detail=str(body.get("detail") or body.get("error_description") or ""),
        errors=[e for e in errors if isinstance(e, dict)],
        retry_after=r.headers.get("retry-after"),
    )


def _keep(session: Session, grant: Grant) -> None:
    """The session's tokens from now on: the grant's."""
    session.access_token = grant.access_token
    session.expires_at = time.monotonic() + grant.expires_in
    session.refresh_token = grant.refresh_token or session.refresh_token


class GatewayClient:
    """An HTTP/1.1 client of the gateway, kept alive for the life of the process."""

    def __init__(self, base_url: str, timeout_s: float, sessions: SessionStore) -> None:
        self.sessions = sessions
        self.http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(timeout_s, connect=5.0),
            limits=httpx.Limits(max_connections=50, max_keepalive_connections=20),
            follow_redirects=False,
        )

    async def close(self) -> None:
        await self.http.aclose()

    async def ready(self) -> bool:
        try:
            r = await self.http.get("/healthz", timeout=3.0)
        except httpx.HTTPError:
            return False
        return r.status_code == 200

    # ------------------------------------------------------------------ tokens

    async def _token(self, form: dict[str, str], origin: Origin) -> Grant:
        try:
            r = await self.http.post("/oauth/token", data=form, headers=origin.headers())
        except httpx.HTTPError as exc:
            raise Unavailable("the gateway did not answer") from exc
        if r.status_code == 200:
            body = r.json()
            return Grant(
                access_token=str(body["access_token"]),
                expires_in=float(body.get("expires_in", 900)),
                refresh_token=body.get("refresh_token"),
            )
        if r.status_code == 429:
            raise SignInRefused("busy", r.headers.get("retry-after"))
        if 400 <= r.status_code < 500:  # wrong, locked, disabled, or refused as malformed
            raise SignInRefused("invalid")
        raise Unavailable(f"the gateway answered {r.status_code}")

    async def sign_in(self, username: str, password: str, origin: Origin) -> Grant:
        """The password grant; SignInRefused for a wrong, locked or disabled login (the
        gateway answers all three alike) or too many tries."""
        form = {"grant_type": "password", "username": username, "password": password}
        return await self._token(form, origin)

    async def revoke(self, refresh_token: str, origin: Origin) -> None:
        """End a sign-in's refresh tokens at the gateway (RFC 7009), best effort."""
        try:
            await self.http.post(
                "/oauth/revoke",
                data={"token": refresh_token, "token_type_hint": "refresh_token"},
                headers=origin.headers(),
            )
        except httpx.HTTPError:
            log.warning("revoke_failed")

    async def profile(self, access_token: str, origin: Origin) -> tuple[Profile, str]:
        """Who the token is for, and their language (`GET /v1/me`)."""
        body = await self._send("GET", "/v1/me", access_token, origin)
        profile = Profile(
            sub=str(body["sub"]),
            username=str(body.get("username") or body["sub"]),
            name=str(body.get("name") or body.get("username") or ""),
            org=str(body["org"]),
            org_type=str(body["org_type"]),
            scopes=frozenset(body.get("scopes") or ()),
            areas=tuple(body.get("areas") or ()),
        )
        return profile, str(body.get("locale") or "en")

    async def _renew(self, session: Session, origin: Origin) -> None:
        """A fresh access token for the session, or the session ends."""
        if not session.refresh_token:
            raise SessionExpired()
        try:
            grant = await self._token(
                {"grant_type": "refresh_token", "refresh_token": session.refresh_token},
                origin,
            )
        except SignInRefused as exc:
            raise SessionExpired() from exc
        _keep(session, grant)

    async def change_password(
        self, session: Session, current: str, new: str, origin: Origin
    ) -> None:
        """Change the signed-in user's password (`POST /v1/me/password`; ApiProblem when
        refused). The gateway then ends every sign-in of theirs, so this session signs in
        again with the new password and goes on."""
        body = {"current_password": current, "new_password": new}
        await self.call(session, "POST", "/v1/me/password", origin=origin, json=body)
        form = {"grant_type": "password", "username": session.profile.username, "password": new}
        try:
            grant = await self._token(form, origin)
        except SignInRefused as exc:
            raise SessionExpired() from exc
        _keep(session, grant)

    # ------------------------------------------------------------------ API calls

    async def call(
        self,
        session: Session,
        method: str,
        path: str,
        *,
        origin: Origin,
        params: dict[str, Any] | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
        idempotency_key: str | None = None,
        raw: bool = False,
    ) -> Any:
        """The JSON answer of `method path` with the session's token (the response itself
        when `raw`); errors become the exceptions above."""
        if session.ended:
            raise SessionExpired()
        if session.needs_renewal():
            await self._renew(session, origin)
        extra = dict(headers or {})
        if method != "GET":
            extra["Idempotency-Key"] = idempotency_key or uuid.uuid4().hex
        # A token refused before its time (keys rotated, user disabled) gets one more try
        # with a renewed token, then the session ends.
        for last in (not session.refresh_token, True):
            try:
                return await self._send(
                    method,
                    path,
                    session.access_token,
                    origin,
                    params=params,
                    json=json,
                    headers=extra,
                    raw=raw,
                )
            except SessionExpired:
                if last:
                    raise
                await self._renew(session, origin)
        raise AssertionError("unreachable")

    async def _send(
        self,
        method: str,
        path: str,
        token: str,
        origin: Origin,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
        raw: bool = False,
    ) -> Any:
        sent = {"Authorization": f"Bearer {token}", **origin.headers(), **(headers or {})}
        query = {k: v for k, v in (params or {}).items() if v not in (None, "")}
        try:
            r = await self.http.request(method, path, params=query, json=json, headers=sent)
        except httpx.HTTPError as exc:
            log.warning("gateway_unreachable", path=path, error=type(exc).__name__)
            raise Unavailable("the gateway did not answer") from exc
        if r.status_code < 300:
            if raw:
                return r
            return r.json() if r.content else None
        if r.status_code == 401:
            raise SessionExpired()
        if r.status_code == 404:
            raise NotFound()
        if r.status_code == 403:
            raise Forbidden(_problem(r).detail)
        if r.status_code >= 500:
            log.warning("gateway_error", path=path, status=r.status_code)
            raise Unavailable(f"the gateway answered {r.status_code}")
        raise _problem(r)
