"""`make bench`'s webhook row: deliveries to a local receiver, as a partner would get them.

A receiver in this process (aiohttp on 127.0.0.1, in a thread of its own; `make run` and the
bench allow loopback receivers) answers 204 to every delivery and notes when it came. A
partner's endpoint subscribed to `registry.child.registered.v1` is made through the
gateway, then:

- **lag**: registrations paced at LAG_LOAD of the spread case's sustained maximum; for each
  delivery, the time from the event's own time (its commit, within milliseconds) to the
  receiver having it: p50 and p99;
- **throughput**: a burst of BURST children through children:batch; deliveries per second
  from the burst's first delivery to its last, and how long after the import's last answer
  the last delivery came.

A delivery repeated by a retry (same `webhook-id`) is counted once, and repeats reported.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx
from aiohttp import web

from bench import scenarios, workflows
from bench.children import child_bodies
from bench.measure import SMALL, quantile
from deploy.local.infra import free_port

if TYPE_CHECKING:
    from bench.__main__ import Bench

BURST = 2_000 if SMALL else 20_000
WAIT_S = 600.0  # the most the bench waits for deliveries to arrive
EVENT = "registry.child.registered.v1"
# An endpoint gets only what its owner may read through the API: registry events need
# registry:read.
SCOPES = ["webhooks:manage", "registry:read"]


class Receiver:
    """A local webhook receiver: first arrival of each webhook-id, and repeats."""

    def __init__(self) -> None:
        self.port = free_port()
        self.arrivals: dict[str, tuple[float, float | None]] = {}  # id -> (received, event time)
        self.repeats = 0
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="webhook-receiver", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/komar"

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the webhook receiver did not start")

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def count(self) -> int:
        with self._lock:
            return len(self.arrivals)

    def since(self, began: float) -> list[tuple[float, float | None]]:
        """Arrivals received at or after `began` (wall clock)."""
        with self._lock:
            return [a for a in self.arrivals.values() if a[0] >= began]

    def wait_for(self, total: int, timeout: float = WAIT_S) -> float:
        """Until `total` distinct deliveries have come; the wall-clock time then."""
        deadline = time.monotonic() + timeout
        while self.count() < total:
            if time.monotonic() > deadline:
                raise RuntimeError(f"webhooks: {self.count():,} of {total:,} deliveries came")
            time.sleep(0.05)
        return time.time()

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.json()
        received = time.time()
        delivery = request.headers.get("webhook-id", "")
        with self._lock:
            if delivery in self.arrivals:
                self.repeats += 1
            else:
                self.arrivals[delivery] = (received, _event_time(body))
        return web.Response(status=204)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/komar", self._hook)
        runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.run_until_complete(runner.cleanup())


def _event_time(body: dict[str, Any]) -> float | None:
    """The event's time, as the delivery's `timestamp` gives it."""
    try:
        return datetime.fromisoformat(str(body["timestamp"]).replace("Z", "+00:00")).timestamp()
    except (KeyError, ValueError):
        return None


def measure(bench: Bench, token: str, max_rps: float, say: Callable[[str], None]) -> dict[str, Any]:
    """The webhook row: lag under paced registrations, then a burst's delivery rate."""
    receiver = Receiver()
    receiver.start()
    platform = workflows.Platform(bench.gateway, bench.admin_secret)
    try:
        partner = platform.client("bench-webhooks", "bench-moswvy", "government", SCOPES, ["KH"])
    finally:
        platform.close()
    headers = {"Authorization": f"Bearer {partner}"}
    with httpx.Client(base_url=bench.gateway, timeout=30) as http:
        made = http.post(
            "/v1/webhooks",
            json={"url": receiver.url, "event_types": [EVENT], "description": "bench"},
            headers=headers,
        )
        if made.status_code != 201:
            raise RuntimeError(f"webhooks: HTTP {made.status_code}: {made.text[:300]}")
        endpoint = made.json()["id"]
    try:
        rate = round(scenarios.LAG_LOAD * max_rps, 1)
        say(f"webhooks: registrations paced at {rate:,.0f}/s, each delivered to a local receiver")
        began = time.time()
        paced = scenarios.sustained_create(
            bench, "webhook-lag", token, child_bodies(8192, seed=11), rate
        )
        receiver.wait_for(paced["created"])
        lags = [(received - at) * 1000 for received, at in receiver.since(began) if at is not None]
        say(f"webhooks: a burst of {BURST:,} children through children:batch")
        before = receiver.count()
        _, burst_began, burst_ended = scenarios.batch_register(
            bench.gateway, token, child_bodies(BURST, seed=12), say
        )
        last = receiver.wait_for(before + BURST)
        burst = sorted(received for received, _ in receiver.since(burst_began))
        spread_s = burst[-1] - burst[0] if len(burst) > 1 else None
        return {
            "paced_rps": paced["rps"],
            "target_rps": rate,
            "deliveries": len(lags),
            "lag_p50_ms": round(quantile(sorted(lags), 0.50), 1) if lags else None,
            "lag_p99_ms": round(quantile(sorted(lags), 0.99), 1) if lags else None,
            "burst": BURST,
            "burst_accepted_s": round(burst_ended - burst_began, 2),
            "burst_delivered_per_s": round(len(burst) / spread_s, 1) if spread_s else None,
            "burst_last_after_s": round(last - burst_ended, 2),
            "repeats": receiver.repeats,
        }
    finally:
        with httpx.Client(base_url=bench.gateway, timeout=30) as http:
            http.delete(f"/v1/webhooks/{endpoint}", headers=headers)
        receiver.stop()
