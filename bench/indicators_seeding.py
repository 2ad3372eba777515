"""How the indicators bench (bench/indicators.py) fills its platform: it runs
`python -m services.indicators seed --rebuild` under the supervisor, samples and prints its
progress, reads its summary and phases from its log, and then settles the tables with
VACUUM ANALYZE."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from collections.abc import Callable
from typing import Any

from bench.indicators_figures import (
    SAMPLE_S,
    SEED_MONTHS,
    describe_progress,
    rebuild_phases,
    replay_split,
)
from deploy.local.supervisor import ProcessFailed, Supervisor

PROGRESS_S = 30.0  # and printed
SEED_TIMEOUT_S = 4 * 3600.0
SUMMARY = re.compile(
    r"seeded (?P<children>\d+) children: (?P<events>\d+) events published in "
    r"(?P<publish>[\d.]+) s(?:, aggregates rebuilt in (?P<rebuild>[\d.]+) s)?"
)


def indicators_consumers() -> dict[str, tuple[str, str]]:
    """The indicators service's durable consumers, by stream."""
    from services.indicators import jetstream

    return jetstream.CONSUMERS


def seed(
    supervisor: Supervisor,
    env: dict[str, str],
    name: str,
    children: int,
    seed_value: int,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """Run `python -m services.indicators seed --rebuild` as the process `name`, printing its
    progress (the indicators service must be stopped); its summary, timeline and phases."""
    args = ["seed", "--children", str(children), "--seed", str(seed_value)]
    args += ["--months", str(SEED_MONTHS), "--rebuild"]
    seed_env = {**env, "KOMAR_LOG_LEVEL": "info"}  # its rebuild's log lines, for the record
    started = time.monotonic()
    proc = supervisor.start(name, "services.indicators", *args, env=seed_env, wait=False)
    assert proc.popen is not None
    timeline: list[dict[str, Any]] = []
    last_print = last_sample = started
    while True:
        try:
            code = proc.popen.wait(timeout=1.0)
            break
        except subprocess.TimeoutExpired:  # still seeding
            pass
        now = time.monotonic()
        if now - last_sample >= SAMPLE_S:
            last_sample = now
            sample = {
                "t": round(now - started, 1),
                "at": time.time(),
                **progress(env["NATS_URL"], env["DATABASE_URL"]),
            }
            timeline.append(sample)
            if now - last_print >= PROGRESS_S:
                last_print = now
                say(f"  {name}: {describe_progress(sample, timeline)}")
        if now - started > SEED_TIMEOUT_S:
            supervisor.kill(name)
            raise ProcessFailed(f"{name} still running after {SEED_TIMEOUT_S:.0f} s")
    supervisor.get(name).expected_down = True
    seconds = round(time.monotonic() - started, 1)
    if code != 0:
        raise ProcessFailed(f"{name} failed ({code}):\n{supervisor.log_tail(name)}")
    log_text = supervisor.log_tail(name, 400)
    found = SUMMARY.search(log_text)
    summary: dict[str, Any] = {"wall_s": seconds, "timeline": timeline}
    if found:
        summary |= {
            "children": int(found["children"]),
            "events": int(found["events"]),
            "publish_s": float(found["publish"]),
            "rebuild_s": float(found["rebuild"]) if found["rebuild"] else None,
        }
    summary |= rebuild_phases(log_text)
    summary |= replay_split(summary)
    return summary


def settle(database_url: str) -> float:
    """VACUUM ANALYZE the indicators tables after the bulk load, then wait for autovacuum.

    A platform that grew to this size would have been vacuumed long before anyone pulls;
    right after a bulk load autovacuum would otherwise run during the timed pulls (and
    the planner would lack statistics). Returns the seconds it took.
    """

    async def vacuum() -> None:
        import asyncpg

        conn = await asyncpg.connect(database_url, timeout=10)
        try:
            tables = await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'indicators'"
            )
            for row in tables:
                await conn.execute(f'VACUUM (ANALYZE) indicators."{row["tablename"]}"')
            deadline = time.monotonic() + 600.0
            while time.monotonic() < deadline:
                busy = await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'"
                )
                if not busy:
                    return
                await asyncio.sleep(1.0)
        finally:
            await conn.close()

    started = time.monotonic()
    asyncio.run(vacuum())
    return round(time.monotonic() - started, 1)


def progress(nats_url: str, database_url: str) -> dict[str, Any]:
    """Messages on the three streams and the newest generation's replayed events."""

    async def look() -> dict[str, Any]:
        import asyncpg
        import nats

        out: dict[str, Any] = {"stream_messages": None, "generation": None}
        try:
            nc = await nats.connect(nats_url, connect_timeout=5, max_reconnect_attempts=0)
            try:
                js = nc.jetstream()
                total = 0
                for stream in indicators_consumers():
                    try:
                        total += int((await js.stream_info(stream)).state.messages)
                    except Exception:
                        pass
                out["stream_messages"] = total
            finally:
                await nc.close()
            conn = await asyncpg.connect(database_url, timeout=5)
            try:
                row = await conn.fetchrow(
                    "SELECT generation, state, events_replayed, stock_through "
                    "FROM indicators.generations ORDER BY generation DESC LIMIT 1"
                )
            finally:
                await conn.close()
            if row is not None:
                out["generation"] = dict(row)
        except Exception as exc:  # progress is only informative
            out["error"] = type(exc).__name__
        return out

    return asyncio.run(look())
