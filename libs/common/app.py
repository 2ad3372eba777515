"""The parts every Komar ASGI app shares: request context, size limit, health, metrics."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol
from urllib.parse import unquote_to_bytes

import structlog
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from libs.common.errors import (
    PROBLEM_JSON,
    NotFound,
    PayloadTooLarge,
    Problem,
    install_error_handlers,
    invalid,
)
from libs.common.inputs import CONTROL_MESSAGE, control_character_in
from libs.common.lean import lean_route
from libs.common.logging import exception_facts, get_logger
from libs.common.openapi import exact_openapi
from libs.common.runtime import ServiceRuntime

log = get_logger(__name__)

REQUESTS = Counter(
    "komar_http_requests_total", "HTTP requests answered", ["service", "method", "route", "status"]
)
LATENCY = Histogram(
    "komar_http_request_seconds",
    "HTTP request latency",
    ["service", "method", "route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

REQUEST_ID_HEADER = b"x-request-id"
# How the middleware writes a refusal of its own (a control character in the path or query,
# a body too large, a failure nothing else answered): the content type and body for a
# request and its problem. Problem+json unless the app gives its own (the dashboard: a page).
ProblemRenderer = Callable[[Scope, Problem], tuple[str, bytes]]


def problem_json(scope: Scope, problem: Problem) -> tuple[str, bytes]:
    return PROBLEM_JSON, json.dumps(problem.body(scope.get("path"))).encode()


def _valid_request_id(value: str) -> bool:
    return 0 < len(value) <= 128 and value.isascii() and value.isprintable()


def _query_problem(query: bytes) -> Problem | None:
    """422 naming the first query parameter that is not UTF-8 text without control
    characters; None when every one is fine (see libs.common.inputs)."""
    if not query or (query.isascii() and b"%" not in query):
        return None  # nothing encoded: no control character and nothing but ASCII
    for pair in query.split(b"&"):
        name_raw, _, value_raw = pair.partition(b"=")
        try:
            name = unquote_to_bytes(name_raw.replace(b"+", b" ")).decode()
        except UnicodeDecodeError:
            return invalid("query", "parameter names must be UTF-8 text")
        if control_character_in(name):
            return invalid("query", "parameter names must not hold control characters")
        try:
            value = unquote_to_bytes(value_raw.replace(b"+", b" ")).decode()
        except UnicodeDecodeError:
            return invalid(name, "not UTF-8 text")
        if control_character_in(value):
            return invalid(name, CONTROL_MESSAGE)
    return None


class RequestContextMiddleware:
    """X-Request-ID in and out, the 1 MiB body limit, metrics and one access log line."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        service: str,
        max_body_bytes: int,
        render_problem: ProblemRenderer = problem_json,
    ) -> None:
        self.app = app
        self.service = service
        self.max_body_bytes = max_body_bytes
        self.render_problem = render_problem
        # The metric children of each (method, route, status), looked up once.
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = ""
        length: bytes | None = None
        for name, value in scope["headers"]:
            if name == REQUEST_ID_HEADER:
                sent = value.decode("latin-1")
            elif name == b"content-length":
                length = value
        request_id = sent if _valid_request_id(sent) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500
        too_large = False
        limit = self.max_body_bytes
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen, too_large
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    too_large = True
                    raise _BodyTooLarge
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if too_large:  # whatever the app made of the cut body, the answer is 413
                if message["type"] == "http.response.start":
                    status = 413
                    await self._too_large(scope, send, request_id)
                return
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (REQUEST_ID_HEADER, request_id.encode()),
                ]
            await send(message)

        started_answer = False

        async def send_tracked(message: Message) -> None:
            nonlocal started_answer
            if message["type"] == "http.response.start":
                started_answer = True
            await send_with_id(message)

        try:
            if length is not None and length.isdigit() and int(length) > limit:
                too_large = True
                status = 413
                await self._too_large(scope, send, request_id)
                return
            refused = _path_problem(scope["path"]) or _query_problem(scope["query_string"])
            if refused is not None:
                status = refused.status
                await self._problem(scope, send, request_id, refused)
                return
            await self.app(scope, limited_receive, send_tracked)
        except _BodyTooLarge:
            status = 413
            await self._too_large(scope, send, request_id)
        except Exception as exc:
            # Whatever escaped the app's own handlers: logged without its message (it may
            # quote a statement's parameters), answered 500 if nothing was sent yet, and
            # not re-raised, so that the server does not log it again in full.
            status = 500
            route = getattr(scope.get("route"), "path", "unmatched")
            log.error("request.failed", route=route, **exception_facts(exc))
            if not started_answer:
                await self._problem(
                    scope, send, request_id, Problem("The server could not complete the request.")
                )
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            elapsed = time.perf_counter() - started
            key = (scope["method"], template, status)
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = (
                    REQUESTS.labels(self.service, key[0], template, str(status)),
                    LATENCY.labels(self.service, key[0], template),
                )
            series[0].inc()
            series[1].observe(elapsed)
            log.info(
                "http.request",
                method=scope["method"],
                route=template,
                status=status,
                ms=round(elapsed * 1000, 2),
            )
            structlog.contextvars.unbind_contextvars("request_id")

    async def _too_large(self, scope: Scope, send: Send, request_id: str) -> None:
        problem = PayloadTooLarge(f"request bodies are limited to {self.max_body_bytes} bytes")
        await self._problem(scope, send, request_id, problem, close=True)

    async def _problem(
        self, scope: Scope, send: Send, request_id: str, problem: Problem, *, close: bool = False
    ) -> None:
        content_type, body = self.render_problem(scope, problem)
        headers = [
            (b"content-type", content_type.encode()),
            (b"content-length", str(len(body)).encode()),
            (REQUEST_ID_HEADER, request_id.encode()),
        ]
        if close:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": problem.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _path_problem(path: str) -> Problem | None:
    """A path holding a control character names nothing: 404."""
    if control_character_in(path):
        return NotFound("no such resource")
    return None


class _BodyTooLarge(Exception):
    pass


def request_id(request: Request) -> str:
    """The request's id (set by RequestContextMiddleware)."""
    return str(getattr(request.state, "request_id", "") or uuid.uuid4().hex)


def install_common(app: FastAPI, *, service: str, max_body_bytes: int, ready: Any) -> None:
    """Error handlers, the request-context middleware and /healthz, /readyz, /metrics.

    `ready` is an async callable returning a dict of check name -> bool.
    """
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware, service=service, max_body_bytes=max_body_bytes)
    app.openapi = exact_openapi(app.openapi)  # type: ignore[method-assign]

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        checks: dict[str, bool] = await ready()
        ok = all(checks.values())
        return JSONResponse(
            {"status": "ready" if ok else "unready", "checks": checks},
            status_code=200 if ok else 503,
        )

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


# FastAPI's native OpenTelemetry stays off: Komar exports Prometheus metrics and JSON logs,
# and the per-request provider checks cost CPU on every call.
NO_TELEMETRY: Any = {"tracing": False, "metrics": False, "logs": False}


class Runtime(Protocol):
    """What a process holds while it runs (a ServiceRuntime, the GatewayRuntime)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def runtime_lifespan(
    rt: Runtime, on_stop: Callable[[], Awaitable[None]] | None = None
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """An app's lifespan: `rt` started with the app and stopped with it (`on_stop` first)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await rt.start()
        try:
            yield
        finally:
            if on_stop is not None:
                await on_stop()
            await rt.stop()

    return lifespan


def service_app(
    rt: ServiceRuntime,
    *,
    title: str,
    description: str,
    router: APIRouter,
    lean_endpoints: Sequence[Callable[..., Awaitable[Response]]] = (),
    on_stop: Callable[[], Awaitable[None]] | None = None,
) -> FastAPI:
    """A service's ASGI app: its routes, the shared conventions, and the runtime started
    and stopped with the app (`on_stop` runs first on the way down). The routes of
    `lean_endpoints` are also served as LeanRoutes, ahead of every other route."""
    app = FastAPI(
        title=title,
        version="1.0.0",
        description=description,
        lifespan=runtime_lifespan(rt, on_stop),
        telemetry=NO_TELEMETRY,
    )
    app.state.runtime = rt
    app.state.verifier = rt.verifier
    install_common(
        app, service=rt.service, max_body_bytes=rt.settings.max_body_bytes, ready=rt.ready
    )
    lean_routes = [lean_route(router, endpoint, rt) for endpoint in lean_endpoints]
    app.include_router(router)
    app.router.routes[0:0] = lean_routes
    return app
