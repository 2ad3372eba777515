"""The routing hot path: a raw ASGI handler that verifies, rate-limits and forwards.

FastAPI is kept off this path on purpose (docs/architecture.md#performance-habits): the
request goes from the shared RequestContextMiddleware straight to a kept-alive connection
of `gateway.upstream`, and the answer streams back without its body being parsed.

A service may run as several replicas (`gateway.replicas` picks one per request); a replica
that refuses the connection is skipped and the request goes to the next one at once,
whatever its method, since it never left the gateway.
"""

from __future__ import annotations

import json
import time

from prometheus_client import Counter
from starlette.types import Receive, Scope, Send

from gateway.domain import retry_after
from gateway.replicas import Upstream
from gateway.runtime import GatewayRuntime
from gateway.upstream import Dropped, Malformed, Refused, Timeout, UpstreamError
from libs.common.errors import (
    PROBLEM_JSON,
    BadRequest,
    NotFound,
    Problem,
    TooManyRequests,
    Unauthorized,
    Unavailable,
)
from libs.common.logging import get_logger

log = get_logger(__name__)

# RFC 9110 §7.6.1 hop-by-hop fields, plus what the gateway itself sets or computes.
_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
_NOT_FORWARDED = _HOP_BY_HOP | {
    b"host",
    b"content-length",
    b"expect",
    b"x-request-id",
    b"forwarded",
    b"x-forwarded-for",
    b"x-forwarded-host",
    b"x-forwarded-proto",
    b"x-forwarded-port",
    b"x-forwarded-prefix",
    b"x-real-ip",
}
# uvicorn and RequestContextMiddleware add their own of these.
_NOT_RETURNED = _HOP_BY_HOP | {b"x-request-id", b"date", b"server"}
_RETRYABLE = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_BUFFER_LIMIT = 256 * 1024


class BadGateway(Problem):
    status, title, slug = 502, "Bad gateway", "bad-gateway"


class GatewayTimeout(Problem):
    status, title, slug = 504, "Gateway timeout", "gateway-timeout"


FAILOVERS = Counter(
    "komar_gateway_failovers_total",
    "Requests sent on to another replica after one refused the connection or dropped it",
    ["upstream"],
)


def _has_dot_segment(path: str) -> bool:
    return "/./" in path or "/../" in path or path.endswith(("/.", "/.."))


class Proxy:
    """Forwards /v1/<service>/… to the service, after the token and the rate limit."""

    def __init__(self, runtime: GatewayRuntime) -> None:
        self.rt = runtime
        cooldown = runtime.settings.upstream_cooldown_s
        self.upstreams = {
            name: Upstream(name, bases, f"/v1/{name}/*", cooldown)
            for name, bases in runtime.settings.upstreams().items()
        }

    def route(self, path: str) -> Upstream | None:
        """The upstream of a public path, if it is proxied."""
        if not path.startswith("/v1/"):
            return None
        return self.upstreams.get(path[4:].partition("/")[0])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI: forward a request whose path `route()` maps to an upstream."""
        upstream = self.route(scope["path"])
        if upstream is None:  # the caller routes only proxied paths here
            await send_problem(scope, send, NotFound("no such path"))
            return
        scope["route"] = upstream
        try:
            prepared = await self._prepare(upstream, scope, receive)
            if prepared is not None:
                await self._exchange(upstream, scope, send, *prepared)
        except Problem as problem:
            await send_problem(scope, send, problem)

    async def _prepare(
        self, upstream: Upstream, scope: Scope, receive: Receive
    ) -> tuple[str, str, list[tuple[str, str]], bytes, bool] | None:
        """Check the caller, read the body and build the upstream request (None: client left).

        The target is the raw path and query, to be put after a replica's base URL.
        """
        rt = self.rt
        authorization = b""
        connection = b""
        forwarded_for: list[bytes] = []
        host = b""
        idempotency_key = False
        headers: list[tuple[str, str]] = []
        for name, value in scope["headers"]:
            if name in _NOT_FORWARDED:
                if name == b"connection":
                    connection = value
                elif name == b"x-forwarded-for":
                    forwarded_for.append(value)
                elif name == b"host":
                    host = value
                continue
            if name == b"authorization":
                if authorization:
                    # The gateway and the service must judge the same credentials.
                    raise BadRequest("send one Authorization header")
                authorization = value
            elif name == b"idempotency-key":
                idempotency_key = True
            headers.append((name.decode("latin-1"), value.decode("latin-1")))
        if connection:
            named = {n.strip().lower() for n in connection.decode("latin-1").split(",")}
            headers = [h for h in headers if h[0].lower() not in named]

        # 1. who is calling
        scheme, _, token = authorization.partition(b" ")
        token = token.strip()
        if scheme.lower() != b"bearer" or not token:
            raise Unauthorized("missing bearer token", headers={"WWW-Authenticate": "Bearer"})
        principal = await rt.verifier.verify(token.decode("latin-1"))
        rt.guard.check(principal)

        # 2. how fast
        own = rt.guard.rates.get(principal.sub)
        if own is None:
            wait = rt.limiter.take(principal.sub, time.monotonic())
        else:
            wait = rt.limiter.take(principal.sub, time.monotonic(), own[0], own[1])
        if wait:
            raise TooManyRequests(
                "rate limit exceeded; retry later", headers={"Retry-After": retry_after(wait)}
            )

        path: str = scope["path"]
        if _has_dot_segment(path):
            raise BadRequest("dot segments are not allowed in paths")

        # 3. the body (RequestContextMiddleware enforces the size limit while we read)
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            if chunk:
                chunks.append(chunk)
            more = message.get("more_body", False)
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)

        # 4. forwarding facts and the request id
        client = scope.get("client")
        peer = client[0] if client else ""
        if forwarded_for and peer in rt.trusted_proxies:
            prior = ", ".join(v.decode("latin-1") for v in forwarded_for)
            headers.append(("X-Forwarded-For", f"{prior}, {peer}"))
        elif peer:
            headers.append(("X-Forwarded-For", peer))
        headers.append(("X-Forwarded-Proto", scope.get("scheme", "http")))
        if host:
            headers.append(("X-Forwarded-Host", host.decode("latin-1")))
        headers.append(("X-Request-ID", scope["state"]["request_id"]))

        raw_path: bytes = scope.get("raw_path") or path.encode()
        raw_path = raw_path.partition(b"?")[0]  # some servers put the query in raw_path
        query: bytes = scope.get("query_string", b"")
        target = raw_path.decode("latin-1")
        if query:
            target += "?" + query.decode("latin-1")
        method: str = scope["method"]
        retry = method in _RETRYABLE or idempotency_key
        return method, target, headers, body, retry

    async def _exchange(
        self,
        upstream: Upstream,
        scope: Scope,
        send: Send,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes,
        retry: bool,
    ) -> None:
        """Send the request to a replica and stream the answer back; map failures to problems.

        A replica that refuses the connection never saw the request: the next one gets it at
        once, whatever the method. A connection dropped without an answer may have carried
        the request, so only a retryable one (safe method or Idempotency-Key) is sent again,
        once, to the next replica.
        """
        pools = self.rt.pools
        index = upstream.pick()
        refused = 0
        while True:
            try:
                answer = await pools[upstream.bases[index]].request(method, target, headers, body)
            except Refused as exc:
                upstream.failed(index)
                refused += 1
                if refused < len(upstream.bases):
                    log.warning(
                        "proxy.replica_unreachable",
                        upstream=upstream.name,
                        replica=upstream.bases[index],
                        error=str(exc),
                    )
                    FAILOVERS.labels(upstream.name).inc()
                    index = upstream.next_after(index)
                    continue
                log.warning("proxy.upstream_unreachable", upstream=upstream.name, error=str(exc))
                raise Unavailable(
                    f"the {upstream.name} service is unreachable; retry shortly",
                    headers={"Retry-After": "2"},
                ) from exc
            except Timeout as exc:
                log.warning("proxy.upstream_timeout", upstream=upstream.name)
                raise GatewayTimeout(f"the {upstream.name} service did not answer in time") from exc
            except Dropped as exc:
                # The connection broke after the request may have left: a kept-alive
                # connection the replica had closed, or a replica that died.
                if retry:
                    retry = False
                    following = upstream.next_after(index, stay=True)
                    if following != index:
                        FAILOVERS.labels(upstream.name).inc()
                    index = following
                    continue
                log.warning(
                    "proxy.upstream_disconnected",
                    upstream=upstream.name,
                    replica=upstream.bases[index],
                )
                raise BadGateway(
                    f"the {upstream.name} service closed the connection",
                    headers={"Retry-After": "1"},
                ) from exc
            except Malformed as exc:
                log.warning("proxy.upstream_failed", upstream=upstream.name, error=str(exc))
                raise BadGateway(f"the {upstream.name} service gave no valid answer") from exc
            except Exception as exc:
                log.exception("proxy.failed", upstream=upstream.name)
                raise Problem("The gateway could not complete the request.") from exc
            break
        try:
            out = _response_headers(answer.headers)
            length = answer.content_length
            if method == "HEAD" or (length is not None and length <= _BUFFER_LIMIT):
                try:
                    data = b"" if method == "HEAD" else await answer.read()
                except Timeout as exc:
                    raise GatewayTimeout(
                        f"the {upstream.name} service did not finish its answer in time"
                    ) from exc
                except UpstreamError as exc:
                    raise BadGateway(
                        f"the {upstream.name} service broke off its answer",
                        headers={"Retry-After": "1"},
                    ) from exc
                await send({"type": "http.response.start", "status": answer.status, "headers": out})
                await send({"type": "http.response.body", "body": data})
                return
            # Streamed: once the head is sent, a failure can only cut the answer short.
            await send({"type": "http.response.start", "status": answer.status, "headers": out})
            async for chunk in answer.chunks():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            answer.close()


def _response_headers(raw: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    out: list[tuple[bytes, bytes]] = []
    connection = b""
    for name, value in raw:
        lower = name.lower()
        if lower in _NOT_RETURNED:
            if lower == b"connection":
                connection = value
            continue
        out.append((lower, value))
    if connection:
        named = {t.strip().lower().encode() for t in connection.decode("latin-1").split(",")}
        out = [h for h in out if h[0] not in named]
    return out


async def send_problem(scope: Scope, send: Send, problem: Problem) -> None:
    """Answer a problem+json from raw ASGI."""
    body = json.dumps(problem.body(scope.get("path"))).encode()
    headers = [
        (b"content-type", PROBLEM_JSON.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    headers += [
        (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in problem.headers.items()
    ]
    await send({"type": "http.response.start", "status": problem.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
