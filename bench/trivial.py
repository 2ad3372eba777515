"""The trivial responder (`python -m bench.loadgen serve-trivial`): raw asyncio answering
every request with a fixed 200, used once to measure the load generator's own ceiling."""

from __future__ import annotations

import asyncio
from typing import cast

RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
    b"Connection: keep-alive\r\n\r\n{}"
)


class _TrivialHttp(asyncio.Protocol):
    """Answers each bodiless request with the same 200; enough for GET /anything."""

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        answered = self.buffer.count(b"\r\n\r\n")
        if answered:
            self.buffer = self.buffer.rsplit(b"\r\n\r\n", 1)[1]
            self.transport.write(RESPONSE * answered)


async def serve_trivial(port: int) -> None:
    """Serve the trivial responder forever on 127.0.0.1:`port`."""
    server = await asyncio.get_running_loop().create_server(_TrivialHttp, "127.0.0.1", port)
    async with server:
        await server.serve_forever()
