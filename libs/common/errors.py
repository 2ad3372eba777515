"""One exception family, rendered as RFC 9457 problem+json."""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from libs.common.logging import exception_facts, get_logger

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://komar.example.org/problems/"
_UNPARSEABLE_BODY = "There was an error parsing the body"
_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


class Problem(Exception):
    """An error the client should see; subclasses fix status and title."""

    status = 500
    title = "Internal server error"
    slug = "internal"

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = errors
        self.headers = headers or {}
        self.extra = extra

    def body(self, instance: str | None = None) -> dict[str, Any]:
        """The problem document."""
        doc: dict[str, Any] = {
            "type": TYPE_BASE + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            doc["instance"] = instance
        if self.errors is not None:
            doc["errors"] = self.errors
        doc.update(self.extra)
        return doc


class BadRequest(Problem):
    status, title, slug = 400, "Bad request", "bad-request"


class Unauthorized(Problem):
    status, title, slug = 401, "Unauthorized", "unauthorized"

    def __init__(self, detail: str | None = None, **kw: Any) -> None:
        kw.setdefault("headers", {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        super().__init__(detail, **kw)


class Forbidden(Problem):
    status, title, slug = 403, "Forbidden", "forbidden"


class NotFound(Problem):
    status, title, slug = 404, "Not found", "not-found"


class MethodNotAllowed(Problem):
    status, title, slug = 405, "Method not allowed", "method-not-allowed"


class Conflict(Problem):
    status, title, slug = 409, "Conflict", "conflict"


class Gone(Problem):
    status, title, slug = 410, "Gone", "gone"


class PreconditionFailed(Problem):
    status, title, slug = 412, "Precondition failed", "precondition-failed"


class PayloadTooLarge(Problem):
    status, title, slug = 413, "Payload too large", "payload-too-large"


class UnsupportedMediaType(Problem):
    status, title, slug = 415, "Unsupported media type", "unsupported-media-type"


class Unprocessable(Problem):
    status, title, slug = 422, "Unprocessable content", "validation"


class PreconditionRequired(Problem):
    status, title, slug = 428, "Precondition required", "precondition-required"


class TooManyRequests(Problem):
    status, title, slug = 429, "Too many requests", "rate-limited"


class Unavailable(Problem):
    status, title, slug = 503, "Service unavailable", "unavailable"


_Row = TypeVar("_Row")


def found(row: _Row | None, what: str) -> _Row:
    """`row`, or 404 "no such {what}" when there is none (absent, or not visible to the
    caller: both answer the same, like a malformed id in `libs.common.http.parse_id`)."""
    if row is None:
        raise NotFound(f"no such {what}")
    return row


def invalid(field: str, message: str) -> Unprocessable:
    """A 422 naming one bad field."""
    return Unprocessable(f"{field}: {message}", errors=[{"field": field, "message": message}])


def problem_response(problem: Problem, request: Request | None = None) -> JSONResponse:
    """Render a Problem as problem+json."""
    instance = request.url.path if request is not None else None
    return JSONResponse(
        problem.body(instance),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        headers=problem.headers,
    )


_STATUS_PROBLEMS: dict[int, type[Problem]] = {
    cls.status: cls
    for cls in (
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        MethodNotAllowed,
        Conflict,
        PreconditionFailed,
        PayloadTooLarge,
        UnsupportedMediaType,
        Unprocessable,
        PreconditionRequired,
        TooManyRequests,
        Unavailable,
    )
}


def _field_of(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def validation_errors(exc_errors: Any) -> list[dict[str, str]]:
    """Pydantic errors as {field, message}, without echoing the input (it may be personal)."""
    return [{"field": _field_of(tuple(e.get("loc", ()))), "message": e["msg"]} for e in exc_errors]


def _allowed_methods(request: Request) -> str:
    """Every method some route of the app serves at the request's path (Starlette names
    only the first route's)."""
    allowed = []
    for method in _METHODS:
        probe = {**request.scope, "method": method}
        if any(route.matches(probe)[0] is Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return ", ".join(allowed)


def install_error_handlers(app: FastAPI) -> None:
    """Make every error of the app a problem+json answer."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc, request)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = validation_errors(exc.errors())
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        return problem_response(Unprocessable(detail, errors=errors), request)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.detail == _UNPARSEABLE_BODY:
            # FastAPI's answer to a body it could not decode (not UTF-8, nested too deep)
            return problem_response(invalid("body", "not valid JSON"), request)
        cls = _STATUS_PROBLEMS.get(exc.status_code)
        if cls is None:
            problem = Problem(str(exc.detail))
            problem.status = exc.status_code
            problem.title = str(exc.detail)
        else:
            problem = cls(str(exc.detail) if exc.detail else None)
        problem.headers = {**problem.headers, **(exc.headers or {})}
        if exc.status_code == 405:
            problem.headers["Allow"] = _allowed_methods(request)
        return problem_response(problem, request)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Type and place only: the message may quote a statement's parameters.
        get_logger().error("request.failed", path=request.url.path, **exception_facts(exc))
        return problem_response(Problem("The server could not complete the request."), request)
