"""Hot routes served ahead of FastAPI's routing and dependency solving (`LeanRoute`),
derived from their FastAPI routes and checked when the app is built
(`libs.common.app.service_app(lean_endpoints=…)`)."""

from __future__ import annotations

import copy
import inspect
import json
from collections.abc import Callable
from typing import Any, get_type_hints

from fastapi import APIRouter, Request, params
from fastapi.responses import Response
from fastapi.routing import APIRoute
from starlette.convertors import StringConvertor
from starlette.routing import Match, Route
from starlette.types import Message, Receive, Scope, Send

from libs.common.auth import current_principal
from libs.common.runtime import ServiceRuntime, runtime_of


class LeanRoute(Route):
    """A hot FastAPI route served again ahead of FastAPI's routing and dependency solving,
    which cost more CPU than a whole read by id.

    Everything is taken from the FastAPI route when the app is built: its path (router
    prefix included), its methods, its endpoint and its body field. The endpoint may take
    only what a lean route supplies: the request, the principal (`PrincipalDep`), the
    runtime (`RuntimeDep` or a narrower type over `runtime_of`), its path parameters as
    text, and a JSON body; anything else is refused here, at start-up, with the parameter
    named. A request whose body is missing, is not declared JSON, does not parse or does
    not validate is handed to the FastAPI route itself, so every such answer is FastAPI's,
    word for word.
    """

    def __init__(self, route: APIRoute, rt: ServiceRuntime) -> None:
        endpoint = route.endpoint
        where = f"lean route {route.name} ({route.path})"
        if not inspect.iscoroutinefunction(endpoint):
            raise TypeError(f"{where}: the endpoint must be a coroutine function")
        returns = get_type_hints(endpoint).get("return")
        if not (isinstance(returns, type) and issubclass(returns, Response)):
            raise TypeError(f"{where}: the endpoint must return a Response")
        dependant = route.dependant
        self._fastapi = route
        self._endpoint = endpoint
        self._request = dependant.request_param_name
        self._principal: str | None = None
        self._runtime: dict[str, ServiceRuntime] = {}
        for dependency in dependant.dependencies:
            if dependency.call is current_principal and dependency.name is not None:
                self._principal = dependency.name
            elif dependency.call is runtime_of and dependency.name is not None:
                self._runtime[dependency.name] = rt
            else:
                called = getattr(dependency.call, "__name__", repr(dependency.call))
                raise TypeError(f"{where}: a lean route cannot supply the dependency {called}")
        for param in dependant.path_params:
            if param.field_info.annotation is not str or param.field_info.metadata:
                raise TypeError(f"{where}: path parameter {param.name} must be plain str")
        path_params = {p.name for p in dependant.path_params}
        if route.param_convertors.keys() != path_params or not all(
            isinstance(c, StringConvertor) for c in route.param_convertors.values()
        ):
            raise TypeError(f"{where}: the endpoint must take each path parameter, as text")
        self._body_field = route.body_field
        self._body: str | None = None
        if self._body_field is not None:
            body_params = dependant.body_params
            if (
                len(body_params) != 1
                or body_params[0] is not self._body_field
                or isinstance(self._body_field.field_info, params.Form)
            ):
                raise TypeError(f"{where}: the body must be one JSON body parameter")
            self._body = self._body_field.name
        supplied = {*self._runtime, *path_params}
        supplied.update(n for n in (self._request, self._principal, self._body) if n is not None)
        for name in inspect.signature(endpoint).parameters:
            if name not in supplied:
                raise TypeError(
                    f"{where}: a lean route cannot supply parameter {name!r} (it supplies the"
                    " request, the principal, the runtime, path parameters and a JSON body)"
                )
        methods = set(route.methods or ())
        super().__init__(
            route.path, endpoint, methods=methods, name=route.name, include_in_schema=False
        )
        self.methods = methods  # Starlette adds HEAD to GET; the declared route has none
        self.app = self._serve

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        arguments: dict[str, Any] = {**scope["path_params"], **self._runtime}
        if self._request is not None:
            arguments[self._request] = request
        if self._body is not None:
            raw = await request.body()
            body = self._valid_body(request, raw)
            if body is _HAND_ON:
                await self._fastapi.handle(scope, _replaying(raw, receive), send)
                return
            arguments[self._body] = body
        if self._principal is not None:
            arguments[self._principal] = await current_principal(request)
        response: Response = await self._endpoint(**arguments)
        await response(scope, receive, send)

    def _valid_body(self, request: Request, raw: bytes) -> Any:
        """The body as the FastAPI route would validate it (an optional one's default when
        none is sent); `_HAND_ON` when FastAPI answers for it (bad, missing or not JSON)."""
        field = self._body_field
        assert field is not None
        if not raw:
            if field.field_info.is_required() or field.field_info.validate_default:
                return _HAND_ON
            return copy.deepcopy(field.default)
        content_type = request.headers.get("content-type", "")
        if not (content_type == "application/json" or content_type.startswith("application/json;")):
            return _HAND_ON
        try:
            body, errors = field.validate(json.loads(raw))
        except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested too deep
            return _HAND_ON
        return _HAND_ON if errors else body

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match != Match.NONE:
            child["route"] = self  # the route template for metrics and the access log
        return match, child


_HAND_ON: Any = object()  # `LeanRoute._valid_body`: the FastAPI route answers for this body


def _replaying(body: bytes, receive: Receive) -> Receive:
    """`receive` giving again, first, the body already read."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay


def lean_route(router: APIRouter, endpoint: Callable[..., Any], rt: ServiceRuntime) -> LeanRoute:
    """The LeanRoute of the one route of `router` that `endpoint` serves."""
    routes = [r for r in router.routes if isinstance(r, APIRoute) and r.endpoint is endpoint]
    if len(routes) != 1:
        name = getattr(endpoint, "__name__", repr(endpoint))
        raise TypeError(f"{name} serves {len(routes)} routes of the router, not one")
    return LeanRoute(routes[0], rt)
