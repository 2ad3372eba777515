"""One attempt, as the delivery worker sends it, against a receiver on 127.0.0.1 (no
platform): Standard Webhooks headers, the connection made to the address that was checked,
time-outs and refused addresses told apart, never a body read."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from services.webhooks import domain, urls
from services.webhooks.delivery import Sender


class Server:
    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.status = 200
        self.delay = 0.0
        self.port = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append({"headers": dict(request.headers), "body": await request.text()})
        await asyncio.sleep(self.delay)
        return web.Response(status=self.status, text="x" * 100_000)


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    s = Server()
    app = web.Application()
    app.router.add_post("/{tail:.*}", s.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    s.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield s
    finally:
        await runner.cleanup()


def sender(resolver: urls.Resolver = urls.system_resolver, timeout_s: float = 2.0) -> Sender:
    return Sender(timeout_s=timeout_s, allow_loopback=True, resolver=resolver)


async def test_an_attempt_is_signed_and_verifies(server: Server) -> None:
    secret = domain.new_secret()
    body = domain.delivery_body("webhook.test", datetime.now(UTC), {"a": 1})
    s = sender()
    result = await s.send(f"http://127.0.0.1:{server.port}/hook?x=1", "d-1", body, [secret])
    await s.close()
    assert result == domain.Result(200, result.latency_ms)
    (seen,) = server.seen
    assert seen["body"] == body
    assert Webhook(secret).verify(seen["body"], seen["headers"]) == json.loads(body)
    assert seen["headers"]["webhook-id"] == "d-1"
    assert seen["headers"]["Content-Type"] == "application/json"


async def test_the_connection_goes_to_the_checked_address(server: Server) -> None:
    asked: list[str] = []

    async def resolver(host: str, port: int) -> list[str]:
        asked.append(host)
        return ["127.0.0.1"]

    s = sender(resolver)
    result = await s.send(f"http://localhost:{server.port}/", "d-2", "{}", [domain.new_secret()])
    assert result.status_code == 200
    assert asked == ["localhost"]
    assert server.seen[0]["headers"]["Host"] == f"localhost:{server.port}"

    async def rebinding(host: str, port: int) -> list[str]:
        return ["10.0.0.1"]  # the name now points inside: nothing is sent

    s2 = sender(rebinding)
    result = await s2.send(f"http://localhost:{server.port}/", "d-3", "{}", [domain.new_secret()])
    assert (result.status_code, result.error) == (None, "address_refused")
    assert len(server.seen) == 1
    await s.close()
    await s2.close()


async def test_statuses_time_outs_and_refused_connections_are_told_apart(server: Server) -> None:
    s = sender(timeout_s=0.5)
    url = f"http://127.0.0.1:{server.port}/"
    server.status = 503
    assert (await s.send(url, "d", "{}", [domain.new_secret()])).status_code == 503
    server.status, server.delay = 200, 1.0
    slow = await s.send(url, "d", "{}", [domain.new_secret()])
    assert (slow.status_code, slow.error) == (None, "timeout")
    assert slow.latency_ms is not None
    assert slow.latency_ms >= 450
    refused = await s.send("http://127.0.0.1:9/", "d", "{}", [domain.new_secret()])
    assert (refused.status_code, refused.error) == (None, "connect_error")
    await s.close()
