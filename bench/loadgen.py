"""The load generator, run as its own process so it never shares an event loop with a target.

`python -m bench.loadgen run JOB.json RESULT.json`: keep `connections` keep-alive connections
busy (one worker each, closed loop) for a warm-up and then a measured window; write the
latencies, statuses, created ids and the CPU use of the generator, of the watched processes
and of the whole machine over the window to RESULT.json.

Two modes. Single request (the job has `method` and `paths`): every worker sends the same
kind of request back to back. Workflow (the job has `workflow`, a list of steps): every
worker runs the steps in order, again and again; a step is
`{name, method, path, body?, auth?, expect?}` where `path`, `body` and `auth` are templates.
A template's `{name}` is filled from the iteration's context: the fields of the `items`
entry drawn for the iteration, `uuid` (fresh for each iteration), `id` (the id the first
step created) and `<step>.<field>` (a field of an earlier step's JSON answer). A `{name}`
that is a whole JSON string keeps the value's JSON type. `auth` names an entry of `tokens`,
sent as `Authorization: Bearer`. A step answered outside `expect` ends the iteration as a
failed workflow. With `partition_items`, worker `w` draws only `items[w::connections]`, so
no two workers ever act on the same item at once (bench/loadgen_workflow.py).

Pacing: a job with `rate` > 0 sends at most that many requests (or workflows) per second,
shared by its workers (open loop as long as the target keeps up; latency is measured from
the send, so a target that falls behind shows it in the rate, not in the latencies). A job
with `parts` (a list of jobs, each with a `name`) is a mix: every part runs at once over
the same window, and the result holds each part's figures under `parts`. Every recorded
answer keeps its time in the window (`at_s`), for figures per minute.

`python -m bench.loadgen serve-trivial` (port from $BENCH_PORT): a raw asyncio responder that
answers every request with a fixed 200, used once to measure the generator's own ceiling.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.cpu import cpu_snapshot, cpu_used
from bench.loadgen_workflow import WorkflowTally, item_streams, workflow_result, workflow_worker
from bench.trivial import serve_trivial


@dataclass
class Job:
    """One measurement: which requests to send, how hard and how long."""

    base_url: str
    method: str = "GET"
    paths: list[str] = field(default_factory=list)
    bodies: list[Any] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    expect: list[int] = field(default_factory=lambda: [200])
    connections: int = 32
    warmup_s: float = 2.0
    duration_s: float = 10.0
    collect_ids: bool = False
    # Process groups whose CPU use to report: name -> root pids (descendants included).
    watch: dict[str, list[int]] = field(default_factory=dict)
    # Workflow mode (see the module docstring); `method`, `paths` and `bodies` are unused.
    workflow: list[dict[str, Any]] = field(default_factory=list)
    items: list[dict[str, Any]] = field(default_factory=list)
    partition_items: bool = False
    tokens: dict[str, str] = field(default_factory=dict)
    # Requests (or workflows) per second for the whole job; 0: every worker back to back.
    rate: float = 0.0
    # A mix: each entry a job of its own (`name`, and whatever differs from this one).
    parts: list[dict[str, Any]] = field(default_factory=list)
    name: str = ""


class Pacer:
    """Hands out send slots `1/rate` apart to the workers of one job (none when rate is 0);
    a worker that comes late takes the next slot at once, without a burst to catch up."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next = time.perf_counter()

    async def wait(self) -> None:
        if not self.interval:
            return
        now = time.perf_counter()
        slot = max(self.next, now)
        self.next = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)


@dataclass
class Outcomes:
    """How the requests answered inside the measured window went (those of a single-request
    job, or of one step of a workflow)."""

    latencies_ms: list[float] = field(default_factory=list)
    at_s: list[float] = field(default_factory=list)  # when each was answered in the window
    error_at_s: list[float] = field(default_factory=list)  # when each error was answered
    statuses: Counter[str] = field(default_factory=Counter)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)

    def record(self, status: int, ok: bool, payload: bytes, seconds: float, at: float) -> None:
        """One request answered inside the window, in `seconds`, `at` s after it opened;
        `ok`: an expected status."""
        self.latencies_ms.append(seconds * 1000.0)
        self.at_s.append(round(at, 3))
        self.statuses[str(status)] += 1
        if not ok:
            self.errors += 1
            self.error_at_s.append(round(at, 3))
            if len(self.error_samples) < 5:
                self.error_samples.append(f"{status}: {payload[:200].decode(errors='replace')}")

    def figures(self) -> dict[str, Any]:
        """The raw figures of these requests."""
        return {
            "requests": len(self.latencies_ms),
            "latencies_ms": [round(v, 3) for v in self.latencies_ms],
            "at_s": self.at_s,
            "error_at_s": self.error_at_s,
            "statuses": dict(self.statuses),
            "errors": self.errors,
            "error_samples": self.error_samples,
        }


@dataclass
class Tally(Outcomes):
    """A single-request job: its outcomes, and the ids it created (over the whole run)."""

    ids: list[str] = field(default_factory=list)


def _json_bytes(value: Any) -> bytes:
    """A request body as the generator sends it: compact JSON."""
    return json.dumps(value, separators=(",", ":")).encode()


async def _send(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    data: bytes | None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes, str | None]:
    """Send one request; (status, body, Location). Status 0: no answer (the body then names
    the exception)."""
    try:
        async with session.request(method, url, data=data, headers=headers) as response:
            return response.status, await response.read(), response.headers.get("Location")
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        return 0, type(exc).__name__.encode(), None


def _created_id(location: str | None, payload: bytes) -> str | None:
    """The id of a created record: the last segment of Location, else the body's `id`."""
    if location:
        return location.rstrip("/").rsplit("/", 1)[-1]
    try:
        value = json.loads(payload).get("id")
    except (ValueError, AttributeError):
        return None
    return str(value) if value is not None else None


async def _worker(
    session: aiohttp.ClientSession,
    job: Job,
    requests: itertools.cycle[tuple[str, bytes | None]],
    clock: dict[str, float],
    tally: Tally,
    pace: Callable[[], Awaitable[None]],
) -> None:
    """Send requests back to back (or at the job's pace) until the window closes; record
    those answered inside it."""
    expect = set(job.expect)
    headers = {**job.headers, **({"Content-Type": "application/json"} if job.bodies else {})}
    while True:
        await pace()
        path, body = next(requests)
        started = time.perf_counter()
        if started >= clock["end"]:
            return
        url = job.base_url + path
        status, payload, location = await _send(session, job.method, url, body, headers)
        done = time.perf_counter()
        ok = status in expect
        if ok and job.collect_ids:
            created = _created_id(location, payload)
            if created:
                tally.ids.append(created)
        if not clock["start"] <= done <= clock["end"]:
            continue  # answered during the warm-up, or after the window closed
        tally.record(status, ok, payload, done - started, done - clock["start"])


def _request_stream(job: Job) -> itertools.cycle[tuple[str, bytes | None]]:
    """Requests to send, pre-encoded: bodies cycle in order, paths are drawn at random."""
    rng = random.Random(1)
    if job.bodies:
        encoded = [_json_bytes(b) for b in job.bodies]
        return itertools.cycle([(rng.choice(job.paths), b) for b in encoded])
    return itertools.cycle(
        [(rng.choice(job.paths), None) for _ in range(max(4096, len(job.paths)))]
    )


# ------------------------------------------------------------------ running a job


async def _run_part(
    session: aiohttp.ClientSession, job: Job, clock: dict[str, float]
) -> dict[str, Any]:
    """Run one job's workers over the shared window; its raw figures (without CPU)."""
    pace = Pacer(job.rate).wait
    if job.workflow:
        flow = WorkflowTally([Outcomes() for _ in job.workflow])
        await asyncio.gather(
            *(
                workflow_worker(session, job, items, clock, flow, _send, pace, _created_id)
                for items in item_streams(job)
            )
        )
        return workflow_result(job, flow)
    tally = Tally()
    requests = _request_stream(job)
    await asyncio.gather(
        *(_worker(session, job, requests, clock, tally, pace) for _ in range(job.connections))
    )
    return {**tally.figures(), "duration_s": job.duration_s, "ids": tally.ids}


def _parts(job: Job) -> list[Job]:
    """The jobs a run drives at once: the job itself, or each part of a mix."""
    if not job.parts:
        return [job]
    shared = {"base_url": job.base_url, "warmup_s": job.warmup_s, "duration_s": job.duration_s}
    return [Job(**{**shared, **part}) for part in job.parts]


async def run_job(job: Job) -> dict[str, Any]:
    """Run one measurement and return its raw figures."""
    parts = _parts(job)
    connections = sum(part.connections for part in parts)
    connector = aiohttp.TCPConnector(limit=connections, force_close=False, ttl_dns_cache=None)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(
        connector=connector,
        headers={"Accept": "application/json"},
        timeout=timeout,
        skip_auto_headers=["User-Agent"],
    ) as session:
        began_at = time.time()
        now = time.perf_counter()
        clock = {"start": now + job.warmup_s, "end": now + job.warmup_s + job.duration_s}
        snapshots: dict[str, tuple[float, dict[str, float]]] = {}

        async def snapshot_at(moment: str) -> None:
            await asyncio.sleep(max(0.0, clock[moment] - time.perf_counter()))
            snapshots[moment] = (time.perf_counter(), cpu_snapshot(job.watch, "loadgen"))

        markers = [asyncio.create_task(snapshot_at(m)) for m in ("start", "end")]
        results = await asyncio.gather(*(_run_part(session, part, clock) for part in parts))
        await asyncio.gather(*markers)
        ended_at = time.time()
    (t0, at_start), (t1, at_end) = snapshots["start"], snapshots["end"]
    # Cores busy on average over the window: each watched group, the generator, the machine,
    # and the rest of the machine ("other").
    used = cpu_used(at_start, at_end)
    cores = {name: round(seconds / (t1 - t0), 3) for name, seconds in used.items()}
    # Wall-clock times (epoch s) of the first request sent and the last answer received.
    times = {"began_at": began_at, "ended_at": ended_at, "cores": cores}
    if job.parts:
        named = {part.name: result for part, result in zip(parts, results, strict=True)}
        return {"mode": "mix", "parts": named, "duration_s": job.duration_s, **times}
    return {**results[0], **times}


def _event_loop_policy() -> None:
    """Use uvloop when it is installed (as uvicorn does), so the generator is no slower."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def main(argv: list[str]) -> int:
    """`run JOB RESULT` or `serve-trivial`."""
    _event_loop_policy()
    if argv[:1] == ["serve-trivial"]:
        asyncio.run(serve_trivial(int(os.environ["BENCH_PORT"])))
        return 0
    if argv[:1] == ["run"] and len(argv) == 3:
        with open(argv[1]) as fh:
            job = Job(**json.load(fh))
        result = asyncio.run(run_job(job))
        with open(argv[2], "w") as fh:
            json.dump(result, fh)
        return 0
    print(
        "usage: python -m bench.loadgen run JOB.json RESULT.json | serve-trivial", file=sys.stderr
    )
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
