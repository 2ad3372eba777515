"""The proxy's upstream client against a raw TCP server that answers exactly as scripted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from deploy.local.infra import free_port
from gateway.upstream import Dropped, Malformed, Pool, Refused, Timeout

# A handler gets the bytes of one request head (and body) and writes the answer itself.
Handler = Callable[[bytes, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[bool]]


class Server:
    """Counts connections; each request goes to `handler`, which says whether to keep going."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                request = head + (await reader.readexactly(length) if length else b"")
                self.requests.append(request)
                if not await self.handler(request, reader, writer):
                    return
        finally:
            writer.close()


@asynccontextmanager
async def scripted(handler: Handler) -> AsyncIterator[tuple[Server, Pool]]:
    server = Server(handler)
    port = free_port()
    listener = await asyncio.start_server(server.serve, "127.0.0.1", port)
    pool = Pool(
        f"http://127.0.0.1:{port}",
        connect_timeout=1.0,
        read_timeout=0.5,
        keepalive_s=4.0,
        limit=asyncio.Semaphore(8),
    )
    try:
        yield server, pool
    finally:
        await pool.close()
        listener.close()
        await listener.wait_closed()


def answer(body: bytes, *extra: bytes) -> bytes:
    head = [b"HTTP/1.1 200 OK", b"Content-Length: %d" % len(body), *extra]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


async def keep_answering(request: bytes, _: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
    w.write(answer(b"ok:" + request.split(b" ")[1]))
    await w.drain()
    return True


async def test_requests_reuse_one_kept_alive_connection() -> None:
    async with scripted(keep_answering) as (server, pool):
        bodies = []
        for i in range(5):
            got = await pool.request("GET", f"/v1/x/{i}", [("X-Request-ID", "r")], b"")
            bodies.append(await got.read())
        assert bodies == [f"ok:/v1/x/{i}".encode() for i in range(5)]
        assert server.connections == 1
        assert server.requests[0].startswith(b"GET /v1/x/0 HTTP/1.1\r\nHost: 127.0.0.1:")
        assert b"\r\nX-Request-ID: r\r\n" in server.requests[0]


async def test_a_body_goes_with_its_length() -> None:
    async with scripted(keep_answering) as (server, pool):
        got = await pool.request("POST", "/v1/x", [("Content-Type", "application/json")], b"{}")
        await got.read()
        empty = await pool.request("POST", "/v1/x", [], b"")
        await empty.read()
    assert server.requests[0].endswith(b"Content-Length: 2\r\n\r\n{}")
    assert server.requests[1].endswith(b"Content-Length: 0\r\n\r\n")


async def test_a_chunked_answer_is_read_whole() -> None:
    async def chunked(_: bytes, __: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for part in (b"alpha", b"beta", b"gamma"):
            w.write(b"%x\r\n%s\r\n" % (len(part), part))
            await w.drain()
            await asyncio.sleep(0.01)
        w.write(b"0\r\n\r\n")
        return True

    async with scripted(chunked) as (server, pool):
        got = await pool.request("GET", "/v1/x", [], b"")
        assert got.content_length is None
        assert await got.read() == b"alphabetagamma"
        again = await pool.request("GET", "/v1/x", [], b"")
        assert await again.read() == b"alphabetagamma"
        assert server.connections == 1


async def test_an_answer_without_length_ends_with_the_connection() -> None:
    async def until_close(_: bytes, __: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it")
        await w.drain()
        return False

    async with scripted(until_close) as (server, pool):
        got = await pool.request("GET", "/v1/x", [], b"")
        assert await got.read() == b"all of it"
        second = await pool.request("GET", "/v1/x", [], b"")
        assert await second.read() == b"all of it"
        assert server.connections == 2


async def test_a_large_answer_streams_in_pieces() -> None:
    size = 5 * 1024 * 1024

    async def large(_: bytes, __: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        for _ in range(size // 65536):
            w.write(b"y" * 65536)
            await w.drain()
        return True

    async with scripted(large) as (_, pool):
        got = await pool.request("GET", "/v1/big", [], b"")
        assert got.content_length == size
        pieces = [chunk async for chunk in got.chunks()]
    assert sum(map(len, pieces)) == size
    assert len(pieces) > 1


async def test_a_head_answer_has_no_body_and_the_next_request_works() -> None:
    async def head_then_get(
        request: bytes, _: asyncio.StreamReader, w: asyncio.StreamWriter
    ) -> bool:
        if request.startswith(b"HEAD"):
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n")
        else:
            w.write(answer(b"body"))
        await w.drain()
        return True

    async with scripted(head_then_get) as (_, pool):
        head = await pool.request("HEAD", "/v1/x", [], b"")
        assert (head.status, head.content_length) == (200, 42)
        assert await head.read() == b""
        got = await pool.request("GET", "/v1/x", [], b"")
        assert await got.read() == b"body"


async def test_a_connection_the_service_closed_while_idle_is_not_reused() -> None:
    async def once(_: bytes, __: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        w.write(answer(b"once"))
        await w.drain()
        return False  # closes the kept-alive connection after answering

    async with scripted(once) as (server, pool):
        first = await pool.request("GET", "/v1/x", [], b"")
        assert await first.read() == b"once"
        await asyncio.sleep(0.1)  # the close arrives while the connection is idle
        second = await pool.request("GET", "/v1/x", [], b"")
        assert await second.read() == b"once"
        assert server.connections == 2


async def test_nothing_listening_is_refused() -> None:
    pool = Pool(
        f"http://127.0.0.1:{free_port()}",
        connect_timeout=1.0,
        read_timeout=1.0,
        keepalive_s=4.0,
        limit=asyncio.Semaphore(1),
    )
    for _ in range(3):  # the connection slot comes back after each failure
        with pytest.raises(Refused):
            await pool.request("GET", "/v1/x", [], b"")


async def test_silence_is_a_timeout_and_a_cut_answer_is_dropped() -> None:
    async def silent(request: bytes, _: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        if b"/cut" in request:
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
            await w.drain()
            return False
        await asyncio.sleep(2)
        return False

    async with scripted(silent) as (_, pool):
        with pytest.raises(Timeout):
            await pool.request("GET", "/v1/slow", [], b"")
        cut = await pool.request("GET", "/v1/cut", [], b"")
        with pytest.raises(Dropped):
            await cut.read()


async def test_a_garbled_answer_is_malformed() -> None:
    async def garbled(_: bytes, __: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        w.write(b"NONSENSE\r\n\r\n")
        await w.drain()
        return True

    async with scripted(garbled) as (_, pool):
        with pytest.raises(Malformed):
            await pool.request("GET", "/v1/x", [], b"")
