"""What `make soak` checks at the end (bench/soak.py), once every consumer has caught up, and
its figures per minute.

- children: the registry's children == the sum of CP_CHILD_REG over every combo at `KH` for
  the year(s) of the run, read with `indicators:read:detail`, so exact: the base-5 rounding
  of small cells applies only without it (docs/api-guide.md#indicators), and a sum of
  rounded cells may differ from the true count by design;
- ledger: `python -m services.funds verify-ledger` (ledger totals == fund balances, every
  grant's entries as its status implies) exits 0;
- events: per durable consumer, events in its inbox (`processed_events`, one row per event
  id: a second application cannot be recorded) + its dead letters == the messages of its
  stream under its filter of the types it applies (`bench.platform.HANDLERS`): none lost,
  none applied twice or extra.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys
from typing import Any

import asyncpg
import httpx

from bench.measure import quantile
from bench.platform import CONSUMERS, subject_counts
from deploy.local.supervisor import REPO_ROOT
from libs.common import clock


def _schema(durable: str) -> str:
    """The service (and schema) a durable consumer belongs to: its name's first word."""
    return durable.split("-", 1)[0]


async def _database_counts(database_url: str) -> dict[str, int]:
    conn = await asyncpg.connect(database_url)
    try:
        out = {
            "registry children": int(await conn.fetchval("SELECT count(*) FROM registry.children"))
        }
        for _, durable, _ in CONSUMERS:
            out[durable] = int(
                await conn.fetchval(
                    f"SELECT count(*) FROM {_schema(durable)}.processed_events WHERE consumer = $1",
                    durable,
                )
            )
        return out
    finally:
        await conn.close()


def registrations(gateway: str, token: str, years: list[int]) -> int:
    """CP_CHILD_REG summed over every combo at KH for `years` (exact with the detail scope)."""
    total = 0
    with httpx.Client(base_url=gateway, timeout=120.0) as http:
        for year in years:
            answer = http.get(
                "/v1/indicators/values",
                params={"indicator": "CP_CHILD_REG", "period": str(year), "area": "KH"},
                headers={"Authorization": f"Bearer {token}"},
            )
            if answer.status_code != 200:
                raise RuntimeError(f"CP_CHILD_REG {year}: HTTP {answer.status_code}")
            total += sum(int(item["value"]) for item in answer.json()["items"])
    return total


def cambodia_years(began: float, ended: float) -> list[int]:
    """The Cambodian calendar years from `began` to `ended` (epoch s)."""
    first, last = (dt.datetime.fromtimestamp(t, clock.CAMBODIA).year for t in (began, ended))
    return list(range(first, last + 1))


def verify_ledger(env: dict[str, str]) -> tuple[bool, str]:
    """Run the funds' ledger verifier; (passed, its last line)."""
    done = subprocess.run(
        [sys.executable, "-m", "services.funds", "verify-ledger"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = (done.stdout + done.stderr).strip().splitlines()
    return done.returncode == 0, (lines[-1] if lines else f"exit code {done.returncode}")


def check(
    env: dict[str, str], gateway: str, indicators_token: str, began: float, ended: float
) -> dict[str, Any]:
    """Every end-of-soak check; each entry has `ok`."""
    counts = asyncio.run(_database_counts(env["DATABASE_URL"]))
    streams = asyncio.run(subject_counts(env["NATS_URL"]))
    years = cambodia_years(began, ended)
    counted = registrations(gateway, indicators_token, years)
    children = counts["registry children"]
    out: dict[str, Any] = {
        "children": {
            "registry": children,
            "CP_CHILD_REG": counted,
            "years": years,
            "ok": children == counted,
        }
    }
    ledger_ok, line = verify_ledger(env)
    out["ledger"] = {"ok": ledger_ok, "verifier": line}
    events: dict[str, Any] = {}
    for _, durable, _ in CONSUMERS:
        inbox, dead, stream = counts[durable], streams[f"dead:{durable}"], streams[durable]
        events[durable] = {
            "stream": stream,
            "inbox": inbox,
            "dead_letters": dead,
            "ok": inbox + dead == stream,
        }
    out["events"] = {"ok": all(e["ok"] for e in events.values()), "consumers": events}
    return out


def per_minute(parts: dict[str, Any], bucket_s: float) -> list[dict[str, Any]]:
    """Every answer of the soak (each request of every part and step) by minute (`bucket_s`):
    requests, errors, p50 and p99."""
    buckets: dict[int, list[float]] = {}
    errors: dict[int, int] = {}
    for raw in parts.values():
        for outcome in raw.get("steps", [raw]):
            for at, ms in zip(outcome["at_s"], outcome["latencies_ms"], strict=True):
                buckets.setdefault(int(at // bucket_s), []).append(ms)
            for at in outcome["error_at_s"]:
                errors[int(at // bucket_s)] = errors.get(int(at // bucket_s), 0) + 1
    rows = []
    for index in sorted(buckets):
        ordered = sorted(buckets[index])
        rows.append(
            {
                "minute": index + 1,
                "requests": len(ordered),
                "errors": errors.get(index, 0),
                "p50_ms": round(quantile(ordered, 0.5), 1),
                "p99_ms": round(quantile(ordered, 0.99), 1),
            }
        )
    return rows
