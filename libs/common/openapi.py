"""The published OpenAPI document made exact, in one place for every service and the gateway.

FastAPI documents what a route returns when all goes well and a 422 of its own shape. The
answers every route shares come from the conventions (docs/api-guide.md#errors), not from
the route, so they are added here from what the route is:

- 422 always (validation, and the query/path rules of libs.common.inputs), 401 and 403
  for every authenticated operation, 404 for every operation that names a record (by
  path, query or body), 400/409/413 for every POST and PATCH (Idempotency-Key, state rules,
  body size), 412 for PATCH and for actions on an id (If-Match), 428 for
  PATCH;
- each as RFC 9457 `application/problem+json` with the `Problem` schema;
- every text parameter (query, path) with the pattern that refuses control characters;
- If-Match as a header parameter: required by PATCH, optional on actions on an id.

The gateway adds 429 (rate limit) to every operation when it merges the documents.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from libs.common.errors import PROBLEM_JSON
from libs.common.inputs import text_patterns

PROBLEM_REF = "#/components/schemas/Problem"

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Problem",
    "description": "An RFC 9457 problem document.",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "description": "For validation: every field at fault and why.",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
    "additionalProperties": True,
}

STATUS_DESCRIPTIONS: dict[int, str] = {
    400: "Bad request (a malformed Idempotency-Key, or an OAuth request error)",
    401: "Missing, invalid or expired credentials",
    403: "A scope is missing, or the place is outside your areas",
    404: "No such resource, or not visible to you",
    409: "The resource's state forbids it, or the same Idempotency-Key is in progress",
    412: "If-Match does not match the current ETag",
    413: "The body is larger than 1 MiB",
    422: "Invalid input: the problem's `errors` name each field",
    428: "If-Match is required",
    429: "Too many requests: retry after the Retry-After header's seconds",
}

_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def problem_response(status: int, description: str | None = None) -> dict[str, Any]:
    """An OpenAPI response object for a problem answer."""
    return {
        "description": description or STATUS_DESCRIPTIONS[status],
        "content": {PROBLEM_JSON: {"schema": {"$ref": PROBLEM_REF}}},
    }


def _statuses(path: str, method: str, operation: dict[str, Any]) -> set[int]:
    statuses = {422}
    if operation.get("security") != []:
        statuses |= {401, 403}
    on_id = "{" in path
    names_a_record = any(
        p.get("in") == "query" and str(p.get("name", "")).endswith("_id")
        for p in operation.get("parameters") or ()
    )
    # A record named by the path, a query or a body (a child, a fund…) may not be visible.
    if on_id or names_a_record or method in ("post", "patch", "put"):
        statuses.add(404)
    if method in ("post", "patch", "put"):
        statuses |= {400, 409, 413}
    if method == "patch":
        statuses |= {412, 428}
    if method == "post" and on_id:
        statuses.add(412)
    return statuses


def _if_match(required: bool) -> dict[str, Any]:
    return {
        "name": "If-Match",
        "in": "header",
        "required": required,
        "description": "The ETag you last read: required to change a resource, optional on an "
        "action (412 when it no longer matches).",
        "schema": {"type": "string"},
    }


def add_if_match(path: str, method: str, operation: dict[str, Any]) -> None:
    """Declare If-Match: required by PATCH, optional on an action on an id."""
    if method != "patch" and not (method == "post" and "{" in path):
        return
    parameters: list[dict[str, Any]] = operation.setdefault("parameters", [])
    if not any(p.get("in") == "header" and p.get("name") == "If-Match" for p in parameters):
        parameters.append(_if_match(method == "patch"))


def add_problem_answers(
    path: str, method: str, operation: dict[str, Any], extra: set[int] | None = None
) -> None:
    """Declare every problem answer an operation can give, each as problem+json."""
    responses: dict[str, Any] = operation.setdefault("responses", {})
    wanted = _statuses(path, method, operation) | (extra or set())
    declared = {int(code) for code in responses if code.isdigit() and int(code) >= 400}
    for status in sorted(wanted | declared):
        given = responses.get(str(status), {})
        description = given.get("description")
        if status == 422 or description in (None, "", "Validation Error"):
            description = STATUS_DESCRIPTIONS.get(status, description or "Error")
        responses[str(status)] = problem_response(status, description)
    operation["responses"] = dict(sorted(responses.items()))


def refine(doc: dict[str, Any]) -> dict[str, Any]:
    """Make a FastAPI-generated document exact (see the module's docstring), in place."""
    schemas: dict[str, Any] = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    for path, item in (doc.get("paths") or {}).items():
        for method in _METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            for parameter in operation.get("parameters") or ():
                if parameter.get("in") in ("query", "path"):
                    text_patterns(parameter.get("schema"))
            add_if_match(path, method, operation)
            add_problem_answers(path, method, operation)
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    if "#/components/schemas/HTTPValidationError" in repr(doc):
        raise ValueError("an operation refers to HTTPValidationError; use the Problem schema")
    return doc


def exact_openapi(generate: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """Wrap FastAPI's `app.openapi` so that the document it serves is refined, once."""
    refined: list[dict[str, Any]] = []

    def openapi() -> dict[str, Any]:
        if not refined:
            refined.append(refine(generate()))
        return refined[0]

    return openapi
