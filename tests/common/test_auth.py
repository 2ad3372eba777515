"""The token verifier follows the gateway's key set: new keys at once, retired keys in time."""

from __future__ import annotations

import pytest

from libs.common.auth import TokenVerifier
from libs.common.errors import Unauthorized
from tests.support import AUDIENCE, ISSUER, SigningKeys


async def test_new_key_is_fetched_and_a_retired_one_dropped() -> None:
    old, new = SigningKeys(), SigningKeys()
    published = {"keys": old.jwks()["keys"]}
    fetches = 0

    async def fetch() -> dict:
        nonlocal fetches
        fetches += 1
        return published

    verifier = TokenVerifier(
        fetch, issuer=ISSUER, audience=AUDIENCE, refresh_interval_s=0, max_key_age_s=0.2
    )
    assert (await verifier.verify(old.token(sub="a"))).sub == "a"
    published = {"keys": old.jwks()["keys"] + new.jwks()["keys"]}  # rotation: both published
    assert (await verifier.verify(new.token(sub="b"))).sub == "b"
    published = {"keys": new.jwks()["keys"]}  # the old key retired
    import asyncio

    await asyncio.sleep(0.3)
    with pytest.raises(Unauthorized):
        await verifier.verify(old.token(sub="c"))
    assert (await verifier.verify(new.token(sub="d"))).sub == "d"
    assert fetches >= 3


async def test_known_keys_survive_a_gateway_outage() -> None:
    keys = SigningKeys()
    up = True

    async def fetch() -> dict:
        if not up:
            raise ConnectionError("gateway away")
        return keys.jwks()

    verifier = TokenVerifier(fetch, issuer=ISSUER, audience=AUDIENCE, max_key_age_s=0)
    await verifier.verify(keys.token())
    up = False
    assert (await verifier.verify(keys.token(sub="later"))).sub == "later"
