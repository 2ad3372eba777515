"""RS256 signing keys: kept in the database sealed under the KEK, shared by every replica,
rotated without downtime."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from gateway import domain, store
from gateway.kek import KekError, Keks
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

    def __init__(self, db: Database, keks: Keks, *, token_ttl_s: int, retire_margin_s: int) -> None:
        self._db = db
        self._keks = keks
        # Private keys opened so far, by kid: a key is unsealed once per process, and a key
        # re-sealed under a KEK this replica does not hold (a rotation rolling out) stays usable.
        self._private: dict[str, str] = {}
        self._keep_retired_s = token_ttl_s + retire_margin_s
        self._public: dict[str, dict[str, Any]] = {}
        self.signing: SigningKey | None = None
        self.jwks: dict[str, Any] = {"keys": []}
        self.jwks_body: bytes = b'{"keys":[]}'
        self._reload_lock = asyncio.Lock()
        self._loaded_at = -1e9

    async def ensure_active(self) -> None:
        """Seal what is not sealed under the current KEK, then create a signing key unless
        one is active (one replica does each, under a lock)."""
        await self.seal_at_rest()
        async with self._db.transaction() as conn:
            if await store.active_key(conn) is None:
                await store.lock_keys(conn)
                if await store.active_key(conn) is None:
                    kid = await self._create(conn)
                    log.info("keys.created", kid=kid)
        await self.reload()

    async def seal_at_rest(self) -> int:
        """Seal plain-text keys and re-seal keys of the previous KEK under the current one.

        Raises KekError when the active key was sealed with a KEK this process was not given
        (it could not sign); a retired key in that state is left to age out. Returns how many
        keys were (re)sealed.
        """
        sealed = 0
        async with self._db.transaction() as conn:
            await store.lock_keys(conn)
            for row in await store.keys_to_seal(conn, self._keks.current_id):
                context = row.kid.encode()
                if row.private_pem is not None:
                    pem = row.private_pem
                elif self._keks.knows(row.kek_id):
                    pem = self._keks.unseal(row.kek_id, row.sealed_key, context).decode()
                elif row.retired_at is None:
                    raise KekError(
                        f"the active signing key {row.kid} is sealed with KEK {row.kek_id}, "
                        "which is neither KOMAR_KEK nor KOMAR_KEK_PREVIOUS: give the KEK it "
                        "was sealed with as KOMAR_KEK_PREVIOUS (docs/operations.md)"
                    )
                else:
                    log.warning("keys.unopenable", kid=row.kid, kek_id=row.kek_id)
                    continue
                kek_id, box = self._keks.seal(pem.encode(), context)
                await store.seal_key(conn, row.kid, kek_id, box)
                log.info("keys.sealed", kid=row.kid, kek_id=kek_id, previous_kek_id=row.kek_id)
                sealed += 1
        return sealed

    def _open(self, row: Any) -> str | None:
        """The private key of a row: opened once, then kept in memory."""
        pem = self._private.get(row.kid)
        if pem is not None:
            return pem
        if row.private_pem is not None:  # written by a gateway from before sealing
            pem = str(row.private_pem)
        else:
            try:
                pem = self._keks.unseal(row.kek_id, row.sealed_key, row.kid.encode()).decode()
            except KekError:
                log.warning("keys.unopenable", kid=row.kid, kek_id=row.kek_id)
                return None
        self._private[row.kid] = pem
        return pem

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
                pem = self._open(row)
                if pem is None:
                    continue
                known = self._public.get(row.kid)
                if known is None:
                    known = await asyncio.to_thread(jwt.public_jwk, pem, row.kid)
                public[row.kid] = known
                if row.retired_at is None:
                    signing = SigningKey(row.kid, pem)
            self._private = {kid: self._private[kid] for kid in public}
            self._public = public
            if signing is not None or self.signing is None or self.signing.kid not in public:
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

    async def _create(self, conn: AsyncConnection) -> str:
        kid = domain.new_kid()
        pem = await asyncio.to_thread(jwt.generate_private_key_pem)
        kek_id, sealed = self._keks.seal(pem.encode(), kid.encode())
        await store.insert_key(conn, kid, kek_id, sealed)
        self._private[kid] = pem
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
