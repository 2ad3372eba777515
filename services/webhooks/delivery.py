"""The delivery worker: a loop of every replica that sends due deliveries.

1. Claim due deliveries in a short transaction (`store.claim_due`: `FOR UPDATE SKIP LOCKED`,
   their next attempt pushed a lease ahead, none while an earlier delivery about the same
   record to the same endpoint is pending), and in the same transaction check that each
   endpoint's owner may still see its record (`service.visible_now`): one that may not is
   dropped, recorded as such, and never sent.
2. Send each (no transaction open): the URL checked again and the connection made to the
   address that was checked; Standard Webhooks headers, `webhook-id` the delivery's id on
   every attempt; a 2xx within the timeout (10 s) delivers.
3. Record the attempt and what follows in another short transaction (`domain.verdict`:
   back-off with full jitter, 410 disables, failing for 5 days disables).

A replica killed between 1 and 3 leaves its claimed deliveries due again once their lease
ends: they are sent again, with the same webhook-id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from datetime import UTC, datetime

import httpx
from prometheus_client import Counter, Histogram

from libs.common.db import Database
from libs.common.logging import exception_facts, get_logger
from services.webhooks import domain, service, store, urls

log = get_logger(__name__)
# httpx logs every request with its URL at INFO: a partner's URL may carry a token of theirs.
logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("httpcore").setLevel(logging.WARNING)

ATTEMPTS = Counter(
    "komar_webhook_attempts_total",
    "Webhook delivery attempts by outcome (delivered, failed, dropped)",
    ["outcome"],
)
LATENCY = Histogram(
    "komar_webhook_attempt_seconds",
    "Time from sending a webhook to its answer's status line",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


# Receivers' host names whose connections a sender keeps (the least recently used beyond
# them are closed), and the idle connections it keeps per host name.
KEPT_HOSTS = 128
KEPT_PER_HOST = 16


class Sender:
    """Sends one attempt: checks the URL, connects to the checked address, returns what
    came back (status code and latency, or the error's class). Never reads the body.

    Connections are kept between attempts (opening one costs a third of an attempt's CPU),
    in one pool per receiver's host name: the pool's connections go to the address that was
    checked (the URL names it), so a connection is reused only for the same host name at
    the same checked address, never for another name that resolves there."""

    def __init__(self, *, timeout_s: float, allow_loopback: bool, resolver: urls.Resolver) -> None:
        self.timeout_s = timeout_s
        self.allow_loopback = allow_loopback
        self.resolver = resolver
        self._clients: OrderedDict[tuple[str, str], httpx.AsyncClient] = OrderedDict()
        self._closing: set[asyncio.Task[None]] = set()

    def _client(self, target: urls.Target) -> httpx.AsyncClient:
        key = (target.scheme, target.host)
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout_s),
                follow_redirects=False,
                trust_env=False,  # no proxy from the environment
                limits=httpx.Limits(max_keepalive_connections=KEPT_PER_HOST, keepalive_expiry=30),
            )
            while len(self._clients) > KEPT_HOSTS:
                _, evicted = self._clients.popitem(last=False)
                closing = asyncio.get_running_loop().create_task(evicted.aclose())
                self._closing.add(closing)
                closing.add_done_callback(self._closing.discard)
        self._clients.move_to_end(key)
        return client

    async def send(self, url: str, msg_id: str, body: str, signing: Sequence[str]) -> domain.Result:
        started = time.monotonic()

        def ms() -> int:
            return int((time.monotonic() - started) * 1000)

        try:
            async with asyncio.timeout(self.timeout_s):
                target, address = await urls.check(
                    url, allow_loopback=self.allow_loopback, resolver=self.resolver
                )
                headers = domain.headers(msg_id, int(time.time()), body, signing)
                headers["host"] = target.host_header
                extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
                client = self._client(target)
                request = client.build_request(
                    "POST",
                    target.url_at(address),
                    content=body.encode(),
                    headers=headers,
                    extensions=extensions,
                )
                answer = await client.send(request, stream=True)
                latency = ms()
                await answer.aclose()
            LATENCY.observe(latency / 1000)
            return domain.Result(answer.status_code, latency)
        except urls.UrlRefused:
            return domain.Result(None, ms(), "address_refused")
        except (TimeoutError, httpx.TimeoutException):
            return domain.Result(None, ms(), "timeout")
        except httpx.ConnectError:
            return domain.Result(None, ms(), "connect_error")
        except httpx.RemoteProtocolError:
            return domain.Result(None, ms(), "protocol_error")
        except httpx.HTTPError:
            return domain.Result(None, ms(), "transport_error")
        except OSError:
            return domain.Result(None, ms(), "network_error")

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), OrderedDict()
        for client in clients:
            await client.aclose()


class DeliveryWorker:
    """Claims, sends and records deliveries, up to `concurrency` at once, while it runs."""

    def __init__(
        self,
        db: Database,
        sender: Sender,
        policy: domain.Policy,
        *,
        concurrency: int = 32,
        lease_s: float = 30.0,
        poll_s: float = 0.25,
    ) -> None:
        self.db = db
        self.sender = sender
        self.policy = policy
        self.concurrency = concurrency
        self.lease_s = lease_s
        self.poll_s = poll_s
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="webhooks-delivery")

    async def stop(self, grace_s: float = 5.0) -> None:
        """Stop claiming; give the attempts under way a moment to end, then cancel them
        (their leases end and another replica, or this one restarted, sends them again)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._inflight:
            await asyncio.wait(self._inflight, timeout=grace_s)
        for task in list(self._inflight):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.sender.close()

    async def _run(self) -> None:
        # Claims are made in chunks: a claim per finished attempt would make the claiming
        # transaction, one after another, the limit (about 170 deliveries/s on 2 cores).
        chunk = max(1, self.concurrency // 4)
        while True:
            room = self.concurrency - len(self._inflight)
            claimed = 0
            if room >= chunk or (room > 0 and not self._inflight):
                try:
                    claimed = await self.run_once(room)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("webhooks.claim_failed", **exception_facts(exc))
                    await asyncio.sleep(1.0)
                    continue
            if claimed < room or room < chunk:
                if self._inflight:
                    await asyncio.wait(
                        self._inflight, timeout=self.poll_s, return_when=asyncio.FIRST_COMPLETED
                    )
                else:
                    await asyncio.sleep(self.poll_s)

    async def run_once(self, limit: int) -> int:
        """Claim up to `limit` due deliveries, record those dropped and start sending the
        others; returns how many were claimed."""
        async with self.db.transaction() as conn:
            claimed = await store.claim_due(conn, limit, self.lease_s)
            visible = await service.visible_now(conn, claimed) if claimed else set()
            for row in claimed:
                if row["id"] not in visible:
                    await store.record_outcome(
                        conn,
                        row["id"],
                        row["endpoint_id"],
                        row["attempts"],
                        "dropped",
                        None,
                        None,
                        self.policy.disable_after.total_seconds(),
                    )
                    ATTEMPTS.labels("dropped").inc()
        for row in claimed:
            if row["id"] in visible:
                task = asyncio.create_task(self._deliver(row))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)
        return len(claimed)

    async def _deliver(self, row: store.Row) -> None:
        try:
            await self._attempt(row)
        except Exception as exc:  # the lease ends and it is sent again, same webhook-id
            log.warning("webhooks.delivery_failed", **exception_facts(exc))

    async def _attempt(self, row: store.Row) -> None:
        signing = domain.signing_secrets(
            row["secret"], row["previous_secret"], row["previous_until"], datetime.now(UTC)
        )
        result = await self.sender.send(row["url"], str(row["id"]), row["body"], signing)
        verdict = domain.verdict(
            result,
            attempt=row["attempts"],
            round_started_at=row["round_started_at"],
            failing_since=row["failing_since"],
            now=datetime.now(UTC),
            policy=self.policy,
        )
        outcome = "delivered" if result.delivered else "failed"
        ATTEMPTS.labels(outcome).inc()
        if verdict.status == "delivered" and row["failing_since"] is None:
            async with self.db.connection() as conn:  # one statement: no BEGIN or COMMIT
                await store.record_delivered(conn, row["id"], row["attempts"], result)
            return
        async with self.db.transaction() as conn:
            await store.record_outcome(
                conn,
                row["id"],
                row["endpoint_id"],
                row["attempts"],
                outcome,
                result,
                verdict,
                self.policy.disable_after.total_seconds(),
            )
