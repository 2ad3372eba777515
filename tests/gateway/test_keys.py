"""Signing keys: JWKS, zero-downtime rotation, replicas agreeing through the database."""

from __future__ import annotations

import asyncio
import secrets

from fastapi import FastAPI
from jose import jwt as jose_jwt
from sqlalchemy import func, select

from deploy.local.infra import create_database, drop_database
from gateway.__main__ import migrate
from gateway.keys import FRESH_S, KeyRing
from gateway.models import signing_keys
from gateway.runtime import GatewayRuntime
from gateway.settings import GatewaySettings
from libs.common.auth import TokenVerifier
from libs.common.db import Database
from tests.gateway.conftest import Gateway, bearer, client_for, running


def kid_of(token: str) -> str:
    return str(jose_jwt.get_unverified_header(token)["kid"])


async def test_jwks_lists_the_signing_key(gw: Gateway, gateway_settings: GatewaySettings) -> None:
    response = await gw.http.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    keys = response.json()["keys"]
    _, token = await gw.client_token()
    kid = kid_of(token)
    published = {k["kid"]: k for k in keys}
    assert kid in published
    key = published[kid]
    assert key["kty"] == "RSA"
    assert key["alg"] == "RS256"
    assert key["use"] == "sig"
    assert "d" not in key  # the public half only
    assert "p" not in key
    # A service verifying with this JWKS accepts the token.

    async def fetch() -> dict[str, object]:
        return {"keys": keys}

    verifier = TokenVerifier(
        fetch, issuer=gateway_settings.issuer, audience=gateway_settings.audience
    )
    principal = await verifier.verify(token)
    assert principal.sub == jose_jwt.get_unverified_claims(token)["sub"]


async def test_rotation_keeps_old_tokens_working(
    gw: Gateway, gateway_app: FastAPI, gateway_settings: GatewaySettings
) -> None:
    # A replica that would not reload on its own for an hour: it must reload on the unknown kid.
    lazy = gateway_settings.model_copy(update={"key_refresh_interval_s": 3600.0})
    async with running(lazy) as replica, client_for(replica) as other:
        client, old_token = await gw.client_token()
        old_kid = kid_of(old_token)
        assert (
            await other.get("/v1/registry/echo/k", headers=bearer(old_token))
        ).status_code == 200

        rotated = await gw.http.post("/v1/admin/keys/rotate", headers=await gw.admin_headers())
        assert rotated.status_code == 200, rotated.text
        new_kid = rotated.json()["kid"]
        assert rotated.json()["previous_kid"] == old_kid
        assert new_kid != old_kid

        published = {k["kid"] for k in (await gw.http.get("/.well-known/jwks.json")).json()["keys"]}
        assert {old_kid, new_kid} <= published

        new_token = await gw.token(client["client_id"], client["client_secret"])
        assert kid_of(new_token) == new_kid
        await asyncio.sleep(FRESH_S)  # the replica looks for unknown kids at most this often
        for http in (gw.http, other):
            for token in (old_token, new_token):
                response = await http.get("/v1/registry/echo/k", headers=bearer(token))
                assert response.status_code == 200, response.text
        # Having met the new kid, the lazy replica signs with the new key too.
        assert (
            kid_of(await gw.token(client["client_id"], client["client_secret"], http=other))
            == new_kid
        )

        listed = (await gw.http.get("/v1/admin/keys", headers=await gw.admin_headers())).json()
        active = [k["kid"] for k in listed["items"] if k["active"]]
        assert active == [new_kid]

    # Retired keys leave the JWKS once every token they signed has expired.
    rt: GatewayRuntime = gateway_app.state.runtime
    ring = KeyRing(rt.db, token_ttl_s=0, retire_margin_s=0)
    await asyncio.sleep(0.01)
    await ring.reload()
    assert [k["kid"] for k in ring.jwks["keys"]] == [new_kid]


async def test_timed_rotation_rotates_only_an_old_key(gateway_app: FastAPI) -> None:
    rt: GatewayRuntime = gateway_app.state.runtime
    assert await rt.keys.rotate(older_than_s=3600) is None
    before = rt.keys.signing
    assert before is not None
    rotated = await rt.keys.rotate(older_than_s=0)
    assert rotated is not None
    assert rotated[1] == before.kid
    assert rt.keys.signing is not None
    assert rt.keys.signing.kid == rotated[0]


async def test_replicas_starting_together_create_one_key(gateway_settings: GatewaySettings) -> None:
    name = f"komar_gw_{secrets.token_hex(4)}"
    url = await asyncio.to_thread(create_database, gateway_settings.database_url, name)
    try:
        await asyncio.to_thread(migrate, url)
        settings = gateway_settings.model_copy(update={"database_url": url})
        dbs = [Database(url, pool_size=2, max_overflow=0) for _ in range(4)]
        rings = [KeyRing(db, token_ttl_s=900, retire_margin_s=60) for db in dbs]
        try:
            await asyncio.gather(*(r.ensure_active() for r in rings))
        finally:
            for db in dbs:
                await db.close()
        kids = {r.signing.kid for r in rings if r.signing is not None}
        assert len(kids) == 1
        async with running(settings) as app:
            rt: GatewayRuntime = app.state.runtime
            async with rt.db.transaction() as conn:
                count = await conn.scalar(select(func.count()).select_from(signing_keys))
            assert count == 1
            assert rt.keys.signing is not None
            assert rt.keys.signing.kid in kids
    finally:
        await asyncio.to_thread(drop_database, gateway_settings.database_url, name)
