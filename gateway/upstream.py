"""The proxy's upstream client: kept-alive HTTP/1.1 connections to the services.

A general HTTP client does much per request that a reverse proxy talking to its own services
does not need (URL objects, cookie jars, redirects, auto headers, header multidicts); here a
request is one buffer written to a pooled connection and the answer is parsed by
`httptools` (llhttp, the parser uvicorn serves with). The head is read whole; the body is
either read whole or streamed with back-pressure, so a large answer never sits in memory.

Failures say whether the request can have reached the service: `Refused` (it never left),
`Dropped` (the connection broke after it may have been sent), `Timeout`, `Malformed`.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator, Iterable
from typing import cast
from urllib.parse import urlsplit

import httptools

_PAUSE_ABOVE = 256 * 1024  # buffered body bytes at which reading from the service pauses
_RESUME_BELOW = 64 * 1024


class UpstreamError(Exception):
    """The service gave no usable answer."""


class Refused(UpstreamError):
    """No connection could be made: the request never left the gateway."""


class Dropped(UpstreamError):
    """The connection closed before the whole answer arrived; the request may have been seen."""


class Timeout(UpstreamError):
    """The service did not answer within the read timeout."""


class Malformed(UpstreamError):
    """The service's answer is not valid HTTP/1.1."""


class Answer:
    """One response: status and raw headers at once, the body read whole or streamed.

    Read the body (or `close()`) exactly once; the connection then goes back to the pool
    if the service keeps it alive.
    """

    __slots__ = ("_conn", "_finished", "content_length", "headers", "status")

    def __init__(
        self, conn: _Connection, status: int, headers: list[tuple[bytes, bytes]], length: int | None
    ) -> None:
        self._conn = conn
        self._finished = False
        self.status = status
        self.headers = headers
        self.content_length = length

    async def read(self) -> bytes:
        """The whole body."""
        parts = [chunk async for chunk in self.chunks()]
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body, piece by piece as it arrives."""
        conn = self._conn
        try:
            while True:
                chunk = await conn.next_chunk()
                if chunk is None:
                    break
                yield chunk
        finally:
            self.close()

    def close(self) -> None:
        """Done with the answer: its connection goes back to the pool if the body was read
        to its end and the service keeps it alive, else it is closed. Safe to call twice."""
        if not self._finished:
            self._finished = True
            self._conn.finish()


class _Connection(asyncio.Protocol):
    """One kept-alive connection and the answer being parsed on it."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self._reset()

    def _reset(self) -> None:
        self._headers: list[tuple[bytes, bytes]] = []
        self._head: asyncio.Future[None] | None = None
        self._body: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._paused = False
        self._complete = False
        self._error: UpstreamError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._keep_alive = False
        self._discard_body = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(Malformed(str(exc)))
            self._abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._complete:
            return
        head = self._head
        if head is not None and head.done() and not self._keep_alive and self._error is None:
            # A body without Content-Length or chunking ends when the connection does.
            framing = (b"content-length", b"transfer-encoding")
            if not any(n.lower() in framing for n, _ in self._headers):
                self.on_message_complete()
                return
        self._fail(Dropped("the service closed the connection"))

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._keep_alive = self.parser.should_keep_alive()
        head = self._head
        if head is not None and not head.done():
            head.set_result(None)

    def on_body(self, body: bytes) -> None:
        if self._discard_body:
            return
        self._body.append(body)
        self._buffered += len(body)
        if self._buffered > _PAUSE_ABOVE and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self._complete = True
        self._wake()

    # the request

    async def exchange(
        self, request: bytes, timeout: float, *, head_only: bool
    ) -> tuple[int, list[tuple[bytes, bytes]]]:
        """Send a request; return the status and headers of its answer."""
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self._head = loop.create_future()
        self._discard_body = head_only
        self.transport.write(request)
        try:
            async with asyncio.timeout(timeout):
                await self._head
        except TimeoutError as exc:
            self._abort()
            raise Timeout("the service did not answer in time") from exc
        except UpstreamError:
            self._abort()
            raise
        if head_only:
            # llhttp reads a HEAD answer's Content-Length as a body to come: never reuse.
            self._complete = True
            self._keep_alive = False
        return self.parser.get_status_code(), self._headers

    async def next_chunk(self) -> bytes | None:
        """The next piece of body, or None at its end."""
        while True:
            if self._body:
                chunk = self._body.popleft()
                self._buffered -= len(chunk)
                if self._paused and self._buffered < _RESUME_BELOW and self.transport is not None:
                    self._paused = False
                    self.transport.resume_reading()
                return chunk
            if self._complete:
                return None
            if self._error is not None:
                raise self._error
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(self.pool.read_timeout):
                    await self._waiter
            except TimeoutError as exc:
                self._abort()
                raise Timeout("the service stopped sending its answer") from exc
            finally:
                self._waiter = None

    def finish(self) -> None:
        """The caller is done with the answer: pool the connection or close it."""
        reusable = self._complete and self._keep_alive and not self.closed and not self._body
        self._reset()
        if reusable:
            self.pool.release(self)
        else:
            self._abort()
            self.pool.release(self)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: UpstreamError) -> None:
        self._error = error
        head = self._head
        if head is not None and not head.done():
            head.set_exception(error)
        self._wake()

    def _abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class Pool:
    """Kept-alive connections to one service replica (scheme http only: the services
    listen on the cluster's private network)."""

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float,
        read_timeout: float,
        keepalive_s: float,
        limit: asyncio.Semaphore,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"upstream {base_url!r}: only http://host[:port] is supported")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.prefix = parts.path.rstrip("/").encode("latin-1")
        self.host_header = parts.netloc.encode("latin-1")
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.keepalive_s = keepalive_s
        self._limit = limit
        self._idle: list[_Connection] = []
        self._busy: set[_Connection] = set()

    async def request(
        self,
        method: str,
        target: str,
        headers: Iterable[tuple[str, str]],
        body: bytes,
    ) -> Answer:
        """Send one request; its answer once the head has arrived.

        A kept-alive connection the service closed while idle fails as `Dropped` like any
        other broken connection; the caller decides whether the request may be sent again.
        """
        lines = [f"{method} ".encode("latin-1") + self.prefix + target.encode("latin-1")]
        lines[0] += b" HTTP/1.1\r\nHost: " + self.host_header
        for name, text in headers:
            lines.append(f"{name}: {text}".encode("latin-1"))
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(b"Content-Length: %d" % len(body))
        request = b"\r\n".join(lines) + b"\r\n\r\n" + body
        conn = await self._acquire()
        try:
            status, raw = await conn.exchange(
                request, self.read_timeout, head_only=method == "HEAD"
            )
        except BaseException:
            conn.finish()
            raise
        length = None
        for field, value in raw:
            if field.lower() == b"content-length" and value.isdigit():
                length = int(value)
        return Answer(conn, status, raw, length)

    async def _acquire(self) -> _Connection:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if conn.closed or now - conn.idle_since > self.keepalive_s:
                conn._abort()
                self._limit.release()
                continue
            self._busy.add(conn)
            return conn
        await self._limit.acquire()
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: _Connection(self), self.host, self.port
                )
        except TimeoutError as exc:
            self._limit.release()
            raise Refused("connecting to the service timed out") from exc
        except OSError as exc:
            self._limit.release()
            raise Refused(f"connecting to the service failed: {exc.strerror or exc}") from exc
        except BaseException:
            self._limit.release()
            raise
        self._busy.add(conn)
        return conn

    def release(self, conn: _Connection) -> None:
        """A connection's answer is done with: keep it for the next request or let it go."""
        if conn not in self._busy:
            return
        self._busy.discard(conn)
        if conn.closed:
            self._limit.release()
            return
        conn.idle_since = time.monotonic()
        self._idle.append(conn)

    async def close(self) -> None:
        """Close every connection."""
        for conn in [*self._idle, *self._busy]:
            conn._abort()
        for _ in range(len(self._idle) + len(self._busy)):
            self._limit.release()
        self._idle.clear()
        self._busy.clear()
