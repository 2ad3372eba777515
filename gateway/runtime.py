"""What a gateway process holds while it runs: pool, keys, principals, limits, upstream client."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import time

from fastapi import Request
from sqlalchemy import Table

from gateway import domain, store
from gateway.kek import MISSING, KekError, Keks
from gateway.keys import FRESH_S, KeyRing
from gateway.models import clients, idempotency_keys
from gateway.settings import GatewaySettings
from gateway.upstream import Pool
from libs.common.auth import SCOPES, Principal, TokenVerifier, bearer_token
from libs.common.db import Database
from libs.common.errors import Unauthorized
from libs.common.http import Idempotency
from libs.common.jobs import PeriodicJobs
from libs.common.logging import get_logger
from libs.common.settings import ADMIN_SECRET_FILE, load_or_create_admin_secret

log = get_logger(__name__)


ADMIN_ORG = "komar"
ADMIN_AREAS = ["KH"]


class TrustedProxies:
    """Which peers may tell us the original client address (X-Forwarded-For)."""

    def __init__(self, entries: list[str]) -> None:
        self._networks = [ipaddress.ip_network(e, strict=False) for e in entries]
        self._seen: dict[str, bool] = {}

    def __contains__(self, peer: object) -> bool:
        if not self._networks or not isinstance(peer, str):
            return False
        known = self._seen.get(peer)
        if known is None:
            try:
                address = ipaddress.ip_address(peer)
                known = any(address in net for net in self._networks)
            except ValueError:
                known = False
            if len(self._seen) < 10_000:
                self._seen[peer] = known
        return known

    def client_address(self, peer: str, forwarded_for: str | None) -> str:
        """Walking X-Forwarded-For from the right, the first address not a trusted proxy."""
        if forwarded_for is None or peer not in self:
            return peer
        for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
            if hop not in self:
                return hop
        return peer


class PrincipalGuard:
    """Disabled principals, users whose sign-ins were ended (a new password), and
    per-principal rates, reloaded from the database every few s."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.disabled: frozenset[str] | set[str] = frozenset()
        # user -> when every sign-in of theirs ended (seconds since the epoch)
        self.ended: dict[str, float] = {}
        self._token_ttl_s = settings.token_ttl_s
        self.rates: dict[str, tuple[float, float]] = {}
        self._default_rate = settings.rate_limit_per_second
        self._default_burst = settings.rate_limit_burst
        # Changes made on this replica, so a reload that read the database just before
        # them does not undo them: sub -> (active, when).
        self._recent: dict[str, tuple[bool, float]] = {}

    async def refresh(self, db: Database) -> None:
        started = time.monotonic()
        async with db.transaction() as conn:
            disabled = await store.disabled_principals(conn)
            ended = await store.sessions_ended(conn, self._token_ttl_s + 60)
            rates = await store.principal_rates(conn)
        for sub, (active, at) in list(self._recent.items()):
            if at < started - 60:
                del self._recent[sub]
            elif at >= started and active:
                disabled.discard(sub)
            elif at >= started:
                disabled.add(sub)
        self.disabled = disabled
        for sub, at in self.ended.items():  # ended on this replica since the read
            if at > ended.get(sub, 0.0) and at > time.time() - self._token_ttl_s - 60:
                ended[sub] = at
        self.ended = ended
        self.rates = {
            sub: (rate, domain.burst_for(rate, self._default_rate, self._default_burst))
            for sub, rate in rates.items()
        }

    def set_rate(self, sub: str, rate: float | None) -> None:
        """A principal's own rate, effective on this replica now."""
        if rate is None:
            self.rates.pop(sub, None)
        else:
            self.rates[sub] = (
                rate,
                domain.burst_for(rate, self._default_rate, self._default_burst),
            )

    def check(self, principal: Principal) -> None:
        """401 for the token of a disabled principal, or of a sign-in ended since it was
        issued (a token issued within the second before still passes: `iat` counts whole
        seconds, and the next sign-in may come from another replica's clock)."""
        if principal.sub in self.disabled:
            raise Unauthorized("this client or user is disabled")
        ended = self.ended.get(principal.sub)
        if ended is not None and principal.issued_at < int(ended) - 1:
            raise Unauthorized("this sign-in has ended (a new password): sign in again")

    def end_sessions(self, sub: str, at: float) -> None:
        """Every sign-in of the user ended at `at`: effective on this replica now (others
        follow within the refresh interval)."""
        self.ended = {**self.ended, sub: at}

    def disable(self, sub: str) -> None:
        """Take effect on this replica now (others follow within the refresh interval)."""
        self._recent[sub] = (False, time.monotonic())
        self.disabled = {*self.disabled, sub}

    def enable(self, sub: str) -> None:
        self._recent[sub] = (True, time.monotonic())
        self.disabled = set(self.disabled) - {sub}


class KeyedIdempotency(Idempotency):
    """Idempotency-Key records whose request digest is keyed (HMAC under a KEK-derived key).

    Admin requests carry passwords: a plain SHA-256 of such a body, kept 24 h, would let
    anyone reading the table test guesses of the password offline. Keyed, it tells nothing
    without the KEK.
    """

    def __init__(self, table: Table, key: bytes) -> None:
        super().__init__(table)
        self._key = key

    async def request_hash(self, request: Request) -> bytes:  # type: ignore[override]
        body = await request.body()
        message = request.method.encode() + b" " + request.url.path.encode() + b"\n" + body
        return hmac.new(self._key, message, hashlib.sha256).digest()


class GatewayRuntime:
    """The long-lived parts of one gateway process, started and stopped together."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        if settings.kek is None:
            raise KekError(MISSING)
        previous = settings.kek_previous
        self.keks = Keks(
            settings.kek.get_secret_value(),
            previous.get_secret_value() if previous is not None else None,
        )
        self.db = Database(
            settings.database_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
        )
        self.keys = KeyRing(
            self.db,
            self.keks,
            token_ttl_s=settings.token_ttl_s,
            retire_margin_s=settings.key_retire_margin_s,
        )
        self.verifier = TokenVerifier(
            self.keys.fetch_jwks,
            issuer=settings.issuer,
            audience=settings.audience,
            # An unknown kid is most likely a key another replica just made: look soon.
            refresh_interval_s=FRESH_S,
        )
        self.guard = PrincipalGuard(settings)
        self.idempotency = KeyedIdempotency(idempotency_keys, self.keks.request_digest_key)
        self.limiter = domain.RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst)
        # Failed token requests, per source address (far above honest use) and per client id.
        self.login_failures = domain.RateLimiter(
            settings.login_failures_per_minute / 60.0, settings.login_failure_burst
        )
        self.client_failures = domain.RateLimiter(
            settings.client_failures_per_minute / 60.0, settings.client_failure_burst
        )
        self.trusted_proxies = TrustedProxies(settings.trusted_proxies)
        # Kept-alive connections to each service replica, by base URL (opened at start).
        self.pools: dict[str, Pool] = {}
        self._client_fingerprints: dict[str, bytes] = {}
        # Chores on this replica's own memory (keys, principals, buckets), so on every replica;
        # the purges of stored rows run there too (a second purge finds nothing to delete).
        self.jobs = PeriodicJobs("gateway")
        self.jobs.every(
            "keys.refresh",
            settings.key_refresh_interval_s,
            self._refresh_keys,
            once_across_replicas=False,
        )
        self.jobs.every(
            "principals.refresh",
            settings.principal_refresh_interval_s,
            lambda: self.guard.refresh(self.db),
            once_across_replicas=False,
        )
        self.jobs.every(
            "limits.cleanup", 60.0, self._forget_idle_buckets, once_across_replicas=False
        )
        self.jobs.every(
            "idempotency.purge", 3600.0, self._purge_idempotency, once_across_replicas=False
        )
        self.jobs.every(
            "refresh_tokens.purge",
            settings.refresh_purge_interval_s,
            self._purge_refresh_tokens,
            once_across_replicas=False,
        )

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        try:
            await self.keys.ensure_active()
        except KekError as exc:
            # Said plainly (exception messages stay out of logs): it names KEK ids, no secret.
            log.error("gateway.cannot_start", problem=str(exc))
            raise
        await self._bootstrap_admin()
        await self.guard.refresh(self.db)
        limit = asyncio.Semaphore(self.settings.upstream_max_connections)
        self.pools = {
            base: Pool(
                base,
                connect_timeout=self.settings.upstream_connect_timeout_s,
                read_timeout=self.settings.upstream_timeout_s,
                # Below uvicorn's 5 s keep-alive: drop an idle connection before the service does.
                keepalive_s=4.0,
                limit=limit,
            )
            for bases in self.settings.upstreams().values()
            for base in bases
        }
        self.jobs.start()
        log.info("gateway.started", kid=self.keys.signing.kid if self.keys.signing else None)

    async def stop(self) -> None:
        await self.jobs.stop()
        for pool in self.pools.values():
            await pool.close()
        await self.db.close()
        log.info("gateway.stopped")

    async def ready(self) -> dict[str, bool]:
        """Readiness: the database answers and a signing key is loaded (no broker needed)."""
        return {"database": await self.db.ping(), "signing_key": self.keys.signing is not None}

    async def _refresh_keys(self) -> None:
        days = self.settings.key_rotation_days
        if days > 0 and await self.keys.rotate(older_than_s=days * 86400) is not None:
            return
        await self.keys.reload()

    async def _forget_idle_buckets(self) -> None:
        now = time.monotonic()
        self.limiter.forget_idle(now)
        self.login_failures.forget_idle(now)
        self.client_failures.forget_idle(now)

    async def _purge_idempotency(self) -> None:
        async with self.db.transaction() as conn:
            await self.idempotency.purge_expired(conn)

    async def _purge_refresh_tokens(self) -> None:
        async with self.db.transaction() as conn:
            purged = await store.purge_refresh_tokens(conn)
        if purged:
            log.info("refresh_tokens.purged", count=purged)

    async def _bootstrap_admin(self) -> None:
        """The `admin` client: secret from KOMAR_ADMIN_SECRET, else stored under the data folder."""
        settings = self.settings
        if settings.admin_secret is not None:
            secret, created = settings.admin_secret.get_secret_value(), False
        else:
            secret, created = load_or_create_admin_secret(settings.data_dir)
        if created:
            log.warning(
                "admin.secret.created",
                stored_in=str(settings.data_dir / ADMIN_SECRET_FILE),
                client_id=domain.BOOTSTRAP_ADMIN,
            )
        async with self.db.transaction() as conn:
            row = await store.get_principal(conn, clients, domain.BOOTSTRAP_ADMIN, admin_areas=None)
        if row is not None and await asyncio.to_thread(
            domain.verify_secret, secret, row.secret_hash
        ):
            secret_hash = row.secret_hash
        else:
            secret_hash = await asyncio.to_thread(domain.hash_secret, secret)
        async with self.db.transaction() as conn:
            await store.upsert_bootstrap_admin(
                conn,
                client_id=domain.BOOTSTRAP_ADMIN,
                name="Bootstrap administrator",
                org=ADMIN_ORG,
                org_type="government",
                scopes=sorted(SCOPES),
                areas=ADMIN_AREAS,
                secret_hash=secret_hash,
            )

    # ------------------------------------------------------------ secrets

    def client_secret_known(self, client_id: str, secret: str, stored_hash: str) -> bool:
        """Whether this replica verified exactly this secret of this client before (no scrypt)."""
        known = self._client_fingerprints.get(client_id)
        return known is not None and hmac.compare_digest(
            known, domain.secret_fingerprint(stored_hash, secret)
        )

    async def client_secret_ok(self, client_id: str, secret: str, stored_hash: str) -> bool:
        """Verify a client secret; a secret verified before skips scrypt (it has 256 bits)."""
        if self.client_secret_known(client_id, secret, stored_hash):
            return True
        ok = await asyncio.to_thread(domain.verify_secret, secret, stored_hash)
        if ok:
            if len(self._client_fingerprints) > 10_000:
                self._client_fingerprints.clear()
            self._client_fingerprints[client_id] = domain.secret_fingerprint(stored_hash, secret)
        return ok


def request_runtime(request: Request) -> GatewayRuntime:
    """The runtime of the process serving `request` (pool, keys, limits)."""
    rt: GatewayRuntime = request.app.state.runtime
    return rt


async def request_principal(request: Request) -> Principal:
    """Dependency: the caller of a gateway route, from a valid token of an enabled client or
    user (401 otherwise)."""
    rt = request_runtime(request)
    principal = await rt.verifier.verify(bearer_token(request))
    rt.guard.check(principal)
    request.state.principal = principal
    return principal
