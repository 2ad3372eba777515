"""A service of several replicas behind the gateway: requests are spread, and a replica that
refuses connections is skipped at once, for every method, then left alone for a cool-down."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from deploy.local.infra import free_port
from gateway.settings import GatewaySettings
from tests.gateway.conftest import Gateway, bearer, client_for, running, serve, upstream_app


@pytest.fixture(scope="module")
async def replicas() -> AsyncIterator[list[tuple[str, list[dict[str, Any]]]]]:
    """Two live stand-in registries: (base URL, the requests each saw)."""
    found = []
    ports = [free_port(), free_port()]
    seen: list[list[dict[str, Any]]] = [[], []]
    async with serve(upstream_app(seen[0]), ports[0]), serve(upstream_app(seen[1]), ports[1]):
        found = [(f"http://127.0.0.1:{p}", s) for p, s in zip(ports, seen, strict=True)]
        yield found


@pytest.fixture(scope="module")
async def dropper() -> AsyncIterator[tuple[str, list[bytes]]]:
    """A replica that reads each request and hangs up without answering, as one that dies
    while handling it: (base URL, the requests it read)."""
    got: list[bytes] = []

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got.append(await reader.read(65536))
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}", got


def failovers() -> float:
    value = REGISTRY.get_sample_value("komar_gateway_failovers_total", {"upstream": "registry"})
    return value or 0.0


async def test_requests_take_the_replicas_in_turn(
    gateway_settings: GatewaySettings,
    gw: Gateway,
    replicas: list[tuple[str, list[dict[str, Any]]]],
) -> None:
    (a, seen_a), (b, seen_b) = replicas
    settings = gateway_settings.model_copy(update={"registry_url": f"{a}, {b}/"})
    client = await gw.create_client()
    before = len(seen_a), len(seen_b)
    async with running(settings) as app, client_for(app) as http:
        token = await gw.token(client["client_id"], client["client_secret"], http=http)
        for i in range(10):
            r = await http.get(f"/v1/registry/echo/{i}", headers=bearer(token))
            assert r.status_code == 200
    assert (len(seen_a) - before[0], len(seen_b) - before[1]) == (5, 5)


@pytest.mark.parametrize("method", ["POST", "PATCH", "GET"])
async def test_a_refused_connection_goes_to_the_next_replica_whatever_the_method(
    gateway_settings: GatewaySettings,
    gw: Gateway,
    replicas: list[tuple[str, list[dict[str, Any]]]],
    dead_url: str,
    method: str,
) -> None:
    (live, seen), _ = replicas
    settings = gateway_settings.model_copy(
        update={"registry_url": f"{dead_url},{live}", "upstream_cooldown_s": 30.0}
    )
    client = await gw.create_client()
    before, failed_over = len(seen), failovers()
    async with running(settings) as app, client_for(app) as http:
        token = await gw.token(client["client_id"], client["client_secret"], http=http)
        for i in range(6):
            r = await http.request(
                method, f"/v1/registry/echo/{i}", json={"n": i}, headers=bearer(token)
            )
            assert r.status_code == 200, r.text
    assert [s["path"] for s in seen[before:]] == [f"/v1/registry/echo/{i}" for i in range(6)]
    assert [s["method"] for s in seen[before:]] == [method] * 6  # each request once
    # The dead replica was tried once; in its cool-down it got no more requests.
    assert failovers() - failed_over == 1


@pytest.mark.parametrize(
    ("method", "key", "expected"),
    [("GET", None, 200), ("PUT", None, 200), ("POST", "k-1", 200), ("POST", None, 502)],
)
async def test_a_request_lost_with_its_replica_goes_on_only_when_it_is_safe_to_repeat(
    gateway_settings: GatewaySettings,
    gw: Gateway,
    replicas: list[tuple[str, list[dict[str, Any]]]],
    dropper: tuple[str, list[bytes]],
    method: str,
    key: str | None,
    expected: int,
) -> None:
    (live, seen), _ = replicas
    dying, read = dropper
    settings = gateway_settings.model_copy(update={"registry_url": f"{dying},{live}"})
    client = await gw.create_client()
    before, dropped = len(seen), len(read)
    headers = {"Idempotency-Key": key} if key else {}
    async with running(settings) as app, client_for(app) as http:
        token = await gw.token(client["client_id"], client["client_secret"], http=http)
        r = await http.request(
            method, "/v1/registry/echo/once", json={}, headers={**bearer(token), **headers}
        )
    assert r.status_code == expected, r.text
    # The dying replica read it (and may have acted on it), once: the gateway's upstream
    # client never repeats a request on its own.
    assert len(read) - dropped == 1
    # Sent again to the live replica only when a repeat is harmless.
    assert len(seen) - before == (1 if expected == 200 else 0)


async def test_when_every_replica_refuses_the_answer_is_503(
    gateway_settings: GatewaySettings, gw: Gateway, dead_url: str
) -> None:
    other_dead = f"http://127.0.0.1:{free_port()}"
    settings = gateway_settings.model_copy(update={"registry_url": f"{dead_url},{other_dead}"})
    client = await gw.create_client()
    async with running(settings) as app, client_for(app) as http:
        token = await gw.token(client["client_id"], client["client_secret"], http=http)
        for _ in range(3):
            r = await http.post("/v1/registry/echo/x", json={}, headers=bearer(token))
            assert r.status_code == 503
            assert r.headers["retry-after"] == "2"


def test_a_url_list_must_hold_http_urls() -> None:
    with pytest.raises(ValueError, match="KOMAR_FUNDS_URL"):
        GatewaySettings(funds_url="http://127.0.0.1:8103,127.0.0.1:8113")
    settings = GatewaySettings(registry_url=" http://a:1/ , http://b:2 ,")
    assert settings.upstreams()["registry"] == ("http://a:1", "http://b:2")
