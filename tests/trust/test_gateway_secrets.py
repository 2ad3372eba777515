"""Secrets at rest, against the running platform: what the gateway keeps in its database and
its logs never holds a client secret, a password, a private signing key or the KEK; a replayed
client create answers without the secret; an admin mints credentials inside its own areas.

The database is read with asyncpg as anyone holding a backup of it would read it.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from pathlib import Path

import asyncpg
import httpx

from tests.e2e.conftest import Platform, token
from tests.trust.conftest import new_caller

PEM_MARKERS = (b"PRIVATE KEY", b"-----BEGIN")


async def gateway_rows(platform: Platform) -> dict[str, list[bytes]]:
    """Every row of every table of the gateway's schema, as text (bytea as raw bytes)."""
    conn = await asyncpg.connect(platform.env["DATABASE_URL"])
    try:
        tables = await conn.fetch(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'gateway' AND table_type = 'BASE TABLE'"
        )
        found: dict[str, list[bytes]] = {}
        for (name,) in tables:
            rows = await conn.fetch(f'SELECT t::text AS row FROM gateway."{name}" t')
            columns = await conn.fetch(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = 'gateway' AND table_name = $1 AND data_type = 'bytea'",
                name,
            )
            found[name] = [r["row"].encode() for r in rows]
            for (column,) in columns:
                raw = await conn.fetch(f'SELECT "{column}" AS v FROM gateway."{name}"')
                found[name] += [bytes(r["v"]) for r in raw if r["v"] is not None]
        return found
    finally:
        await conn.close()


def logs(platform: Platform) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(Path(platform.root, "log").glob("*.log")))


def held_anywhere(rows: dict[str, list[bytes]], needle: bytes) -> list[str]:
    return [table for table, values in rows.items() if any(needle in v for v in values)]


async def test_a_replayed_client_create_answers_without_the_secret_and_keeps_none(
    platform: Platform, gateway: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    key = {"Idempotency-Key": f"trust-{secrets.token_hex(8)}"}
    body = {
        "name": "replayed partner",
        "org": f"ngo-{secrets.token_hex(3)}",
        "org_type": "partner",
        "scopes": ["registry:read"],
        "areas": ["12"],
    }
    first = await gateway.post("/v1/admin/clients", json=body, headers={**admin_headers, **key})
    again = await gateway.post("/v1/admin/clients", json=body, headers={**admin_headers, **key})
    assert first.status_code == again.status_code == 201, (first.text, again.text)
    secret = first.json()["client_secret"]
    assert secret
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.json()["client_id"] == first.json()["client_id"]
    assert again.json()["client_secret"] is None
    assert secret not in again.text
    # The secret shown once works, and is kept nowhere: not in the stored answer, anywhere.
    assert await token(gateway, first.json()["client_id"], secret)
    assert held_anywhere(await gateway_rows(platform), secret.encode()) == []
    assert secret.encode() not in logs(platform)


async def test_a_users_password_is_kept_nowhere_not_even_as_a_plain_digest(
    platform: Platform, gateway: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    password = secrets.token_urlsafe(18)
    body = {
        "name": "Idempotent user",
        "username": f"idem-{secrets.token_hex(5)}",
        "password": password,
        "org": f"gov-{secrets.token_hex(3)}",
        "org_type": "government",
        "scopes": ["registry:read"],
        "areas": ["12"],
    }
    raw = json.dumps(body).encode()
    headers = {
        **admin_headers,
        "Content-Type": "application/json",
        "Idempotency-Key": f"trust-{secrets.token_hex(8)}",
    }
    first = await gateway.post("/v1/admin/users", content=raw, headers=headers)
    again = await gateway.post("/v1/admin/users", content=raw, headers=headers)
    assert first.status_code == again.status_code == 201, first.text
    assert again.json() == first.json()
    assert password not in first.text
    ok = await gateway.post(
        "/oauth/token",
        data={"grant_type": "password", "username": body["username"], "password": password},
    )
    assert ok.status_code == 200, ok.text
    rows = await gateway_rows(platform)
    assert held_anywhere(rows, password.encode()) == []
    # Nor a fast digest of the request that carried it, which would let a guess be tested.
    plain_digest = hashlib.sha256(b"POST /v1/admin/users\n" + raw).digest()
    assert held_anywhere(rows, plain_digest) == []
    assert password.encode() not in logs(platform)


async def test_signing_keys_are_sealed_and_the_kek_is_not_with_them(
    platform: Platform, gateway: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    rotated = await gateway.post("/v1/admin/keys/rotate", headers=admin_headers)
    assert rotated.status_code == 200, rotated.text
    conn = await asyncpg.connect(platform.env["DATABASE_URL"])
    try:
        keys = await conn.fetch("SELECT kid, private_pem, kek_id FROM gateway.signing_keys")
    finally:
        await conn.close()
    assert {rotated.json()["kid"], rotated.json()["previous_kid"]} <= {k["kid"] for k in keys}
    assert all(k["private_pem"] is None and k["kek_id"] for k in keys)
    rows = await gateway_rows(platform)
    for marker in PEM_MARKERS:
        assert held_anywhere(rows, marker) == [], marker
    kek = platform.env["KOMAR_KEK"]
    assert held_anywhere(rows, kek.encode()) == []
    assert kek.encode() not in logs(platform)
    # Tokens of the new key verify in the services (and the old ones keep working).
    caller = await new_caller(gateway, admin_headers, scopes=["registry:read"], areas=["12"])
    assert (await gateway.get("/v1/registry/children", headers=caller.headers)).status_code == 200


async def test_an_admin_mints_credentials_inside_its_own_areas_only(
    gateway: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    district = await new_caller(
        gateway, admin_headers, scopes=["admin"], areas=["1201"], org_type="government"
    )
    base = {
        "name": "minted",
        "org": "ngo-minted",
        "org_type": "partner",
        "scopes": ["registry:read", "registry:write"],
    }
    user = {**base, "username": f"minted-{secrets.token_hex(4)}", "password": "x" * 12 + "y"}
    for areas in (["KH"], ["12"], ["1202"], ["1201", "0102"]):
        for path, body in (("/v1/admin/clients", base), ("/v1/admin/users", user)):
            refused = await gateway.post(
                path, json={**body, "areas": areas}, headers=district.headers
            )
            assert refused.status_code == 403, (path, areas, refused.text)
            assert refused.headers["content-type"].startswith("application/problem+json")
    inside = await gateway.post(
        "/v1/admin/clients", json={**base, "areas": ["120101"]}, headers=district.headers
    )
    assert inside.status_code == 201, inside.text
    made = await gateway.post(
        "/v1/admin/users", json={**user, "areas": ["1201"]}, headers=district.headers
    )
    assert made.status_code == 201, made.text


async def test_an_admin_sees_and_changes_only_the_principals_inside_its_areas(
    gateway: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    district = await new_caller(
        gateway, admin_headers, scopes=["admin"], areas=["1201"], org_type="government"
    )
    national = await new_caller(
        gateway, admin_headers, scopes=["registry:read"], areas=["KH"], org_type="government"
    )
    base = {"name": "p", "org_type": "partner", "scopes": ["registry:read"]}
    outside_user = await gateway.post(
        "/v1/admin/users",
        json={
            **base,
            "org": "ngo-out",
            "areas": ["1202"],
            "username": f"out-{secrets.token_hex(4)}",
            "password": "x" * 12 + "y",
        },
        headers=admin_headers,
    )
    assert outside_user.status_code == 201, outside_user.text
    mine = await gateway.post(
        "/v1/admin/clients",
        json={**base, "org": "ngo-in", "areas": ["120101"]},
        headers=district.headers,
    )
    assert mine.status_code == 201, mine.text
    mine_id = mine.json()["client_id"]
    user_id = outside_user.json()["user_id"]

    # another area's principals are not there for it: 404 on every id route, absent in lists
    for path in (
        f"/v1/admin/clients/{national.client_id}",
        f"/v1/admin/clients/{national.client_id}/disable",
        "/v1/admin/clients/admin/disable",
        f"/v1/admin/users/{user_id}",
        f"/v1/admin/users/{user_id}/disable",
        f"/v1/admin/users/{user_id}/unlock",
    ):
        method = gateway.get if path.count("/") == 4 else gateway.post
        r = await method(path, headers=district.headers)
        assert r.status_code == 404, (path, r.text)
    listed: set[str] = set()
    cursor = None
    while True:
        r = await gateway.get(
            "/v1/admin/clients",
            params={"limit": 500, **({"cursor": cursor} if cursor else {})},
            headers=district.headers,
        )
        assert r.status_code == 200, r.text
        listed |= {c["client_id"] for c in r.json()["items"]}
        assert all(all(a.startswith("1201") for a in c["areas"]) for c in r.json()["items"]), (
            r.json()["items"]
        )
        cursor = r.json()["next_cursor"]
        if not cursor:
            break
    assert mine_id in listed
    assert national.client_id not in listed
    users = await gateway.get("/v1/admin/users", params={"limit": 500}, headers=district.headers)
    assert user_id not in {u["user_id"] for u in users.json()["items"]}

    # the national client still gets tokens: nothing was disabled
    assert (
        await gateway.get(f"/v1/admin/clients/{national.client_id}", headers=admin_headers)
    ).json()["active"] is True
    # its own principals it manages; the signing keys are the whole country's
    r = await gateway.post(f"/v1/admin/clients/{mine_id}/disable", headers=district.headers)
    assert r.status_code == 200, r.text
    r = await gateway.post("/v1/admin/keys/rotate", headers=district.headers)
    assert r.status_code == 403, r.text
