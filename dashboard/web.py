"""What every page shares: the templates, the request's view (session, language, CSRF),
forms and their drafts, and the answer headers that keep a page safe in a browser."""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dashboard import i18n
from dashboard.client import GatewayClient, Origin, SessionExpired
from dashboard.sessions import (
    LANGUAGE_COOKIE,
    SESSION_COOKIE,
    VISITOR_COOKIE,
    Draft,
    Session,
    SessionStore,
    public_fields,
    same_token,
)
from libs.common.app import request_id as _request_id
from libs.common.inputs import control_character_in

HERE = Path(__file__).parent
MAX_FORM_FIELDS = 200
MAX_CURSOR = 500
# A form sent twice (a double click, a reload that posts again) is one request to the API:
# its Idempotency-Key comes from the page the form was on (`_once`) and what it sends. The
# API answers a duplicate still running with 409; it is asked again this often, this far apart.
DUPLICATE_TRIES = 20
DUPLICATE_WAIT_S = 0.25
# The longest address kept to come back to (after signing in, in a form's `_from`): a
# longer one comes back as its path alone, so a redirect never outgrows what a server reads.
MAX_BACK = 2048

# No script but our own files, no inline script or style, nothing from another origin.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


class SecurityHeaders:
    """Every answer carries the page headers; pages are not cached, since they show
    children's records: only a static file found (an error under /static/ is a page too)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.headers = [(k.lower().encode(), v.encode()) for k, v in PAGE_HEADERS.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith(("/static/", "/fonts/"))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0] != b"cache-control"]
                headers += self.headers
                if static and message["status"] < 400:
                    cache = b"public, max-age=86400"
                    headers += [(b"cache-control", cache)]
                else:
                    headers += [(b"cache-control", b"no-store")]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class DrainTooLarge:
    """A body over the limit is read to its end (and dropped) before the page refusing it is
    sent: closing the connection on a browser still sending would show it a connection
    error, not the page saying what happened. Past `drain_bytes` the connection just closes."""

    def __init__(self, app: ASGIApp, *, limit: int, drain_bytes: int = 16 * 1024 * 1024) -> None:
        self.app = app
        self.limit = limit
        self.drain_bytes = drain_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            length = dict(scope["headers"]).get(b"content-length", b"")
            if length.isdigit() and self.limit < int(length) <= self.drain_bytes:
                message = await receive()
                while message["type"] == "http.request" and message.get("more_body"):
                    message = await receive()

                async def drained() -> Message:
                    return {"type": "http.request", "body": b"", "more_body": False}

                receive = drained
        await self.app(scope, receive, send)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["number"] = i18n.format_number
    return env


TEMPLATES = _environment()


class NeedSignIn(Exception):
    """No live session: the sign-in page, then back to `next`."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class CsrfFailed(Exception):
    """A form arrived without its CSRF token, or with another session's."""


def local_path(value: str | None, default: str = "/") -> str:
    """`value` if it is a path on this site (never another origin), else `default`."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    if control_character_in(value):  # a control character in a Location names nothing
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return default
    return value


def path_of(request: Request) -> str:
    """The request's path and query, to come back to: the path alone when that is too long,
    "/" when even the path is."""
    path, query = request.url.path, request.url.query
    whole = path + (f"?{query}" if query else "")
    if len(whole) <= MAX_BACK:
        return whole
    return path if len(path) <= MAX_BACK else "/"


@dataclass
class View:
    """One request's page: who asks, in which language, with which CSRF token."""

    request: Request
    sessions: SessionStore
    client: GatewayClient
    session: Session | None
    lang: str
    visitor: str
    new_visitor: bool = False
    flash: list[str] = field(default_factory=list)
    # This page's own token, sent back by its forms (`csrf` macro) to name what they post.
    once: str = field(default_factory=lambda: secrets.token_urlsafe(16))

    @property
    def t(self) -> i18n.Translate:
        return i18n.translator(self.lang)

    @property
    def request_id(self) -> str:
        return _request_id(self.request)

    @property
    def origin(self) -> Origin:
        """Whose request the page's calls to the gateway serve (`client.Origin`)."""
        peer = self.request.client.host if self.request.client else ""
        return Origin.of(self.request_id, peer, self.request.headers.getlist("x-forwarded-for"))

    @property
    def csrf(self) -> str:
        if self.session is not None and not self.session.ended:
            return self.session.csrf
        return self.sessions.visitor_csrf(self.visitor)

    @property
    def user(self) -> Session:
        assert self.session is not None
        return self.session

    def may(self, *scopes: str) -> bool:
        return self.session is not None and self.session.profile.may(*scopes)

    def place(self, code: str | None) -> str:
        return i18n.place_name(code, self.lang)

    def place_label(self, code: str | None) -> str:
        return i18n.place_label(code, self.lang)

    def date(self, value: Any) -> str:
        return i18n.format_date(value, self.lang)

    def url(self, path: str, **params: Any) -> str:
        query = {k: v for k, v in params.items() if v not in (None, "")}
        return path + (f"?{urlencode(query, doseq=True)}" if query else "")

    def page_url(self, cursor: str | None) -> str:
        """This page's URL with its list at `cursor` (None: the first page)."""
        params = {k: v for k, v in self.request.query_params.items() if k != "cursor"}
        return self.url(self.request.url.path, **params, cursor=cursor)

    def cursor(self, name: str = "cursor") -> str | None:
        """A list's cursor from the query, bounded (the API judges it)."""
        return self.request.query_params.get(name, "")[:MAX_CURSOR] or None

    # ------------------------------------------------------------------ the API

    async def list_page(self, path: str, cursor: str | None, **params: Any) -> Any:
        """A page of an API list; a cursor the API refuses (made up, cut short, another
        list's) gives the first page, never an error page."""
        from dashboard.client import ApiProblem

        try:
            return await self.get(path, cursor=cursor, **params)
        except ApiProblem:
            if cursor is None:
                raise
            return await self.get(path, **params)

    async def get(self, path: str, **params: Any) -> Any:
        return await self.client.call(self.user, "GET", path, origin=self.origin, params=params)

    async def post(self, path: str, body: Any = None, *, idempotency_key: str | None = None) -> Any:
        """POST to the API; a form posted again from the same page with the same content
        (a double click) is the same request: the API replays its first answer."""
        from dashboard.client import ApiProblem

        sent = body if body is not None else {}
        key = idempotency_key or self._form_key(path, sent)
        tries = 0
        while True:
            try:
                return await self.client.call(
                    self.user,
                    "POST",
                    path,
                    origin=self.origin,
                    json=sent,
                    idempotency_key=key,
                )
            except ApiProblem as exc:
                # The first of the two still running: its answer comes in a moment.
                tries += 1
                duplicate = exc.status == 409 and "Idempotency-Key" in exc.detail
                if not duplicate or tries >= DUPLICATE_TRIES:
                    raise
                await asyncio.sleep(DUPLICATE_WAIT_S)

    def _form_key(self, path: str, body: Any) -> str | None:
        """The Idempotency-Key of a form's POST: who, which page (`_once`), where, what;
        None (a fresh key) for a form that did not come from a page of ours."""
        fields: dict[str, str] = getattr(self.request.state, "form", None) or {}
        once = fields.get("_once", "")
        if not once or len(once) > 64 or self.session is None:
            return None
        what = json.dumps([self.user.profile.sub, once, path, body], sort_keys=True, default=str)
        return hashlib.sha256(what.encode()).hexdigest()

    async def raw(self, path: str, *, accept: str | None = None, **params: Any) -> Any:
        headers = {"Accept": accept} if accept else None
        return await self.client.call(
            self.user,
            "GET",
            path,
            origin=self.origin,
            params=params,
            headers=headers,
            raw=True,
        )

    # ------------------------------------------------------------------ forms

    async def form(self) -> dict[str, str]:
        """The posted form, its CSRF token checked; only text fields, bounded."""
        fields = await posted_fields(self.request)
        sent = fields.get("csrf", "")
        if not sent or not same_token(sent, self.csrf):
            raise CsrfFailed()
        self.request.state.form = fields
        return fields

    def draft_for(self, path: str) -> dict[str, str]:
        """What the user typed on the form at `path` before their session ended (once)."""
        session = self.session
        if session is None or session.draft is None or session.draft.path != path:
            return {}
        fields = session.draft.fields
        session.draft = None
        self.flash.append(self.t("signin.draft_restored"))
        return fields

    # ------------------------------------------------------------------ answers

    def render(self, template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
        page = TEMPLATES.get_template(template)
        if self.session is not None and self.session.flash:
            self.flash.extend(self.session.flash)
            self.session.flash.clear()
        context.setdefault("active", "")
        html = page.render(v=self, t=self.t, lang=self.lang, **context)
        response = HTMLResponse(html, status_code=status)
        self.set_cookies(response)
        return response

    def redirect(self, url: str, *, flash: str | None = None) -> RedirectResponse:
        if flash and self.session is not None:
            self.session.flash.append(flash)
        response = RedirectResponse(local_path(url), status_code=303)
        self.set_cookies(response)
        return response

    def set_cookies(self, response: Response) -> None:
        if self.new_visitor:
            self.cookie(response, VISITOR_COOKIE, self.visitor)
        if self.request.cookies.get(LANGUAGE_COOKIE) != self.lang:
            self.cookie(response, LANGUAGE_COOKIE, self.lang, max_age=365 * 86400)

    def cookie(
        self, response: Response, name: str, value: str, *, max_age: int | None = None
    ) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",
            httponly=True,
            samesite="strict",
            secure=self.request.app.state.settings.secure_cookies,
        )


def view_of(request: Request, *, signed_in: bool = True) -> View:
    """The request's view; NeedSignIn when a page needs a live session and has none."""
    state = request.app.state
    session = state.sessions.get(request.cookies.get(SESSION_COOKIE))
    live = session if session is not None and not session.ended else None
    if live is not None:
        lang = live.lang
    else:
        lang = i18n.language(request.cookies.get(LANGUAGE_COOKIE))
    visitor = request.cookies.get(VISITOR_COOKIE, "")
    fresh = not (16 <= len(visitor) <= 64)
    if fresh:
        visitor = secrets.token_urlsafe(24)
    view = View(request, state.sessions, state.client, session, lang, visitor, fresh)
    if signed_in and live is None:
        if session is not None:
            raise SessionExpired()  # idle too long, or its token could not be renewed
        raise NeedSignIn(path_of(request))
    return view


async def posted_fields(request: Request) -> dict[str, str]:
    """The text fields of a posted form, bounded."""
    form = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)
    return {k: v for k, v in form.items() if isinstance(v, str)}


async def draft_of_ended(view: View) -> Draft | None:
    """What the user was posting when their session ended, to give back after they sign in
    again: a form of that session's own (its CSRF token), whose page is its `_from` field."""
    session = view.session
    if session is None or view.request.method != "POST":
        return None
    fields: dict[str, str] | None = getattr(view.request.state, "form", None)
    if fields is None:
        fields = await posted_fields(view.request)
        if not same_token(fields.get("csrf", ""), session.csrf):
            return None
    back = local_path(fields.get("_from"), "")
    if not back:
        return None
    return Draft(path=back, fields=public_fields(fields))


def record_id(value: str) -> str:
    """An id from a page's path, as sent on to the API: anything but a plain id is the
    not-found page before any request leaves (no `..`, no slashes, no query)."""
    from dashboard.client import NotFound

    if not (0 < len(value) <= 64) or not all(c.isalnum() or c in "-_" for c in value):
        raise NotFound()
    return value


@dataclass
class Refused:
    """Why the API refused what a form sent: a sentence and the fields it names, to show
    beside the form again with what the user typed."""

    problem: str
    errors: list[dict[str, str]] = field(default_factory=list)
    api: Any = None  # the ApiProblem, for a page that words some refusals its own way


async def attempt(view: View, call: Awaitable[Any], *, not_found: str | None = None) -> Any:
    """The API's answer to a form's call, or `Refused`: a problem the user can act on, a
    scope they lack, or (with `not_found`) a record the service does not know yet: a service
    learns a child a moment after the registry does. Without it, the not-found page."""
    from dashboard.client import ApiProblem, Forbidden, NotFound

    try:
        return await call
    except ApiProblem as exc:
        return Refused(exc.detail or exc.title, exc.field_errors(), exc)
    except Forbidden as exc:
        return Refused(str(exc) or view.t("error.forbidden.body"))
    except NotFound:
        if not_found is None:
            raise
        return Refused(not_found)


async def quietly(call: Awaitable[Any]) -> Any:
    """The answer of a call a page can do without (a tile, a side list), or None when the
    user may not make it or Komar does not answer."""
    from dashboard.client import ApiProblem, Forbidden, NotFound, Unavailable

    try:
        return await call
    except (ApiProblem, Forbidden, NotFound, Unavailable):
        return None
