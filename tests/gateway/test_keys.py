"""Signing keys: JWKS, zero-downtime rotation, replicas agreeing through the database."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from fastapi import FastAPI
from jose import jwt as jose_jwt
from pydantic import SecretStr
from sqlalchemy import func, select

from deploy.local.infra import create_database, drop_database
from gateway.__main__ import migrate
from gateway.kek import MISSING, KekError, Keks, kek_id, new_kek, parse_kek
from gateway.keys import FRESH_S, KeyRing
from gateway.models import signing_keys
from gateway.runtime import GatewayRuntime
from gateway.settings import GatewaySettings
from libs.common import jwt
from libs.common.auth import TokenVerifier
from libs.common.db import Database
from tests.gateway.conftest import KEK, Gateway, bearer, client_for, running


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
    ring = KeyRing(rt.db, rt.keks, token_ttl_s=0, retire_margin_s=0)
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
        rings = [KeyRing(db, Keks(KEK), token_ttl_s=900, retire_margin_s=60) for db in dbs]
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


# ---------------------------------------------------------------- keys sealed under the KEK

PEM_HEADER = b"PRIVATE KEY"


@asynccontextmanager
async def fresh_database(settings: GatewaySettings) -> AsyncIterator[GatewaySettings]:
    """A migrated database of its own, and the settings pointing at it."""
    name = f"komar_gw_{secrets.token_hex(4)}"
    url = await asyncio.to_thread(create_database, settings.database_url, name)
    try:
        await asyncio.to_thread(migrate, url)
        yield settings.model_copy(update={"database_url": url})
    finally:
        await asyncio.to_thread(drop_database, settings.database_url, name)


async def key_rows(settings: GatewaySettings) -> list[tuple[str, str | None, str | None, bytes]]:
    db = Database(settings.database_url, pool_size=1, max_overflow=0)
    try:
        async with db.transaction() as conn:
            query = select(
                signing_keys.c.kid,
                signing_keys.c.private_pem,
                signing_keys.c.kek_id,
                signing_keys.c.sealed_key,
            ).order_by(signing_keys.c.created_at)
            return [tuple(r) for r in (await conn.execute(query)).all()]  # type: ignore[misc]
    finally:
        await db.close()


async def test_signing_keys_are_stored_sealed(gateway_settings: GatewaySettings) -> None:
    async with fresh_database(gateway_settings) as settings:
        async with running(settings):
            pass
        rows = await key_rows(settings)
        assert len(rows) == 1
        kid, pem, sealed_with, sealed = rows[0]
        assert pem is None
        assert sealed_with == kek_id(parse_kek(KEK))
        assert PEM_HEADER not in sealed
        # The key opens with the KEK only, and only for its own row.
        assert PEM_HEADER in Keks(KEK).unseal(sealed_with, sealed, kid.encode())
        with pytest.raises(KekError):
            Keks(new_kek()).unseal(sealed_with, sealed, kid.encode())
        with pytest.raises(KekError):
            Keks(KEK).unseal(sealed_with, sealed, b"another-kid")


async def test_a_plain_text_key_is_sealed_at_start(gateway_settings: GatewaySettings) -> None:
    async with fresh_database(gateway_settings) as settings:
        kid, pem = "20200101-legacy", jwt.generate_private_key_pem()
        db = Database(settings.database_url, pool_size=1, max_overflow=0)
        try:
            async with db.transaction() as conn:
                await conn.execute(signing_keys.insert().values(kid=kid, private_pem=pem))
        finally:
            await db.close()
        async with running(settings) as app:
            rt: GatewayRuntime = app.state.runtime
            # The same key keeps signing: tokens it signed before still verify.
            assert rt.keys.signing is not None
            assert rt.keys.signing.kid == kid
        ((_, stored_pem, sealed_with, sealed),) = await key_rows(settings)
        assert stored_pem is None
        assert sealed_with == rt.keks.current_id
        assert PEM_HEADER not in sealed


async def test_the_kek_rotates_with_the_previous_one_given(
    gateway_settings: GatewaySettings,
) -> None:
    async with fresh_database(gateway_settings) as settings:
        async with running(settings) as app:
            rt: GatewayRuntime = app.state.runtime
            assert rt.keys.signing is not None
            kid = rt.keys.signing.kid
        old_id = kek_id(parse_kek(KEK))
        newer = new_kek()
        rotated = settings.model_copy(
            update={"kek": SecretStr(newer), "kek_previous": SecretStr(KEK)}
        )
        async with running(rotated) as app:
            rt = app.state.runtime
            assert rt.keys.signing is not None
            assert rt.keys.signing.kid == kid  # the same signing key, re-sealed
        ((_, _, sealed_with, _),) = await key_rows(settings)
        assert sealed_with == kek_id(parse_kek(newer)) != old_id
        # Once re-sealed, the new KEK alone is enough.
        async with running(settings.model_copy(update={"kek": SecretStr(newer)})) as app:
            assert app.state.runtime.keys.signing.kid == kid
        # The old KEK alone no longer opens the active key: the gateway refuses to start.
        with pytest.raises(KekError, match="KOMAR_KEK_PREVIOUS"):
            async with running(settings):
                pass


async def test_no_kek_no_gateway(gateway_settings: GatewaySettings) -> None:
    with pytest.raises(KekError) as caught:
        GatewayRuntime(gateway_settings.model_copy(update={"kek": None}))
    assert str(caught.value) == MISSING
    with pytest.raises(KekError, match="32 bytes"):
        GatewayRuntime(gateway_settings.model_copy(update={"kek": SecretStr("c2hvcnQ")}))
