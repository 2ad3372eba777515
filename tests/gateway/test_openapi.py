"""The merged OpenAPI document and the docs page."""

from __future__ import annotations

from tests.gateway.conftest import Gateway


async def test_openapi_merges_the_reachable_services(gw: Gateway) -> None:
    response = await gw.http.get("/openapi.json")
    assert response.status_code == 200
    doc = response.json()
    paths = doc["paths"]
    # The gateway's own paths.
    for path in ("/oauth/token", "/.well-known/jwks.json", "/v1/admin/clients", "/v1/admin/users"):
        assert path in paths, path
    # The fake registry's public paths, but not its internal ones.
    assert "/v1/registry/things" in paths
    assert "/v1/registry/echo/{rest}" in paths
    assert "/internal/debug" not in paths
    # Its components, with refs that resolve.
    schemas = doc["components"]["schemas"]
    assert "Thing" in schemas
    ref = paths["/v1/registry/things"]["post"]["requestBody"]["content"]["application/json"][
        "schema"
    ]["$ref"]
    assert ref.rsplit("/", 1)[-1] in schemas
    assert "ClientCreate" in schemas
    # Security: bearer tokens from the OAuth2 token endpoint.
    security = doc["components"]["securitySchemes"]
    assert security["bearer"]["scheme"] == "bearer"
    flow = security["oauth2"]["flows"]["clientCredentials"]
    assert flow["tokenUrl"] == "/oauth/token"
    assert "registry:read" in flow["scopes"]
    assert {"bearer": []} in doc["security"]
    assert paths["/oauth/token"]["post"]["security"] == []
    assert (
        "application/x-www-form-urlencoded"
        in paths["/oauth/token"]["post"]["requestBody"]["content"]
    )


async def test_unreachable_services_are_left_out(gw: Gateway) -> None:
    doc = (await gw.http.get("/openapi.json")).json()
    assert not any(
        p.startswith(("/v1/funds", "/v1/referrals", "/v1/indicators")) for p in doc["paths"]
    )


async def test_docs_page(gw: Gateway) -> None:
    response = await gw.http.get("/docs")
    assert response.status_code == 200
    assert "text/html" in response.headers["content-type"]
    assert "/openapi.json" in response.text
    assert (await gw.http.get("/docs/oauth2-redirect")).status_code == 200


async def test_health_ready_metrics(gw: Gateway) -> None:
    assert (await gw.http.get("/healthz")).json() == {"status": "alive"}
    ready = await gw.http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": True, "signing_key": True}
    metrics = await gw.http.get("/metrics")
    assert metrics.status_code == 200
    assert 'service="gateway"' in metrics.text
    assert "/v1/registry/*" in metrics.text or "komar_http_requests_total" in metrics.text
    meta = (await gw.http.get("/.well-known/oauth-authorization-server")).json()
    assert meta["token_endpoint"].endswith("/oauth/token")
    assert "client_credentials" in meta["grant_types_supported"]
