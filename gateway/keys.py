"""RS256 signing keys: kept in the database, shared by every replica, rotated without downtime."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from gateway import domain, store
from libs.common import jwt
from libs.common.db import Database
from libs.common.logging import get_logger

log = get_logger(__name__)

# How stale a replica's copy of the keys may be when a JWKS is asked for.
FRESH_S = 0.1


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    private_pem: str


class KeyRing:
    """The signing key and the published public keys of this replica, reloaded from the database.

    A retired key stays published for the token lifetime plus a margin, so tokens it
    signed keep verifying until they expire: rotation needs no downtime.
    """

    def __init__(self, db: Database, *, token_ttl_s: int, retire_margin_s: int) -> None:
        self._db = db
        self._keep_retired_s = token_ttl_s + retire_margin_s
        self._public: dict[str, dict[str, Any]] = {}
        self.signing: SigningKey | None = None
        self.jwks: dict[str, Any] = {"keys": []}
        self.jwks_body: bytes = b'{"keys":[]}'
        self._reload_lock = asyncio.Lock()
        self._loaded_at = -1e9

    async def ensure_active(self) -> None:
        """Create a signing key unless one is active (one replica creates it, under a lock)."""
        async with self._db.transaction() as conn:
            if await store.active_key(conn) is None:
                await store.lock_keys(conn)
                if await store.active_key(conn) is None:
                    kid = await self._create(conn)
                    log.info("keys.created", kid=kid)
        await self.reload()

    async def rotate(self, *, older_than_s: float | None = None) -> tuple[str, str | None] | None:
        """Make a new key the signing key and retire the old one; returns (new, old) kids.

        With `older_than_s`, rotate only if the active key is at least that old (checked
        under the lock, so replicas rotating on a timer rotate once between them).
        """
        async with self._db.transaction() as conn:
            await store.lock_keys(conn)
            if older_than_s is not None:
                age = await store.key_age_s(conn)
                if age is not None and age < older_than_s:
                    return None
            kids = await self.rotate_in(conn)
        await self.reload()
        return kids

    async def rotate_in(self, conn: AsyncConnection) -> tuple[str, str | None]:
        """Rotate inside the caller's transaction (call reload() after it commits)."""
        await store.lock_keys(conn)
        old = await store.retire_active_key(conn)
        new = await self._create(conn)
        log.info("keys.rotated", kid=new, previous_kid=old)
        return new, old

    async def reload(self, *, if_older_than_s: float | None = None) -> None:
        """Read the active and still-published keys from the database."""
        async with self._reload_lock:
            started = time.monotonic()
            if if_older_than_s is not None and started - self._loaded_at <= if_older_than_s:
                return  # another caller reloaded while we waited
            async with self._db.transaction() as conn:
                rows = await store.published_keys(conn, self._keep_retired_s)
            public: dict[str, dict[str, Any]] = {}
            signing: SigningKey | None = None
            for row in rows:
                known = self._public.get(row.kid)
                if known is None:
                    known = await asyncio.to_thread(jwt.public_jwk, row.private_pem, row.kid)
                public[row.kid] = known
                if row.retired_at is None:
                    signing = SigningKey(row.kid, row.private_pem)
            self._public = public
            self.signing = signing
            self.jwks = {"keys": list(public.values())}
            self.jwks_body = json.dumps(self.jwks, separators=(",", ":")).encode()
            self._loaded_at = started

    async def fresh_jwks_body(self, max_age_s: float = FRESH_S) -> bytes:
        """The JWKS, reloaded first when older than `max_age_s`.

        Services fetch the JWKS when they meet an unknown kid, typically right after another
        replica rotated: answering from the database (at most every `max_age_s`) means any
        replica publishes a new key as soon as it is committed.
        """
        if time.monotonic() - self._loaded_at > max_age_s:
            await self.reload(if_older_than_s=max_age_s)
        return self.jwks_body

    async def fetch_jwks(self) -> dict[str, Any]:
        """The JWKS for this replica's own TokenVerifier, which asks on an unknown kid."""
        await self.fresh_jwks_body()
        return self.jwks

    @staticmethod
    async def _create(conn: AsyncConnection) -> str:
        kid = domain.new_kid()
        pem = await asyncio.to_thread(jwt.generate_private_key_pem)
        await store.insert_key(conn, kid, pem)
        return kid

    def sign(self, claims: dict[str, Any], *, issuer: str, audience: str, ttl_s: int) -> str:
        """Sign an access token with the active key."""
        key = self.signing
        if key is None:
            raise RuntimeError("no active signing key")
        token, _ = jwt.sign(
            claims,
            private_pem=key.private_pem,
            kid=key.kid,
            issuer=issuer,
            audience=audience,
            ttl_s=ttl_s,
        )
        return token
