"""The merged OpenAPI document, and the docs page on the gateway's own files."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import httpx
import pytest

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
    assert "refreshUrl" not in flow  # an API client gets no refresh token
    password = security["oauth2"]["flows"]["password"]
    assert password["tokenUrl"] == password["refreshUrl"] == "/oauth/token"
    assert "refresh_token" in security["oauth2"]["description"]
    grants = paths["/oauth/token"]["post"]["requestBody"]["content"][
        "application/x-www-form-urlencoded"
    ]["schema"]["properties"]["grant_type"]["enum"]
    assert "refresh_token" in grants
    revoke = paths["/oauth/revoke"]["post"]
    assert revoke["security"] == []
    assert "application/x-www-form-urlencoded" in revoke["requestBody"]["content"]
    assert "content" not in revoke["responses"]["200"]  # an empty body
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


class Page(HTMLParser):
    """What an HTML page loads (script src, link href) and its scripts' bodies."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.loads: list[str] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self._script: dict[str, str | None] | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "script":
            self._script = found
            self.scripts.append((found, ""))
        for name in ("src", "href"):
            if found.get(name):
                self.loads.append(str(found[name]))

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._script = None


DOCS_CSP = {
    "default-src 'self'",
    "img-src 'self' data:",
    "style-src 'self' 'unsafe-inline'",
    "script-src 'self'",
    "connect-src 'self'",
    "frame-ancestors 'none'",
}


def assert_self_contained(response: httpx.Response) -> Page:
    """An HTML page that loads only the gateway's own files and runs no inline script, under
    the docs' Content-Security-Policy."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    policy = {d.strip() for d in response.headers["content-security-policy"].split(";")}
    assert policy == DOCS_CSP
    # No other host anywhere on the page: not its assets, its favicon, nor a validator.
    assert "http://" not in response.text
    assert "https://" not in response.text
    assert "//" not in response.text
    page = Page(response.text)
    assert page.loads
    for url in page.loads:
        assert url.startswith("/"), url
        assert not url.startswith("//"), url
    for attrs, body in page.scripts:
        # Either a file of the gateway's, or data the browser never runs.
        assert attrs.get("src") or attrs.get("type") == "application/json", attrs
        assert not (attrs.get("src") and body.strip()), attrs
    return page


async def test_docs_page_loads_only_the_gateways_own_files(gw: Gateway) -> None:
    response = await gw.http.get("/docs")
    page = assert_self_contained(response)
    assert {
        "/docs/assets/swagger-ui/swagger-ui.css",
        "/docs/assets/swagger-ui/favicon-32x32.png",
        "/docs/assets/swagger-ui/favicon-16x16.png",
        "/docs/assets/swagger-ui/swagger-ui-bundle.js",
        "/docs/assets/init.js",
    } == set(page.loads)
    (config_json,) = [body for attrs, body in page.scripts if attrs.get("type")]
    config = json.loads(config_json)
    assert config["url"] == "/openapi.json"
    assert config["oauth2RedirectPath"] == "/docs/oauth2-redirect"
    assert config["validatorUrl"] is None
    assert config["persistAuthorization"] is True
    for url in page.loads:
        asset = await gw.http.get(url)
        assert asset.status_code == 200, url
        assert asset.headers["x-content-type-options"] == "nosniff"
        assert "max-age=" in asset.headers["cache-control"]


async def test_oauth2_redirect_page_runs_the_dists_script_from_a_file(gw: Gateway) -> None:
    page = assert_self_contained(await gw.http.get("/docs/oauth2-redirect"))
    assert page.loads == [
        "/docs/assets/swagger-ui/favicon-32x32.png",
        "/docs/assets/swagger-ui/oauth2-redirect.js",
    ]
    script = await gw.http.get(page.loads[1])
    assert script.status_code == 200
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert "swaggerUIRedirectOauth2" in script.text


@pytest.mark.parametrize(
    ("path", "content_type", "holds"),
    [
        ("swagger-ui/swagger-ui-bundle.js", "text/javascript; charset=utf-8", "SwaggerUIBundle"),
        ("swagger-ui/swagger-ui.css", "text/css; charset=utf-8", ".swagger-ui"),
        ("swagger-ui/oauth2-redirect.js", "text/javascript; charset=utf-8", "window.opener"),
        ("init.js", "text/javascript; charset=utf-8", "SwaggerUIBundle("),
        ("swagger-ui/favicon-32x32.png", "image/png", None),
        ("swagger-ui/favicon-16x16.png", "image/png", None),
        ("swagger-ui/LICENSE", "text/plain; charset=utf-8", "Apache License"),
    ],
)
async def test_docs_assets_answer_with_their_media_type(
    gw: Gateway, path: str, content_type: str, holds: str | None
) -> None:
    response = await gw.http.get(f"/docs/assets/{path}")
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    assert response.headers["cache-control"] == "public, max-age=86400"
    if holds is None:
        assert response.content.startswith(b"\x89PNG")
    else:
        assert holds in response.text
    # Revalidated by its ETag once the cache expires.
    again = await gw.http.get(
        f"/docs/assets/{path}", headers={"If-None-Match": response.headers["etag"]}
    )
    assert again.status_code == 304


async def test_nothing_else_is_served_under_the_docs_assets(gw: Gateway) -> None:
    for path in ("nothing.js", "swagger-ui/index.html", "swagger-ui/swagger-initializer.js"):
        assert (await gw.http.get(f"/docs/assets/{path}")).status_code == 404, path
    escaped = await gw.http.get("/docs/assets/%2e%2e/openapi.py")
    assert escaped.status_code == 404


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
