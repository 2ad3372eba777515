"""The dashboard's ASGI app: pages, static files, sign-in sessions, HTML error pages."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Scope

from dashboard import SERVICE, fonts
from dashboard.client import (
    ApiProblem,
    Forbidden,
    GatewayClient,
    NotFound,
    SessionExpired,
    Unavailable,
)
from dashboard.pages import ROUTERS
from dashboard.sessions import SessionStore
from dashboard.settings import DashboardSettings
from dashboard.web import (
    CsrfFailed,
    DrainTooLarge,
    NeedSignIn,
    SecurityHeaders,
    View,
    draft_of_ended,
    path_of,
    view_of,
)
from libs.common import places
from libs.common.app import NO_TELEMETRY, RequestContextMiddleware
from libs.common.errors import Problem
from libs.common.logging import exception_facts, get_logger

log = get_logger(__name__)
STATIC = Path(__file__).parent / "static"


def create_app(settings: DashboardSettings | None = None) -> FastAPI:
    settings = settings or DashboardSettings()
    sessions = SessionStore(settings.dashboard_max_sessions, settings.dashboard_idle_s)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        places.load()
        app.state.client = GatewayClient(
            settings.gateway_url, settings.dashboard_gateway_timeout_s, sessions
        )
        try:
            yield
        finally:
            await app.state.client.close()

    app = FastAPI(
        title="Komar dashboard",
        lifespan=lifespan,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        telemetry=NO_TELEMETRY,
    )
    app.state.settings = settings
    app.state.sessions = sessions
    app.add_middleware(
        RequestContextMiddleware,
        service=SERVICE,
        max_body_bytes=settings.max_body_bytes,
        render_problem=refusal_page,
    )
    app.add_middleware(SecurityHeaders)
    app.add_middleware(DrainTooLarge, limit=settings.max_body_bytes)  # outermost
    install_error_pages(app)
    for router in ROUTERS:
        app.include_router(router)
    app.include_router(fonts.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> JSONResponse:
        ok = await request.app.state.client.ready()
        return JSONResponse(
            {"status": "ready" if ok else "unready", "checks": {"gateway": ok}},
            status_code=200 if ok else 503,
        )

    return app


# The middleware's own refusals, as pages: (title, body) by status.
REFUSALS = {
    404: ("error.not_found.title", "error.not_found.body"),
    413: ("error.bad_request.title", "error.too_large"),
    422: ("error.bad_request.title", "error.bad_address"),
}


def refusal_page(scope: Scope, problem: Problem) -> tuple[str, bytes]:
    """A refusal of the request-context middleware (a control character in the address, a
    body over the limit, a failure nothing else answered) as a page in the user's language,
    drawn as if at "/", so that the refused address is never written back."""
    title, body = REFUSALS.get(
        problem.status, ("error.unavailable.title", "error.unavailable.body")
    )
    try:
        home = {**scope, "path": "/", "raw_path": b"/", "query_string": b""}
        view = view_of(Request(home), signed_in=False)
        page = view.render("error.html", status=problem.status, title_key=title, body_key=body)
        return "text/html; charset=utf-8", bytes(page.body)
    except Exception as exc:  # the page itself failed: plain words, never a trace
        log.error("refusal_page_failed", **exception_facts(exc))
        return "text/plain; charset=utf-8", f"{problem.status} {problem.title}\n".encode()


def _error_page(request: Request, status: int, title: str, body: str) -> Response:
    view = view_of(request, signed_in=False)
    return view.render("error.html", status=status, title_key=title, body_key=body)


def install_error_pages(app: FastAPI) -> None:
    """Every error is a page in the user's language, never a stack trace or JSON."""

    @app.exception_handler(NeedSignIn)
    async def _sign_in(request: Request, exc: NeedSignIn) -> Response:
        view = view_of(request, signed_in=False)
        return view.redirect(view.url("/sign-in", next=exc.next_path))

    @app.exception_handler(SessionExpired)
    async def _expired(request: Request, exc: SessionExpired) -> Response:
        view = view_of(request, signed_in=False)
        draft = await draft_of_ended(view)
        if view.session is not None:
            view.sessions.end(view.session, draft)
        if draft is not None:
            target = draft.path
        elif request.method == "GET":
            target = path_of(request)
        else:
            target = "/"
        return RedirectResponse(view.url("/sign-in", next=target, expired=1), status_code=303)

    @app.exception_handler(CsrfFailed)
    async def _csrf(request: Request, exc: CsrfFailed) -> Response:
        return _error_page(request, 403, "error.bad_request.title", "signin.form_expired")

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> Response:
        return _error_page(request, 404, "error.not_found.title", "error.not_found.body")

    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, exc: Forbidden) -> Response:
        return _error_page(request, 403, "error.forbidden.title", "error.forbidden.body")

    @app.exception_handler(Unavailable)
    async def _unavailable(request: Request, exc: Unavailable) -> Response:
        return _error_page(request, 503, "error.unavailable.title", "error.unavailable.body")

    @app.exception_handler(ApiProblem)
    async def _problem(request: Request, exc: ApiProblem) -> Response:
        view: View = view_of(request, signed_in=False)
        return view.render(
            "error.html",
            status=exc.status,
            title_key="error.bad_request.title",
            body_key="",
            detail=exc.detail or exc.title,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return _error_page(request, 404, "error.not_found.title", "error.not_found.body")
        page = _error_page(request, exc.status_code, "error.bad_request.title", "error.try_again")
        if exc.headers and "Allow" in exc.headers:  # a 405 says which methods there are
            page.headers["Allow"] = exc.headers["Allow"]
        return page

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        return _error_page(request, 400, "error.bad_request.title", "error.try_again")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.error("page_failed", path=request.url.path, **exception_facts(exc))
        return _error_page(request, 500, "error.unavailable.title", "error.unavailable.body")
