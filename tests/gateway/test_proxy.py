"""Routing to the services: token checks, rate limits, what is forwarded, upstream failures."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from fastapi import FastAPI

from gateway.runtime import GatewayRuntime
from gateway.settings import GatewaySettings
from libs.common import jwt
from tests.gateway.conftest import CLIENT_ADDRESS, Gateway, Upstream, bearer

PROBLEM = "application/problem+json"


def headers_of(record: dict[str, Any]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, value in record["headers"]:
        found.setdefault(name.lower(), []).append(value)
    return found


def komar_claims(**extra: Any) -> dict[str, Any]:
    return {
        "sub": "cli_forged",
        "org": "ngo-x",
        "org_type": "partner",
        "scope": "registry:read",
        "areas": ["12"],
        **extra,
    }


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def hand_made(header: dict[str, Any], claims: dict[str, Any], sign: Any = None) -> str:
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    signature = sign(signing_input.encode()) if sign else b""
    return f"{signing_input}.{b64url(signature)}"


@pytest.fixture
def runtime(gateway_app: FastAPI) -> GatewayRuntime:
    rt: GatewayRuntime = gateway_app.state.runtime
    return rt


async def test_forwards_method_path_query_body_and_headers(gw: Gateway, upstream: Upstream) -> None:
    _, token = await gw.client_token()
    response = await gw.http.post(
        "/v1/registry/echo/children/abc?x=1&y=a%20b&y=2",
        content=b'{"given_name": "Sokha"}',
        headers={
            **bearer(token),
            "Content-Type": "application/json",
            "If-Match": '"3"',
            "Idempotency-Key": "key-123",
            "Accept": "application/json",
            "X-Request-ID": "req-from-client-1",
            # Spoofing and hop-by-hop fields the gateway must not pass on.
            "X-Forwarded-For": "6.6.6.6",
            "X-Forwarded-Host": "evil.example",
            "Forwarded": "for=6.6.6.6",
            "X-Real-IP": "6.6.6.6",
            "Proxy-Authorization": "Basic c2VjcmV0",
            "Keep-Alive": "timeout=5",
            "Connection": "X-Hop",
            "X-Hop": "private",
            "X-Custom": "kept",
        },
    )
    assert response.status_code == 200, response.text
    seen = response.json()
    assert seen == upstream.seen[-1]
    assert seen["method"] == "POST"
    assert seen["path"] == "/v1/registry/echo/children/abc"
    assert seen["query"] == "x=1&y=a%20b&y=2"
    assert seen["body"] == '{"given_name": "Sokha"}'
    sent = headers_of(seen)
    assert sent["authorization"] == [f"Bearer {token}"]
    assert sent["if-match"] == ['"3"']
    assert sent["idempotency-key"] == ["key-123"]
    assert sent["content-type"] == ["application/json"]
    assert sent["accept"] == ["application/json"]
    assert sent["x-custom"] == ["kept"]
    assert sent["x-request-id"] == ["req-from-client-1"]
    assert sent["x-forwarded-for"] == [CLIENT_ADDRESS]
    assert sent["x-forwarded-host"] == ["gateway.test"]
    assert sent["x-forwarded-proto"] == ["http"]
    assert sent["content-length"] == [str(len(seen["body"]))]
    for absent in ("forwarded", "x-real-ip", "proxy-authorization", "keep-alive", "x-hop"):
        assert absent not in sent, absent

    # The answer comes back as the service gave it, with one request id.
    assert response.headers["etag"] == '"7"'
    assert response.headers["x-upstream"] == "fake-registry"
    assert response.headers.get_list("x-request-id") == ["req-from-client-1"]
    assert response.headers["set-cookie"].startswith("upstream=1")


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
async def test_forwards_every_method(gw: Gateway, method: str) -> None:
    _, token = await gw.client_token()
    response = await gw.http.request(
        method, "/v1/registry/echo/thing?status=202", headers=bearer(token), content=b"{}"
    )
    assert response.status_code == 202
    assert response.json()["method"] == method


async def test_sets_a_request_id_when_none_was_sent(gw: Gateway) -> None:
    _, token = await gw.client_token()
    response = await gw.http.get("/v1/registry/echo/id", headers=bearer(token))
    request_id = response.headers["x-request-id"]
    assert request_id
    assert headers_of(response.json())["x-request-id"] == [request_id]


async def test_cookies_of_one_answer_never_reach_another_caller(gw: Gateway) -> None:
    _, token = await gw.client_token()
    _, other = await gw.client_token()
    first = await gw.http.get("/v1/registry/echo/one", headers=bearer(token))
    assert first.headers["set-cookie"].startswith("upstream=1")
    gw.http.cookies.clear()  # this caller forgets it; the gateway must not remember it either
    response = await gw.http.get("/v1/registry/echo/two", headers=bearer(other))
    assert "cookie" not in headers_of(response.json())


async def test_service_errors_pass_through(gw: Gateway) -> None:
    _, token = await gw.client_token()
    response = await gw.http.get("/v1/registry/echo/x?status=404", headers=bearer(token))
    assert response.status_code == 404
    unvalidated = await gw.http.post(
        "/v1/registry/things", json={"label": "a", "extra": 1}, headers=bearer(token)
    )
    assert unvalidated.status_code == 422
    created = await gw.http.post("/v1/registry/things", json={"label": "a"}, headers=bearer(token))
    assert created.status_code == 201
    assert created.json() == {"label": "a"}


async def test_large_and_streamed_answers_arrive_whole(gw: Gateway) -> None:
    _, token = await gw.client_token()
    big = await gw.http.get("/v1/registry/big", headers=bearer(token))
    assert big.status_code == 200
    assert len(big.content) == 3 * 1024 * 1024 + 7
    assert big.headers["content-length"] == str(len(big.content))
    streamed = await gw.http.get("/v1/registry/stream", headers=bearer(token))
    assert streamed.text == "".join(f"line {i}\n" for i in range(50))


async def test_paths_outside_the_prefixes_are_not_proxied(gw: Gateway, upstream: Upstream) -> None:
    _, token = await gw.client_token()
    before = len(upstream.seen)
    response = await gw.http.get("/v1/registryx/echo/a", headers=bearer(token))
    assert response.status_code == 404
    assert response.headers["content-type"].startswith(PROBLEM)
    assert len(upstream.seen) == before


async def test_ambiguous_requests_are_refused(gw: Gateway, upstream: Upstream) -> None:
    _, token = await gw.client_token()
    _, other = await gw.client_token()
    before = len(upstream.seen)
    two = await gw.http.get(
        "/v1/registry/echo/x",
        headers=[("Authorization", f"Bearer {other}"), ("Authorization", f"Bearer {token}")],
    )
    assert two.status_code == 400
    assert "one Authorization" in two.json()["detail"]
    assert two.headers["content-type"].startswith(PROBLEM)
    dotted = await gw.http.get(
        httpx.URL("http://gateway.test/v1/registry/echo/a/%2E%2E/%2E%2E/b"), headers=bearer(token)
    )
    assert dotted.status_code == 400
    assert "dot segments" in dotted.json()["detail"]
    assert len(upstream.seen) == before


async def test_missing_or_malformed_bearer_is_401(gw: Gateway, upstream: Upstream) -> None:
    before = len(upstream.seen)
    for headers in [
        {},
        {"Authorization": "Basic YWRtaW46eA=="},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer not.a.jwt"},
        {"Authorization": "Bearer abc"},
    ]:
        response = await gw.http.get("/v1/registry/echo/x", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["content-type"].startswith(PROBLEM)
        assert response.json()["status"] == 401
        assert "www-authenticate" in response.headers
    assert len(upstream.seen) == before


async def test_forged_tokens_are_401(
    gw: Gateway, runtime: GatewayRuntime, gateway_settings: GatewaySettings, upstream: Upstream
) -> None:
    key = runtime.keys.signing
    assert key is not None
    iss, aud = gateway_settings.issuer, gateway_settings.audience
    now = int(time.time())
    claims = komar_claims(iss=iss, aud=aud, iat=now, exp=now + 600, jti="j-1")
    other_pem = jwt.generate_private_key_pem()
    public_pem = (
        load_pem_private_key(key.private_pem.encode(), password=None)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )

    def sign(**kw: Any) -> str:
        args: dict[str, Any] = {
            "private_pem": key.private_pem,
            "kid": key.kid,
            "issuer": iss,
            "audience": aud,
            "ttl_s": 600,
        }
        args.update(kw)
        token, _ = jwt.sign(komar_claims(), **args)
        return token

    good = sign()
    assert (await gw.http.get("/v1/registry/echo/x", headers=bearer(good))).status_code == 200

    forged = {
        "expired": sign(ttl_s=-60),
        "another key, same kid": sign(private_pem=other_pem),
        "another key, unknown kid": sign(private_pem=other_pem, kid="not-ours"),
        "wrong audience": sign(audience="someone-else"),
        "wrong issuer": sign(issuer="evil-gateway"),
        "alg none": hand_made({"alg": "none", "typ": "JWT", "kid": key.kid}, claims),
        "HS256 with the public key as secret": hand_made(
            {"alg": "HS256", "typ": "JWT", "kid": key.kid},
            claims,
            lambda data: hmac.new(public_pem, data, hashlib.sha256).digest(),
        ),
        "tampered claims": good.split(".")[0]
        + "."
        + b64url(json.dumps({**claims, "scope": "admin registry:write"}).encode())
        + "."
        + good.split(".")[2],
        "no Komar claims": jwt.sign(
            {"sub": "x"},
            private_pem=key.private_pem,
            kid=key.kid,
            issuer=iss,
            audience=aud,
            ttl_s=600,
        )[0],
    }
    before = len(upstream.seen)
    for what, token in forged.items():
        response = await gw.http.get("/v1/registry/echo/x", headers=bearer(token))
        assert response.status_code == 401, what
        assert response.headers["content-type"].startswith(PROBLEM), what
    assert len(upstream.seen) == before


async def test_rate_limit_per_client_answers_429_with_retry_after(gw: Gateway) -> None:
    _, slow = await gw.client_token(rate_limit_per_second=0.5)
    _, other = await gw.client_token()
    statuses = [
        (await gw.http.get("/v1/registry/echo/r", headers=bearer(slow))).status_code
        for _ in range(3)
    ]
    assert statuses[:1] == [200]
    assert statuses[-1] == 429
    limited = await gw.http.get("/v1/registry/echo/r", headers=bearer(slow))
    assert limited.status_code == 429
    assert limited.headers["content-type"].startswith(PROBLEM)
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.json()["status"] == 429
    # Another client has its own bucket.
    assert (await gw.http.get("/v1/registry/echo/r", headers=bearer(other))).status_code == 200


async def test_default_rate_limit(gateway_settings: GatewaySettings, gw: Gateway) -> None:
    from tests.gateway.conftest import client_for, running

    settings = gateway_settings.model_copy(
        update={"rate_limit_per_second": 1.0, "rate_limit_burst": 3}
    )
    client = await gw.create_client()
    async with running(settings) as app, client_for(app) as http:
        token = await gw.token(client["client_id"], client["client_secret"], http=http)
        statuses = [
            (await http.get("/v1/registry/echo/r", headers=bearer(token))).status_code
            for _ in range(5)
        ]
    assert statuses[:3] == [200, 200, 200]
    assert statuses[-1] == 429


async def test_upstream_down_is_503_problem(gw: Gateway) -> None:
    _, token = await gw.client_token(scopes=["funds:read"])
    response = await gw.http.get("/v1/funds/funds?limit=1", headers=bearer(token))
    assert response.status_code == 503
    assert response.headers["content-type"].startswith(PROBLEM)
    assert int(response.headers["retry-after"]) >= 1
    assert response.json()["status"] == 503


async def test_upstream_timeout_is_504_problem(gw: Gateway) -> None:
    _, token = await gw.client_token()
    response = await gw.http.get("/v1/registry/slow", headers=bearer(token))
    assert response.status_code == 504
    assert response.headers["content-type"].startswith(PROBLEM)


async def test_bodies_over_1_mib_are_413(gw: Gateway, upstream: Upstream) -> None:
    _, token = await gw.client_token()
    before = len(upstream.seen)
    body = b"x" * (2 * 1024 * 1024)
    response = await gw.http.post("/v1/registry/echo/big", content=body, headers=bearer(token))
    assert response.status_code == 413
    assert response.headers["content-type"].startswith(PROBLEM)
    assert response.json()["status"] == 413

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(32):
            yield b"y" * 65536

    chunked = await gw.http.post("/v1/registry/echo/big", content=chunks(), headers=bearer(token))
    assert chunked.status_code == 413
    assert chunked.headers["content-type"].startswith(PROBLEM)
    assert len(upstream.seen) == before


async def test_trusted_proxy_chain_is_extended(
    gateway_settings: GatewaySettings, gw: Gateway, upstream: Upstream
) -> None:
    from tests.gateway.conftest import client_for, running

    settings = gateway_settings.model_copy(update={"trusted_proxies": ["10.0.0.0/8"]})
    client = await gw.create_client()
    async with running(settings) as app, client_for(app, "10.1.2.3") as http:
        token = await gw.token(client["client_id"], client["client_secret"], http=http)
        response = await http.get(
            "/v1/registry/echo/x", headers={**bearer(token), "X-Forwarded-For": "198.51.100.4"}
        )
    assert headers_of(response.json())["x-forwarded-for"] == ["198.51.100.4, 10.1.2.3"]


async def test_concurrent_requests_share_the_pool(gw: Gateway) -> None:
    import asyncio

    _, token = await gw.client_token()
    responses = await asyncio.gather(
        *(gw.http.get(f"/v1/registry/echo/{i}", headers=bearer(token)) for i in range(64))
    )
    assert [r.status_code for r in responses] == [200] * 64
    assert [r.json()["path"] for r in responses] == [f"/v1/registry/echo/{i}" for i in range(64)]
