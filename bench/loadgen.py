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
no two workers ever act on the same item at once.

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
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.cpu import cpu_snapshot, cpu_used
from bench.templates import TemplateError, render
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


@dataclass
class Outcomes:
    """How the requests answered inside the measured window went (those of a single-request
    job, or of one step of a workflow)."""

    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)

    def record(self, status: int, ok: bool, payload: bytes, seconds: float) -> None:
        """One request answered inside the window, in `seconds`; `ok`: an expected status."""
        self.latencies_ms.append(seconds * 1000.0)
        self.statuses[str(status)] += 1
        if not ok:
            self.errors += 1
            if len(self.error_samples) < 5:
                self.error_samples.append(f"{status}: {payload[:200].decode(errors='replace')}")

    def figures(self) -> dict[str, Any]:
        """The raw figures of these requests."""
        return {
            "requests": len(self.latencies_ms),
            "latencies_ms": [round(v, 3) for v in self.latencies_ms],
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
) -> None:
    """Send requests back to back until the window closes; record those answered inside it."""
    expect = set(job.expect)
    while True:
        path, body = next(requests)
        started = time.perf_counter()
        if started >= clock["end"]:
            return
        status, payload, location = await _send(session, job.method, job.base_url + path, body)
        done = time.perf_counter()
        ok = status in expect
        if ok and job.collect_ids:
            created = _created_id(location, payload)
            if created:
                tally.ids.append(created)
        if not clock["start"] <= done <= clock["end"]:
            continue  # answered during the warm-up, or after the window closed
        tally.record(status, ok, payload, done - started)


def _request_stream(job: Job) -> itertools.cycle[tuple[str, bytes | None]]:
    """Requests to send, pre-encoded: bodies cycle in order, paths are drawn at random."""
    rng = random.Random(1)
    if job.bodies:
        encoded = [_json_bytes(b) for b in job.bodies]
        return itertools.cycle([(rng.choice(job.paths), b) for b in encoded])
    return itertools.cycle(
        [(rng.choice(job.paths), None) for _ in range(max(4096, len(job.paths)))]
    )


# ------------------------------------------------------------------ workflow mode


@dataclass
class WorkflowTally:
    """Whole workflows finished (or failed) inside the measured window, and each step's
    outcomes (in the order of the job's steps)."""

    steps: list[Outcomes]
    latencies_ms: list[float] = field(default_factory=list)
    failed: int = 0
    failed_at: Counter[str] = field(default_factory=Counter)


def _item_streams(job: Job) -> list[Iterator[dict[str, Any]]]:
    """What each worker draws its iterations' items from."""
    items = list(job.items) or [{}]
    rng = random.Random(1)
    if not job.partition_items:
        rng.shuffle(items)
        shared = itertools.cycle(items)
        return [shared] * job.connections
    if len(items) < job.connections:
        raise SystemExit(
            f"partition_items needs at least one item per connection "
            f"({len(items)} items, {job.connections} connections)"
        )
    return [itertools.cycle(items[w :: job.connections]) for w in range(job.connections)]


async def _call(
    session: aiohttp.ClientSession, job: Job, step: dict[str, Any], context: dict[str, Any]
) -> tuple[int, bytes, str | None]:
    """Send one step; (status, body, Location). Status 0: no answer, or a bad template."""
    try:
        path = render(step["path"], context)
        headers: dict[str, str] = {}
        if step.get("auth"):
            name = render(step["auth"], context)
            if name not in job.tokens:
                raise TemplateError(f"no token named {name!r}")
            headers["Authorization"] = f"Bearer {job.tokens[name]}"
        data = None
        if step.get("body") is not None:
            data = _json_bytes(render(step["body"], context))
            headers["Content-Type"] = "application/json"
    except TemplateError as exc:
        return 0, f"template: {exc}".encode(), None
    return await _send(session, step["method"], job.base_url + path, data, headers)


async def _workflow_worker(
    session: aiohttp.ClientSession,
    job: Job,
    items: Iterator[dict[str, Any]],
    clock: dict[str, float],
    tally: WorkflowTally,
) -> None:
    """Run the workflow back to back until the window closes; record what ends inside it.

    An iteration the window closes on is abandoned (its remaining steps are not sent)."""
    while True:
        began = time.perf_counter()
        if began >= clock["end"]:
            return
        inside = False
        context: dict[str, Any] = {**next(items), "uuid": uuid.uuid4().hex}
        for index, (step, outcomes) in enumerate(zip(job.workflow, tally.steps, strict=True)):
            started = time.perf_counter()
            if started >= clock["end"]:
                return
            status, payload, location = await _call(session, job, step, context)
            done = time.perf_counter()
            ok = status in step.get("expect", [200])
            inside = clock["start"] <= done <= clock["end"]
            if inside:
                outcomes.record(status, ok, payload, done - started)
            if not ok:
                if inside:
                    tally.failed += 1
                    tally.failed_at[step["name"]] += 1
                break
            try:
                answer = json.loads(payload) if payload else None
            except ValueError:
                answer = None
            context[step["name"]] = answer if isinstance(answer, dict) else {}
            if index == 0:
                created = _created_id(location, payload)
                if created:
                    context["id"] = created
        else:
            if inside:
                tally.latencies_ms.append((time.perf_counter() - began) * 1000.0)


# ------------------------------------------------------------------ running a job


async def run_job(job: Job) -> dict[str, Any]:
    """Run one measurement and return its raw figures."""
    headers = {"Accept": "application/json", **job.headers}
    if job.bodies:
        headers["Content-Type"] = "application/json"
    connector = aiohttp.TCPConnector(limit=job.connections, force_close=False, ttl_dns_cache=None)
    timeout = aiohttp.ClientTimeout(total=30)
    tally = Tally()
    flow = WorkflowTally([Outcomes() for _ in job.workflow])
    async with aiohttp.ClientSession(
        connector=connector, headers=headers, timeout=timeout, skip_auto_headers=["User-Agent"]
    ) as session:
        now = time.perf_counter()
        clock = {"start": now + job.warmup_s, "end": now + job.warmup_s + job.duration_s}
        snapshots: dict[str, tuple[float, dict[str, float]]] = {}

        async def snapshot_at(moment: str) -> None:
            await asyncio.sleep(max(0.0, clock[moment] - time.perf_counter()))
            snapshots[moment] = (time.perf_counter(), cpu_snapshot(job.watch, "loadgen"))

        markers = [asyncio.create_task(snapshot_at(m)) for m in ("start", "end")]
        if job.workflow:
            await asyncio.gather(
                *(
                    _workflow_worker(session, job, items, clock, flow)
                    for items in _item_streams(job)
                )
            )
        else:
            requests = _request_stream(job)
            await asyncio.gather(
                *(_worker(session, job, requests, clock, tally) for _ in range(job.connections))
            )
        await asyncio.gather(*markers)
    (t0, at_start), (t1, at_end) = snapshots["start"], snapshots["end"]
    # Cores busy on average over the window: each watched group, the generator, the machine,
    # and the rest of the machine ("other").
    used = cpu_used(at_start, at_end)
    cores = {name: round(seconds / (t1 - t0), 3) for name, seconds in used.items()}
    if job.workflow:
        return _workflow_result(job, flow, cores)
    return {**tally.figures(), "duration_s": job.duration_s, "ids": tally.ids, "cores": cores}


def _workflow_result(job: Job, flow: WorkflowTally, cores: dict[str, float]) -> dict[str, Any]:
    """The raw figures of a workflow run: whole workflows, then each step."""
    return {
        "mode": "workflow",
        "requests": sum(len(s.latencies_ms) for s in flow.steps),
        "duration_s": job.duration_s,
        "workflows": {
            "completed": len(flow.latencies_ms),
            "failed": flow.failed,
            "failed_at": dict(flow.failed_at),
            "latencies_ms": [round(v, 3) for v in flow.latencies_ms],
        },
        "steps": [
            {"name": step["name"], **outcomes.figures()}
            for step, outcomes in zip(job.workflow, flow.steps, strict=True)
        ],
        "errors": flow.failed,
        "cores": cores,
    }


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
