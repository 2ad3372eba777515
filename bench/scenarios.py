"""The scenarios of `make bench` on the whole platform, each counted once the consumers have
caught up (bench/__main__.py runs them in order and bench/report.py prints them).

- spread:   registrations through the gateway, children spread over every commune;
- crowded:  the same into one commune that already holds CROWDED_CHILDREN children
            (seeded through children:batch first);
- lag:      registrations paced at LAG_LOAD of the spread case's sustained maximum, with
            the services' `komar_events_lag_seconds` histogram read before and after;
- bulk:     BULK_CHILDREN children through children:batch from one client.

A registration figure is *sustained*: children / (time from the first request until every
consumer has applied the last event). Sizes: BENCH_CROWDED_CHILDREN, BENCH_BULK_CHILDREN;
BENCH_SMALL=1 shrinks both (and the windows: bench/measure.py).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx

from bench.children import child_bodies
from bench.measure import SECONDS, SMALL, request_figures
from bench.platform import histograms, lag_quantiles

if TYPE_CHECKING:
    from bench.__main__ import Bench

CROWDED_COMMUNE = "120101"  # Tonle Basak, Phnom Penh
CROWDED_CHILDREN = int(os.environ.get("BENCH_CROWDED_CHILDREN", "500" if SMALL else "20000"))
BULK_CHILDREN = int(os.environ.get("BENCH_BULK_CHILDREN", "2000" if SMALL else "100000"))
BATCH = 1000  # children:batch's maximum
LAG_LOAD = 0.8
CATCH_UP_TIMEOUT = float(os.environ.get("BENCH_CATCH_UP_TIMEOUT", "1800"))
COLLECTION = "/v1/registry/children"


def batch_register(
    gateway: str, token: str, bodies: list[dict[str, Any]], say: Callable[[str], None]
) -> tuple[list[str], float, float]:
    """Register `bodies` through children:batch, one request after the other from one client;
    (ids, wall-clock time of the first request, of the last answer)."""
    ids: list[str] = []
    began = time.time()
    with httpx.Client(base_url=gateway, timeout=300.0) as http:
        for start in range(0, len(bodies), BATCH):
            answer = http.post(
                f"{COLLECTION}:batch",
                headers={"Authorization": f"Bearer {token}"},
                json={"items": bodies[start : start + BATCH]},
            )
            if answer.status_code != 200:
                raise RuntimeError(
                    f"children:batch: HTTP {answer.status_code}: {answer.text[:300]}"
                )
            for result in answer.json()["results"]:
                if result["status"] != "created":
                    raise RuntimeError(f"children:batch: {result}")
                ids.append(result["id"])
            if (start // BATCH) % 20 == 19:
                say(f"  {len(ids):,} of {len(bodies):,} registered")
    return ids, began, time.time()


def sustained_create(
    bench: Bench, label: str, token: str, bodies: list[dict[str, Any]], rate: float = 0.0
) -> dict[str, Any]:
    """Registrations through the gateway (closed loop, or paced at `rate`), then the wait
    until every consumer has applied them; the figures, `sustained_rps` included."""
    before = bench.platform_progress_size("REGISTRY")
    cpu_before = bench.cpu_seconds()
    watch = bench.watch("registry")
    job: dict[str, Any] = {
        "base_url": bench.gateway,
        "method": "POST",
        "paths": [COLLECTION],
        "bodies": bodies,
        "headers": {"Authorization": f"Bearer {token}"},
        "expect": [201],
        "collect_ids": True,
        "rate": rate,
    }
    figures = request_figures(bench.loadgen.run(label, job, watch), watch)
    created = len(figures.pop("ids"))
    caught_up = bench.wait_caught_up(CATCH_UP_TIMEOUT, {"REGISTRY": before + created})
    figures["created"] = created
    figures["cpu_ms_per_child"] = cpu_per_item(cpu_before, bench.cpu_seconds(), created)
    figures["catch_up_s"] = round(caught_up - figures["ended_at"], 2)
    whole = caught_up - figures["began_at"]
    figures["sustained_rps"] = round(created / whole, 1) if whole > 0 else None
    return figures


def cpu_per_item(before: dict[str, float], after: dict[str, float], items: int) -> dict[str, float]:
    """CPU ms per item by process between two `cpu_seconds` snapshots, and their total."""
    used = {name: (after[name] - before[name]) * 1000 / items for name in after} if items else {}
    return {name: round(ms, 3) for name, ms in (used | {"total": sum(used.values())}).items()}


def spread(bench: Bench, token: str) -> dict[str, Any]:
    """Registrations spread over every commune."""
    return sustained_create(bench, "spread-create", token, child_bodies(8192, seed=3))


def crowded(bench: Bench, token: str, say: Callable[[str], None]) -> dict[str, Any]:
    """Seed CROWDED_CHILDREN into one commune, then registrations into it."""
    say(f"crowded commune: seeding {CROWDED_CHILDREN:,} children into {CROWDED_COMMUNE}")
    seed = child_bodies(CROWDED_CHILDREN, seed=5, commune=CROWDED_COMMUNE)
    _, began, ended = batch_register(bench.gateway, token, seed, say)
    caught_up = bench.wait_caught_up(CATCH_UP_TIMEOUT)
    say(
        f"  seeded in {ended - began:.1f} s, counted by every consumer after "
        f"{caught_up - began:.1f} s"
    )
    bodies = child_bodies(8192, seed=6, commune=CROWDED_COMMUNE)
    figures = sustained_create(bench, "crowded-create", token, bodies)
    figures["seeded"] = CROWDED_CHILDREN
    figures["commune"] = CROWDED_COMMUNE
    return figures


def lag(bench: Bench, token: str, max_rps: float) -> dict[str, Any]:
    """Event lag from commit to each consumer having applied it, under paced registrations
    at LAG_LOAD of `max_rps`; the histogram's p50/p99 per consumer, or None when absent."""
    rate = round(LAG_LOAD * max_rps, 1)
    before = histograms(bench.metrics())
    figures = sustained_create(bench, "lag-create", token, child_bodies(8192, seed=7), rate)
    after = histograms(bench.metrics())
    return {
        "target_rps": rate,
        "load": {k: figures[k] for k in ("rps", "p50_ms", "p99_ms", "errors", "catch_up_s")},
        "cpu_ms_per_child": figures["cpu_ms_per_child"],
        "consumers": lag_quantiles(before, after),
        "window_s": SECONDS,
    }


def bulk(bench: Bench, token: str, say: Callable[[str], None]) -> dict[str, Any]:
    """BULK_CHILDREN children through children:batch from one client, then the catch-up."""
    bodies = child_bodies(BULK_CHILDREN, seed=8)
    before = bench.platform_progress_size("REGISTRY")
    cpu_before = bench.cpu_seconds()
    say(f"bulk import: {BULK_CHILDREN:,} children, {BATCH} per children:batch request")
    ids, began, ended = batch_register(bench.gateway, token, bodies, say)
    caught_up = bench.wait_caught_up(CATCH_UP_TIMEOUT, {"REGISTRY": before + len(ids)})
    return {
        "children": len(ids),
        "accepted_s": round(ended - began, 2),
        "accepted_per_s": round(len(ids) / (ended - began), 1),
        "counted_s": round(caught_up - began, 2),
        "counted_per_s": round(len(ids) / (caught_up - began), 1),
        "catch_up_after_last_s": round(caught_up - ended, 2),
        "cpu_ms_per_child": cpu_per_item(cpu_before, bench.cpu_seconds(), len(ids)),
    }
