"""Object-level access and token checks, on every endpoint that takes an id
(docs/api-guide.md#access)."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from jose import jwt as jose_jwt

from tests.registry.conftest import child_body
from tests.support import AUDIENCE, ISSUER, SigningKeys

ID_ENDPOINTS = [
    ("GET", "/v1/registry/children/{id}", None),
    ("PATCH", "/v1/registry/children/{id}", {"risk_level": "high"}),
    ("POST", "/v1/registry/children/{id}/close", {"reason": "moved away"}),
    ("POST", "/v1/registry/children/{id}/reopen", None),
    ("GET", "/v1/registry/children/{id}/history", None),
    ("GET", "/v1/registry/children/{id}/duplicates", None),
    ("GET", "/v1/registry/audit?child_id={id}", None),
]


async def call(
    api: httpx.AsyncClient, method: str, path: str, body: object, headers: dict
) -> httpx.Response:
    return await api.request(method, path, json=body, headers={**headers, "If-Match": '"1"'})


async def registered(
    api: httpx.AsyncClient, keys: SigningKeys, body: dict | None = None, **token: object
) -> dict:
    r = await api.post(
        "/v1/registry/children", json=body or child_body(), headers=keys.headers(**token)
    )
    assert r.status_code == 201, r.text
    return r.json()


@pytest.mark.parametrize(("method", "path", "body"), ID_ENDPOINTS)
async def test_principal_of_another_commune_gets_404(
    api: httpx.AsyncClient, keys: SigningKeys, method: str, path: str, body: object
) -> None:
    child = await registered(api, keys, areas=["120101"])  # Tonle Basak
    other_commune = keys.headers(areas=["120109"], scope="registry:read registry:write admin")
    r = await call(api, method, path.format(id=child["id"]), body, other_commune)
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    # the same request for an id that does not exist answers the same
    missing = await call(api, method, path.format(id=uuid.uuid4()), body, other_commune)
    assert missing.status_code == 404
    assert missing.json()["detail"] == r.json()["detail"]


@pytest.mark.parametrize(("method", "path", "body"), ID_ENDPOINTS)
async def test_partner_gets_404_for_another_partners_child_in_same_commune(
    api: httpx.AsyncClient, keys: SigningKeys, method: str, path: str, body: object
) -> None:
    child = await registered(api, keys, org="ngo-a", org_type="partner", areas=["120101"])
    other = keys.headers(
        org="ngo-b",
        org_type="partner",
        areas=["120101"],
        scope="registry:read registry:write admin",
    )
    r = await call(api, method, path.format(id=child["id"]), body, other)
    assert r.status_code == 404


async def test_lists_never_include_invisible_children(
    api: httpx.AsyncClient, keys: SigningKeys
) -> None:
    org_a, org_b = f"ngo-{uuid.uuid4().hex[:6]}", f"ngo-{uuid.uuid4().hex[:6]}"
    mine = await registered(api, keys, org=org_a, org_type="partner", areas=["120101"])
    theirs = await registered(api, keys, org=org_b, org_type="partner", areas=["120101"])
    gov_other_commune = await registered(
        api, keys, child_body(village_code="12010901"), areas=["120109"]
    )
    seen = await api.get(
        "/v1/registry/children?limit=500",
        headers=keys.headers(org=org_a, org_type="partner", areas=["120101"]),
    )
    ids = {c["id"] for c in seen.json()["items"]}
    assert mine["id"] in ids
    assert theirs["id"] not in ids
    assert gov_other_commune["id"] not in ids
    commune_gov = await api.get(
        "/v1/registry/children?limit=500", headers=keys.headers(areas=["120109"])
    )
    gov_ids = {c["id"] for c in commune_gov.json()["items"]}
    assert gov_other_commune["id"] in gov_ids
    assert mine["id"] not in gov_ids


async def test_creating_outside_ones_areas_is_403(
    api: httpx.AsyncClient, keys: SigningKeys
) -> None:
    r = await api.post(
        "/v1/registry/children", json=child_body(), headers=keys.headers(areas=["02"])
    )
    assert r.status_code == 403
    assert r.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("POST", "/v1/registry/children", "registry:read"),
        ("GET", "/v1/registry/children", "registry:write"),
        ("GET", "/v1/registry/audit?child_id=" + str(uuid.uuid4()), "registry:read registry:write"),
    ],
)
async def test_missing_scope_is_403(
    api: httpx.AsyncClient, keys: SigningKeys, method: str, path: str, scope: str
) -> None:
    r = await api.request(method, path, json=child_body(), headers=keys.headers(scope=scope))
    assert r.status_code == 403


def _forged_tokens(keys: SigningKeys) -> dict[str, str]:
    now = int(time.time())
    claims = {
        "sub": "mallory",
        "org": "x",
        "org_type": "government",
        "scope": "registry:read",
        "areas": ["KH"],
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 600,
        "jti": str(uuid.uuid4()),
    }
    public_pem = (
        __import__("jose").jwk.construct(keys.private_pem, "RS256").public_key().to_pem().decode()
    )
    import base64
    import json

    def b64(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    def hs256(payload: dict, secret: str) -> str:
        # python-jose refuses to do this, so forge it by hand as an attacker would
        import hashlib
        import hmac

        signing_input = f"{b64({'alg': 'HS256', 'typ': 'JWT', 'kid': keys.kid})}.{b64(payload)}"
        mac = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"

    other = SigningKeys(kid=keys.kid)
    return {
        "expired": keys.token(ttl_s=-60),
        "other key": other.token(),
        "alg none": f"{b64({'alg': 'none', 'kid': keys.kid})}.{b64(claims)}.",
        "hs256 with public key": hs256(claims, public_pem),
        "wrong aud": jose_jwt.encode(
            {**claims, "aud": "someone-else"},
            keys.private_pem,
            algorithm="RS256",
            headers={"kid": keys.kid},
        ),
        "wrong iss": jose_jwt.encode(
            {**claims, "iss": "evil"},
            keys.private_pem,
            algorithm="RS256",
            headers={"kid": keys.kid},
        ),
        "garbage": "not-a-token",
    }


async def test_bad_tokens_are_401(api: httpx.AsyncClient, keys: SigningKeys) -> None:
    for name, token in _forged_tokens(keys).items():
        r = await api.get("/v1/registry/children", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401, name
        assert r.headers["content-type"] == "application/problem+json", name
    assert (await api.get("/v1/registry/children")).status_code == 401
